"""Child processes of the soak and the scale run: a ``kalshi`` command with its log, stoppable
with any signal, and its peak memory read from ``/proc`` while it runs; their scratch
directories."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import httpx
import trio

__all__ = ["Child", "get_health", "scratch_dir"]


def scratch_dir(prefix: str) -> Path:
    """A new directory the unprivileged PostgreSQL user can reach (as root the embedded
    server runs as nobody)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class Child:
    """``kalshi <args>`` as a process; ``stdout``/``stderr`` go to ``log``."""

    def __init__(self, name: str, args: list[str], log: Path, *, own_session: bool = False) -> None:
        self.name = name
        # In a session of its own (setsid), so with Linux's autogroup scheduling the process
        # gets a CPU share of its own instead of splitting its parent's with its siblings.
        self.own_session = own_session
        self.args = args
        self.log_path = log
        self.proc: trio.Process | None = None
        self._log: IO[bytes] | None = None
        self.peak_rss_kib = 0
        self.exit_codes: list[int] = []

    async def start(self) -> None:
        """Start the process (its log is appended to); :meth:`stop` or :meth:`wait` ends it
        and closes the log."""
        log = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 - a log file, closed in _ended()
        try:
            self.proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "kalshi", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_session,
            )
        except BaseException:
            log.close()
            raise
        self._log = log

    def sample_rss(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))

    async def stop(self, sig: int = 15, grace: float = 30.0) -> int:
        """Send ``sig`` and wait; returns the exit code (kills after ``grace`` seconds)."""
        proc = self.proc
        if proc is None:
            return 0
        self.sample_rss()
        proc.send_signal(sig)
        with trio.move_on_after(grace):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        return self._ended(proc)

    async def wait(self) -> int:
        """Wait until the process exits by itself; returns its exit code."""
        proc = self.proc
        if proc is None:
            return 0
        await proc.wait()
        return self._ended(proc)

    def _ended(self, proc: trio.Process) -> int:
        code = proc.returncode
        assert code is not None
        self.exit_codes.append(code)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


async def get_health(client: httpx.AsyncClient, port: int) -> dict[str, Any] | None:
    try:
        response = await client.get(f"http://127.0.0.1:{port}/health", timeout=2.0)
    except httpx.HTTPError:
        return None
    try:
        document = response.json()
    except ValueError:
        return None
    return document if isinstance(document, dict) else None
