"""CPU seconds and memory of a process and its descendants, read from ``/proc`` (Linux).

A PostgreSQL server is a postmaster plus backends that come and go: the CPU of backends
that ended is in the postmaster's ``cutime``/``cstime``, the live ones are summed.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "peak_rss_mib", "rss_mib", "tree"]

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def tree(pid: int) -> list[int]:
    """``pid`` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``, its waited-for children and its live descendants."""
    total = 0
    for index, member in enumerate(tree(pid)):
        fields = _stat(member)
        if fields is None:
            continue
        utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
        total += utime + stime + (cutime + cstime if index == 0 else 0)
    return total / _TICK


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its live descendants now (MiB)."""
    return sum(_status_kib(p, "VmRSS:") for p in tree(pid)) / 1024


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of the single process ``pid`` (``VmHWM``, MiB)."""
    return _status_kib(pid, "VmHWM:") / 1024
