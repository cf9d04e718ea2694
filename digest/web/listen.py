"""The web server's listening socket, made before anything else starts, so that a port in
use (a second `digest run`, another program) or one this user may not take is one line
naming the address and the setting to change, never a server's traceback."""

from __future__ import annotations

import errno
import socket

from digest.common.errors import DigestError

WHERE = "web.port ([web] port, or DIGEST_WEB_PORT)"


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` and listening (as uvicorn binds one: the
    address reusable at once after a restart); DigestError if it cannot be."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise DigestError(f"web.host: cannot listen on {host!r}: {exc.strerror or exc}") from exc
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY on accepted connections only when the
    # socket says it is TCP, and without it a small answer on a kept-alive connection
    # waits for the client's delayed ACK (about 40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise DigestError(_why(host, port, exc)) from exc
    return sock


def _why(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"{host}:{port} is already in use (another digest?); choose another port: {WHERE}"
    if exc.errno == errno.EACCES:
        return f"{host}:{port}: this user may not listen on port {port}; choose a port above 1023: {WHERE}"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
