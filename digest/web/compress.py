"""Gzip for the answers the cache does not compress: pages built for each request (the
subscribe form, a subscriber's preferences, message pages, 404s) and any other text.

Contract of :class:`Gzip`, a pure-ASGI middleware: an answer is gzipped when the client
accepts gzip (``q`` above 0), the answer has no ``Content-Encoding`` yet (the cache's own
gzip, :mod:`.cache`, passes as it is, never compressed twice), its status is not 204, 206
or 304, its type is text (``text/*``, JSON, XML, SVG), and it comes in one body message of
at least ``MIN_GZIP`` bytes (a streamed answer passes as it is; none of ours streams).
Every answer it would compress for such a client says ``Vary: Accept-Encoding``, once,
whoever asked. No page puts what a request sent beside a secret of the reader's (the
subscribe form's token is anyone's for the asking), so compression tells an eavesdropper
nothing (BREACH).
"""

from __future__ import annotations

import gzip

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.web.cache import GZIP_LEVEL, MIN_GZIP, accepts_gzip

TEXT_TYPES = ("text/", "application/json", "application/xml", "+xml", "+json")


class Gzip:
    """Gzips the app's text answers as the module says."""

    def __init__(self, app: ASGIApp, minimum: int = MIN_GZIP, level: int = GZIP_LEVEL) -> None:
        self.app, self.minimum, self.level = app, minimum, level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = accepts_gzip(Headers(scope=scope).get("accept-encoding", ""))
        held: Message | None = None

        async def gzipping_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                held = message  # sent with the first body, once it is known whether to compress
                return
            if held is None:
                await send(message)
                return
            start, held = held, None
            if message["type"] == "http.response.body" and self._compressible(start, message):
                raw = list(start.get("headers", []))
                start = {**start, "headers": raw}
                headers = MutableHeaders(raw=raw)
                if "accept-encoding" not in headers.get("vary", "").lower():
                    headers.add_vary_header("Accept-Encoding")
                if wanted:
                    body = gzip.compress(message["body"], compresslevel=self.level, mtime=0)
                    headers["content-encoding"] = "gzip"
                    headers["content-length"] = str(len(body))
                    message = {**message, "body": body}
            await send(start)
            await send(message)

        await self.app(scope, receive, gzipping_send)

    def _compressible(self, start: Message, body: Message) -> bool:
        headers = Headers(raw=start.get("headers", []))
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        return (
            start["status"] not in (204, 206, 304)
            and "content-encoding" not in headers
            and not body.get("more_body", False)
            and len(body.get("body", b"")) >= self.minimum
            and any(kind.startswith(t) or kind.endswith(t) for t in TEXT_TYPES)
        )
