"""What every request passes through before the app: the host check, the body cap and the
security headers on every answer (errors included); and the checks for who may POST.

The app answers only for its own host names (``[site] base_url``'s, ``[web] allowed_hosts``,
the address ``[web] host`` names, and loopback), so a spoofed ``Host`` never reaches a
redirect or a link. A form POST must come from one of our pages (its ``Origin``, or failing
that its ``Referer``), except the RFC 8058 one-click unsubscribe that mail providers send
without either.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from digest.config import Settings

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; form-action 'self';"
        b" base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    # Not no-referrer: with it, browsers send "Origin: null" on our own form POSTs, and the
    # forms are checked by Origin. Other sites still get no referrer.
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
SECURITY_TEXT_HEADERS = [(name.decode(), value.decode()) for name, value in SECURITY_HEADERS]
MAX_BODY = 64 * 1024
PUSH_BODY = 2 * 1024 * 1024  # a WebSub hub's push (POST /websub/...) carries a whole feed


class Guard:
    """ASGI middleware: the host check (400 for a host we do not serve), request bodies capped
    at MAX_BODY (413 beyond it, so a client cannot make the app buffer megabytes), and the
    security headers on every answer, these two included."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.hosts = allowed_hosts(settings)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        headers = dict(scope.get("headers") or [])
        host = _hostname(headers.get(b"host", b"").decode("latin-1"))
        if host not in self.hosts:
            answer = PlainTextResponse(
                "This server does not answer for that host name (see [web] allowed_hosts).", 400
            )
            await answer(scope, receive, secured_send)
            return
        limit = PUSH_BODY if str(scope.get("path", "")).startswith("/websub/") else MAX_BODY
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > limit:
            await PlainTextResponse("Request body too large", 413)(scope, receive, secured_send)
            return
        seen = 0

        async def capped_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, "Request body too large")
            return message

        await self.app(scope, capped_receive, secured_send)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The host names the app answers for (lower case, without port)."""
    names = {urlsplit(settings.site.base_url).hostname or "", *LOOPBACK_NAMES}
    names.update(_hostname(h) for h in settings.web.allowed_hosts)
    if settings.web.host not in ("0.0.0.0", "::", ""):  # noqa: S104 (comparing, not binding)
        names.add(_hostname(settings.web.host))  # the address it listens on, by which it is reached
    return frozenset(n for n in names if n)


def _hostname(host: str) -> str:
    """The name in a Host header ("" when it is not a plain host with an optional port)."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, port = host[1:].partition("]")
        port = port.removeprefix(":")
    elif host.count(":") == 1:
        name, port = host.split(":")
    else:
        name, port = host, ""
    return name if port.isdigit() or not port else ""


def same_origin(request: Request, settings: Settings) -> bool:
    """Whether a POST comes from one of our own pages: its Origin, or when a browser sends
    none, its Referer, names this host or ``[site] base_url``'s. ``Origin: null`` does not."""
    ours = {_origin(str(request.url)), _origin(settings.site.base_url)}
    origin = request.headers.get("origin")
    if origin is not None:
        return _origin(origin) in ours
    referer = request.headers.get("referer")
    return referer is not None and _origin(referer) in ours


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def is_loopback(request: Request) -> bool:
    """Whether the client is on this machine (behind a proxy on this machine, uvicorn puts
    the address from X-Forwarded-For here, so a visitor through the proxy is not)."""
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
