"""SIGTERM at any instant of a long-running command stops it cleanly (tester F5: 2.5 s
after `kalshi gather` started, during its start, it died silently with exit 143)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from kalshi.http.routes import health_route
from kalshi.http.server import serve_http


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


async def _rest(stream: trio.abc.ReceiveStream) -> bytes:
    """What ``stream`` gives until its end (the process closed it)."""
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


async def _status_stops_on(signum: signal.Signals, *, tty: bool) -> tuple[int, bytes, bytes]:
    """``kalshi status`` attached to a /health server, its stdout a pipe or a terminal:
    after its first refresh is shown, ``signum``; its exit code, the screen's bytes, stderr."""
    routes = {"/health": health_route(lambda: {"status": "ok"})}
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(serve_http, "127.0.0.1", None, routes)
        command = [sys.executable, "-m", "kalshi", "status", listening.url, "--refresh", "0.05"]
        main, child = os.openpty() if tty else (-1, subprocess.PIPE)
        with trio.fail_after(60):
            process = await trio.lowlevel.open_process(
                command, stdout=child, stderr=subprocess.PIPE
            )
            if tty:
                os.close(child)
            screen = trio.lowlevel.FdStream(main) if tty else process.stdout
            assert screen is not None and process.stderr is not None
            shown = b""
            while b"status" not in shown:  # the first refresh is on screen
                shown += await screen.receive_some()
            process.send_signal(signum)
            err = await _rest(process.stderr)
            with contextlib.suppress(OSError, trio.BrokenResourceError):  # EIO: pty closed
                while chunk := await screen.receive_some():
                    shown += chunk
            rc = await process.wait()
            await screen.aclose()
        nursery.cancel_scope.cancel()
    return rc, shown, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_status_without_a_terminal_stops_on_a_signal_with_exit_0(
    signum: signal.Signals,
) -> None:
    # tester F1: with no terminal, SIGTERM was ignored and a line printed every second
    rc, shown, err = await _status_stops_on(signum, tty=False)
    assert (rc, err) == (0, f"{signum.name}: stopping\n".encode())
    assert set(shown.decode().splitlines()) == {"status=ok"}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_status_on_a_terminal_stops_on_a_signal_with_exit_0(signum: signal.Signals) -> None:
    rc, shown, err = await _status_stops_on(signum, tty=True)
    assert (rc, err) == (0, b"")  # rich's Live shows stderr's lines on the screen
    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", shown.decode())  # no colours
    assert "kalshi service   status ok" in screen
    assert f"{signum.name}: stopping" in screen


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("server", ["sim", "replay --serve"])
async def test_a_server_command_stops_on_a_signal_with_exit_0(
    server: str, signum: signal.Signals, tmp_path: Path
) -> None:
    # The simulator and a replayed recording serve until signalled, as gather does.
    capture = tmp_path / "capture.jsonl"
    capture.write_text('{"type":"subscribed","id":1,"msg":{"channel":"trade","sid":1}}\n')
    args = {
        "sim": ["sim", "--port", "0", "--markets", "5", "--key-file", str(tmp_path / "k.pem")],
        "replay --serve": ["replay", str(capture), "--serve", "0"],
    }[server]
    ready = {"sim": b"api_secret:", "replay --serve": b"serving 1 source(s)"}[server]
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "kalshi", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        assert process.stdout is not None and process.stderr is not None
        out = b""
        while ready not in out or not out.endswith(b"\n"):  # it serves
            out += await process.stdout.receive_some()
        process.send_signal(signum)
        out += await _rest(process.stdout)
        err = await _rest(process.stderr)
        rc = await process.wait()
    last = {"sim": f"    api_secret: {tmp_path / 'k.pem'}", "replay --serve": "stopped"}[server]
    assert (rc, out.decode().splitlines()[-1]) == (0, last)
    if server == "sim":  # its last lines say what it stopped with
        assert err == b""
    else:  # one line (replay logs with a time and the logger's name)
        assert re.fullmatch(
            rf"(\S+ \S+ WARNING kalshi\.cli: )?{signum.name}: stopping\n", err.decode()
        )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_one_shot_command_stops_on_a_signal_during_its_work_with_exit_1(
    signum: signal.Signals, tmp_path: Path
) -> None:
    # `kalshi snapshot --source rest` waiting on an exchange that never answers: the signal
    # stops it at once (it waited for the request's timeout before)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    config = tmp_path / "g.yaml"
    config.write_text(
        f"kalshi:\n  rest_url: http://127.0.0.1:{port}/trade-api/v2\n"
        f"  ws_url: ws://127.0.0.1:{port}/trade-api/ws/v2\n  request_timeout: 600s\n"
    )
    command = [sys.executable, "-m", "kalshi", "snapshot", "--source", "rest"]
    command += ["--config", str(config), "--ticker", "KXHIGHNY-26DEC01-T60"]
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        connection = await listeners[0].accept()  # its request is on the way
        process.send_signal(signum)
        assert process.stdout is not None and process.stderr is not None
        out = await _rest(process.stdout)
        err = await _rest(process.stderr)
        rc = await process.wait()
        await connection.aclose()
        await listeners[0].aclose()
    assert (rc, out, err.decode().splitlines()) == (
        1,
        b"",
        [
            f"{signum.name}: stopping",
            f"error: {signum.name}: stopped before the command's work was done",
        ],
    )
