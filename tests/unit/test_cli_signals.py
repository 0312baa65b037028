"""SIGTERM at any instant of a long-running command stops it cleanly (tester F5: 2.5 s
after `kalshi gather` started, during its start, it died silently with exit 143)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import trio


def _reader_open(fifo: Path) -> bool:
    """Whether a process has ``fifo`` open for reading (a writer's open succeeds)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader yet
        return False
    os.close(fd)
    return True


async def test_sigterm_during_the_start_of_gather_stops_it_with_a_line_and_exit_0(
    tmp_path: Path,
) -> None:
    # The config is a FIFO: the command is held in its start (reading it) when signalled.
    fifo = tmp_path / "g.yaml"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "kalshi", "gather", "--config", str(fifo)]
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        while not _reader_open(fifo):  # noqa: ASYNC110 - a FIFO's reader has no event
            await trio.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        assert process.stdout is not None and process.stderr is not None
        out = await process.stdout.receive_some(1 << 16)
        err = await process.stderr.receive_some(1 << 16)
        rc = await process.wait()
    assert (rc, out, err) == (0, b"", b"SIGTERM: stopped before the command's work began\n")
