"""The scale run's simulator in its own process, so that it has a CPU and an event loop of
its own (no GIL, no scheduler shared with the harness that samples the gatherers).

The child (``python benchmarks/fullscale/simproc.py OPTIONS_JSON``) opens the simulator,
pauses its engine and prints one JSON line: ``ready`` with the URLs, the key and the
markets live at the exchange. Then it answers one command per stdin line with one JSON
line on stdout:

* ``pause`` / ``resume``: the engine's (``pause`` returns once the engine stopped);
* ``status``: ``generated``, ``bursting``, ``bursts``, ``undelivered``, ``rate``,
  ``frames_sent`` (text frames queued for the WebSocket clients, :attr:`SimExchange.frames_sent`);
* ``finish PATH``: pause, write every trading market's book to ``PATH`` (JSON:
  ticker -> ``{"yes": [[price, size]...], "no": [...]}``, exact integer units), close the
  truth stream (its summary line), reply, and exit.

:class:`SimProcess` is the parent's side; it offers what the harness reads of an in-process
simulator (``rest_url``, ``ws_url``, ``key_id``, ``private_key_pem``) plus the commands.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import trio

from kalshi.book import OrderBook

__all__ = ["SimProcess"]


class SimProcess:
    """The parent's handle on a simulator child. ``await start()``, then the commands."""

    def __init__(self, options: dict[str, Any], truth_path: Path, log: Path) -> None:
        self.options = {**options, "truth_path": str(truth_path)}
        self.log_path = log
        self.proc: trio.Process | None = None
        self.rest_url = self.ws_url = self.key_id = ""
        self.private_key_pem = b""
        self.markets_live = 0
        self.priority: int | None = None  # the child's niceness, when it could be raised
        self._lines: trio.abc.ReceiveStream | None = None
        self._buffer = b""
        self._lock = trio.Lock()

    async def start(self) -> None:
        """Start the child and wait for its ``ready`` line (universe built, engine paused).
        Raises RuntimeError when it exits first."""
        with self.log_path.open("ab") as log:
            self.proc = await trio.lowlevel.open_process(
                [sys.executable, __file__, orjson.dumps(self.options)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # a scheduling group of its own: see _raise_priority
            )
        self.priority = _raise_priority(self.proc.pid)
        ready = await self._read()
        self.rest_url, self.ws_url = ready["rest_url"], ready["ws_url"]
        self.key_id = ready["key_id"]
        self.private_key_pem = ready["private_key_pem"].encode()
        self.markets_live = ready["markets_live"]

    async def command(self, line: str) -> dict[str, Any]:
        """Send one command; its reply."""
        assert self.proc is not None and self.proc.stdin is not None
        async with self._lock:
            await self.proc.stdin.send_all(line.encode() + b"\n")
            return await self._read()

    async def pause(self) -> None:
        await self.command("pause")

    async def resume(self) -> None:
        await self.command("resume")

    async def status(self) -> dict[str, Any]:
        return await self.command("status")

    async def finish(self, books_path: Path) -> tuple[dict[str, Any], dict[str, OrderBook]]:
        """Pause for good, close the truth stream; the last status and the trading
        markets' books. The child exits."""
        reply = await self.command(f"finish {books_path}")
        assert self.proc is not None
        await self.proc.wait()
        raw = orjson.loads(await trio.Path(books_path).read_bytes())
        books = {}
        for ticker, sides in raw.items():
            book = OrderBook(ticker)
            book.yes = {p: s for p, s in sides["yes"]}
            book.no = {p: s for p, s in sides["no"]}
            books[ticker] = book
        return reply, books

    async def stop(self) -> None:
        """Kill the child if it still runs."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            with trio.CancelScope(shield=True):
                await self.proc.wait()

    async def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        while b"\n" not in self._buffer:
            data = await self.proc.stdout.receive_some(1 << 16)
            if not data:
                raise RuntimeError(f"the simulator exited (see {self.log_path})")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, Any] = orjson.loads(line)
        return reply


PRIORITY_BOOST = 10  # niceness below this process's


def _raise_priority(pid: int) -> int | None:
    """Schedule the simulator ahead of the system under test: the exchange does not slow
    down when its clients are busy, so on a shared machine the gatherers, PostgreSQL and
    the deduplicator must not take the CPU the simulator needs to offer its rate (at equal
    priority it reached 1 172 of 2 000 msgs/s on the loaded 2-core machine). Returns the
    child's niceness, or None when lowering it is not permitted (not root).

    With Linux's autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``) the
    CPU is shared between sessions first, and a process's niceness counts only inside its
    session: the simulator, started in the harness's session with the gatherers and the
    deduplicator, took ~9/10 of that one session's share and left the gatherer 5-20 % of a
    core (issue 20, 20 000 msgs/s). So the child runs in a session of its own
    (``start_new_session``), as every process of the run does, and the boost is given to
    its session's group (``/proc/PID/autogroup``) as well as to the process."""
    nice = max(-20, os.getpriority(os.PRIO_PROCESS, 0) - PRIORITY_BOOST)
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    except PermissionError:
        return None
    # no autogroup scheduling here, or not permitted: the niceness alone holds
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    return nice


def _status(sim: Any) -> dict[str, Any]:
    engine, truth = sim.engine, sim.truth
    return {
        "generated": truth.generated,
        "bursting": engine.bursting,
        "bursts": engine.bursts,
        "undelivered": dict(truth.undelivered),
        "rate": engine.rate,
        "frames_sent": sim.frames_sent,
        "outbox_bytes": sim.outbox_bytes[0],
        "outbox_max_bytes": sim.outbox_bytes[1],
        # how far the engine's generation runs behind its schedule (s): the simulator
        # itself short of CPU, not its clients
        "engine_late_s": round(sim.engine.late_s, 3),
    }


async def _child(options: dict[str, Any], truth_file: BinaryIO) -> None:
    from kalshi.gather.registry import LIVE_STATUSES
    from kalshi.sim import open_sim_exchange

    stdin = trio.lowlevel.FdStream(0)
    stdout = trio.lowlevel.FdStream(1)
    async with open_sim_exchange(
        keep_events=False, truth_stream=truth_file, port=0, **options
    ) as sim:
        sim.engine.pause()
        live = sum(1 for m in sim.truth.markets.values() if m.status in LIVE_STATUSES)
        ready = {
            "rest_url": sim.rest_url,
            "ws_url": sim.ws_url,
            "key_id": sim.key_id,
            "private_key_pem": sim.private_key_pem.decode(),
            "markets_live": live,
        }
        await stdout.send_all(orjson.dumps(ready) + b"\n")
        buffer = b""
        while True:
            while b"\n" not in buffer:
                data = await stdin.receive_some(1 << 16)
                if not data:
                    return  # the parent went away
                buffer += data
            line, buffer = buffer.split(b"\n", 1)
            command, _, arg = line.decode().partition(" ")
            if command == "pause":
                sim.engine.pause()
            elif command == "resume":
                sim.engine.resume()
            elif command == "finish":
                sim.engine.pause()
                books = {
                    t: {"yes": sorted(b.yes.items()), "no": sorted(b.no.items())}
                    for t in sim.engine.active_tickers
                    for b in (sim.truth.book(t),)
                }
                await trio.Path(arg).write_bytes(orjson.dumps(books))
                sim.truth.close_stream()
                await stdout.send_all(orjson.dumps(_status(sim)) + b"\n")
                return
            await stdout.send_all(orjson.dumps(_status(sim)) + b"\n")


if __name__ == "__main__":
    child_options = orjson.loads(sys.argv[1])
    # a large buffer: the truth is ~6.5 MB/s at 20 000 msgs/s, one write() a MiB of it
    with Path(child_options.pop("truth_path")).open("wb", buffering=1 << 20) as child_truth:
        trio.run(_child, child_options, child_truth)
