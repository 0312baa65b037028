"""Free TCP ports on the loopback interface, for servers a test or a tool starts."""

from __future__ import annotations

import socket

__all__ = ["bind_error", "free_port", "free_ports"]


def free_ports(count: int, *, below: int = 65536) -> list[int]:
    """``count`` distinct ports on 127.0.0.1 that were free a moment ago, each ``< below``.

    All are bound at once before any is released, so they differ. A port is only reserved
    while bound: another process may take it before the caller binds it.
    """
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port < below:
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


def free_port() -> int:
    """One port on 127.0.0.1 that was free a moment ago (see :func:`free_ports`)."""
    return free_ports(1)[0]


def bind_error(port: int) -> str | None:
    """Why 127.0.0.1:``port`` cannot be listened on now (``"Address already in use"``), or
    None if it can. Binds with ``SO_REUSEADDR`` as servers do, so connections of a previous
    run in TIME_WAIT do not count as taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None
