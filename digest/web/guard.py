"""What every request passes through before the app: three pure-ASGI middlewares, each with
one job, stacked in this order by :func:`digest.web.app.create_app`:

- :class:`SecurityHeaders`: the security headers on every answer, the two below included;
- :class:`HostCheck`: the app answers only for its own host names (``[site] base_url``'s,
  ``[web] allowed_hosts``, the address ``[web] host`` names, and loopback), so a spoofed
  ``Host`` never reaches a redirect or a link (400 otherwise);
- :class:`BodyLimit`: request bodies capped (``MAX_BODY``, or more for the paths given it,
  such as a WebSub push's), so a client cannot make the app buffer megabytes (413 beyond).

Who may POST a form is the forms' business (:func:`digest.web.subscribe.same_origin`).
Starlette answers a server error from outside these (its outermost layer): such an answer
carries ``SECURITY_TEXT_HEADERS`` itself (:mod:`.errors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.config import Settings

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        # connect-src: no script runs (none may), but tools that read the page from inside it
        # (Lighthouse fetches /robots.txt so) may ask this origin, and nothing else.
        b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; form-action 'self';"
        b" connect-src 'self'; base-uri 'none'; frame-ancestors 'none'",
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
API_BODY = 5 * 1024 * 1024  # an API import (OPML, CSV) carries a whole list
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every HTTP answer of the app it wraps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, secured_send)


class HostCheck:
    """Answers 400 to a request whose ``Host`` is not one of ``hosts`` (lower case, without
    port: :func:`allowed_hosts`)."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if hostname(host) not in self.hosts:
                answer = PlainTextResponse(
                    "This server does not answer for that host name (see [web] allowed_hosts).", 400
                )
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Caps request bodies at ``limit`` bytes, or at ``paths[prefix]`` for a path under one
    of those prefixes: 413 at once when the declared length is over, and when the bytes
    received go over (an HTTPException from ``receive``, answered by the app's handler)."""

    def __init__(self, app: ASGIApp, limit: int, paths: Mapping[str, int]) -> None:
        self.app = app
        self.limit = limit
        self.paths = dict(paths)

    def limit_for(self, path: str) -> int:
        """The cap for a request to ``path``."""
        return next((cap for prefix, cap in self.paths.items() if path.startswith(prefix)), self.limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(str(scope.get("path", "")))
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > limit:
            await PlainTextResponse("Request body too large", 413)(scope, receive, send)
            return
        seen = 0

        async def capped_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, "Request body too large")
            return message

        await self.app(scope, capped_receive, send)


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The host names the app answers for (lower case, without port)."""
    names = {urlsplit(settings.site.base_url).hostname or "", *LOOPBACK_NAMES}
    names.update(hostname(h) for h in settings.web.allowed_hosts)
    if settings.web.host not in ("0.0.0.0", "::", ""):  # noqa: S104 (comparing, not binding)
        names.add(hostname(settings.web.host))  # the address it listens on, by which it is reached
    return frozenset(n for n in names if n)


def hostname(host: str) -> str:
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
