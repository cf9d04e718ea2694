"""The web app: feeds, pages and OPML over HTTP (Starlette), with caching that readers like.

Every feed and page is rendered once per change of the database and kept, with its gzip
form, a weak ETag and Last-Modified. A change is noticed through SQLite's ``data_version``
(any commit by another connection, such as a pull, bumps it), checked at most once per
``RECHECK`` seconds; a cached answer costs no database work at all.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import hashlib
import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from digest import publish, signups, web_subscribe
from digest.config import Settings
from digest.errors import DigestError
from digest.publish import FeedSpec
from digest.site import Site
from digest.store import Store

log = logging.getLogger("digest")
RECHECK = 1.0
FEED_CACHE_CONTROL = "public, max-age=300"
PAGE_CACHE_CONTROL = "public, max-age=60"
HTML = "text/html; charset=utf-8"
OPML = "text/x-opml; charset=utf-8"
MIN_GZIP = 512


@dataclass(frozen=True)
class Rendered:
    """A response body ready to send, in plain and gzip form, with its validators."""

    body: bytes
    media_type: str
    etag: str
    last_modified: str | None = None
    status: int = 200
    gzipped: bytes | None = None

    @classmethod
    def of(
        cls, body: bytes, media_type: str, last_modified: float | None = None, status: int = 200
    ) -> Rendered:
        etag = 'W/"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        stamp = email.utils.formatdate(last_modified, usegmt=True) if last_modified is not None else None
        packed = gzip.compress(body, compresslevel=6, mtime=0) if len(body) >= MIN_GZIP else None
        return cls(body, media_type, etag, stamp, status, packed)


class Cache:
    """Rendered answers (200s only), least recently used dropped beyond ``max_bytes``, and
    all dropped whenever the database changes.

    A page is kept only if the database did not change while it was rendered: the version
    is read *before* rendering, so a page built from data a pull has since replaced is
    served once, to the request that built it, and never kept."""

    def __init__(self, settings: Settings, max_bytes: int | None = None) -> None:
        self.settings = settings
        self.site = Site(settings)
        self.max_bytes = settings.web.cache_bytes if max_bytes is None else max_bytes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, ...], Rendered] = OrderedDict()
        self.bytes = 0
        self._version: int | None = None
        self._checked = 0.0
        self._watch: Store | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def store(self) -> Store:
        """This thread's connection (sqlite3 connections stay in the thread that made them)."""
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = Store.open(self.settings.database.path)
            self._local.store = store
        return store

    def peek(self, key: tuple[str, ...]) -> Rendered | None:
        """The cached answer, if the database was checked for changes within RECHECK seconds."""
        if time.monotonic() - self._checked >= RECHECK:
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def get(self, key: tuple[str, ...], build: Callable[[Store], Rendered]) -> Rendered:
        """The cached answer, or a fresh one (run in a worker thread)."""
        self._revalidate()
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        version = self._revalidate(force=True)  # a render costs far more than this check
        rendered = build(self.store())
        if rendered.status == 200:
            self._keep(key, rendered, version)
        return rendered

    def _keep(self, key: tuple[str, ...], rendered: Rendered, version: int) -> None:
        size = _size(key, rendered)
        if size > self.max_bytes:
            return
        with self._lock:
            assert self._watch is not None
            if version != self._version or version != self._watch.data_version():
                return  # the database changed while this was rendered
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= _size(key, old)
            self._entries[key] = rendered
            self.bytes += size
            while self.bytes > self.max_bytes:
                dropped_key, dropped = self._entries.popitem(last=False)
                self.bytes -= _size(dropped_key, dropped)

    def _revalidate(self, *, force: bool = False) -> int:
        """Drop everything if the database changed (checked at most every RECHECK seconds
        unless ``force``); the version the entries belong to."""
        with self._lock:
            if not force and self._version is not None and time.monotonic() - self._checked < RECHECK:
                return self._version
            if self._watch is None:
                self._watch = Store.open(self.settings.database.path, shared=True)
            version = self._watch.data_version()
            if version != self._version:
                self._entries.clear()
                self.bytes = 0
                self._version = version
            self._checked = time.monotonic()
            return version


def _size(key: tuple[str, ...], rendered: Rendered) -> int:
    # What an entry costs: its bodies and key, plus a rough allowance for the objects.
    return len(rendered.body) + len(rendered.gzipped or b"") + sum(len(part) for part in key) + 400


SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; form-action 'self';"
        b" base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
MAX_BODY = 64 * 1024


class Guard:
    """ASGI middleware: security headers on every answer, and request bodies capped at
    MAX_BODY (413 beyond it), so a client cannot make the app buffer megabytes."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > MAX_BODY:
            await Response("Request body too large", status_code=413)(scope, receive, send)
            return
        seen = 0

        async def capped_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY:
                    raise HTTPException(413, "Request body too large")
            return message

        async def secured_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, capped_receive, secured_send)


def _loopback(request: Request) -> bool:
    """Whether the client is on this machine (behind a proxy on this machine, uvicorn puts
    the address from X-Forwarded-For here, so a visitor through the proxy is not)."""
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def respond(request: Request, rendered: Rendered, cache_control: str) -> Response:
    """Send ``rendered``: 304 when the client's copy is current, gzip when it accepts it."""
    headers = {"ETag": rendered.etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding"}
    if rendered.last_modified:
        headers["Last-Modified"] = rendered.last_modified
    if rendered.status == 200 and _not_modified(request, rendered):
        return Response(status_code=304, headers=headers)
    body = rendered.body
    if rendered.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = rendered.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, status_code=rendered.status, media_type=rendered.media_type, headers=headers)


def _not_modified(request: Request, rendered: Rendered) -> bool:
    tags = request.headers.get("if-none-match")
    if tags is not None:
        wanted = {tag.strip().removeprefix("W/") for tag in tags.split(",")}
        return "*" in wanted or rendered.etag.removeprefix("W/") in wanted
    since = request.headers.get("if-modified-since")
    if since and rendered.last_modified:
        try:
            return email.utils.parsedate_to_datetime(since) >= email.utils.parsedate_to_datetime(
                rendered.last_modified
            )
        except (TypeError, ValueError):
            return False
    return False


def create_app(
    settings: Settings, health: Callable[[], tuple[int, dict[str, Any]]] | None = None
) -> Starlette:
    """The Starlette app for these settings: feeds, pages, OPML, health (``health`` reports
    the service's state; without it, as under `digest serve`, the app is healthy when up)."""
    cache = Cache(settings)
    site = cache.site

    async def cached(
        request: Request, key: tuple[str, ...], build: Callable[[Store], Rendered], control: str
    ) -> Response:
        rendered = cache.peek(key)
        if rendered is None:
            rendered = await run_in_threadpool(cache.get, key, build)
        return respond(request, rendered, control)

    def feed_builder(spec: FeedSpec, fmt: str) -> Callable[[Store], Rendered]:
        def build(store: Store) -> Rendered:
            body, articles = site.feed(store, spec, fmt)
            newest = publish.feed_updated(articles).timestamp() if articles else None
            return Rendered.of(body, publish.CONTENT_TYPES[fmt], newest)

        return build

    def spec_of(kind: str, request: Request) -> FeedSpec:
        slug = request.path_params.get("slug")
        spec = site.spec(kind, slug)
        if spec is None:
            raise HTTPException(404, f"There is no {kind} called {slug!r}.")
        return spec

    def feed_of(kind: str) -> Callable[[Request], Any]:
        async def feed(request: Request) -> Response:
            fmt = request.path_params["fmt"]
            if fmt not in publish.FORMATS:
                raise HTTPException(404, f"Feeds come as feed.atom, feed.rss or feed.json, not feed.{fmt}.")
            spec = spec_of(kind, request)
            key = ("feed", kind, spec.slug or "", fmt)
            return await cached(request, key, feed_builder(spec, fmt), FEED_CACHE_CONTROL)

        return feed

    def page_of(kind: str) -> Callable[[Request], Any]:
        async def page(request: Request) -> Response:
            spec = spec_of(kind, request)
            build = lambda store: Rendered.of(site.group(store, spec).encode(), HTML)  # noqa: E731
            return await cached(request, ("page", kind, spec.slug or ""), build, PAGE_CACHE_CONTROL)

        return page

    async def index(request: Request) -> Response:
        return await cached(
            request, ("index",), lambda s: Rendered.of(site.index(s).encode(), HTML), PAGE_CACHE_CONTROL
        )

    async def opml(request: Request) -> Response:
        return await cached(request, ("opml",), lambda s: Rendered.of(site.opml(), OPML), FEED_CACHE_CONTROL)

    async def article(request: Request) -> Response:
        article_id = request.path_params["article_id"]

        def build(store: Store) -> Rendered:
            found = store.article(article_id)
            if found is None:
                return Rendered.of(
                    site.not_found(
                        store.count_articles(), f"There is no article with the id {article_id!r}."
                    ).encode(),
                    HTML,
                    status=404,
                )
            return Rendered.of(site.article(store, found).encode(), HTML)

        return await cached(request, ("article", article_id), build, PAGE_CACHE_CONTROL)

    async def healthz(request: Request) -> Response:
        if health is None:
            return JSONResponse({"status": "ok"})
        status, body = health()  # quick reads, on the loop's thread where the service's store lives
        if not _loopback(request):
            body = {"status": body["status"]}  # details (sources, errors) are for the operator
        return JSONResponse(body, status_code=status)

    async def not_found(request: Request, exc: Exception) -> Response:
        detail = exc.detail if isinstance(exc, HTTPException) and exc.detail != "Not Found" else None
        message = detail or f"Nothing lives at {request.url.path}."
        count = await run_in_threadpool(lambda: cache.store().count_articles())
        body = site.not_found(count, str(message)).encode()
        return Response(body, status_code=404, media_type=HTML)

    routes = [
        Route("/", index),
        Route("/feed.{fmt}", feed_of("site")),
        Route("/feeds.opml", opml),
        Route("/regions/{slug}/", page_of("region")),
        Route("/themes/{slug}/", page_of("theme")),
        Route("/regions/{slug}/feed.{fmt}", feed_of("region")),
        Route("/themes/{slug}/feed.{fmt}", feed_of("theme")),
        Route("/articles/{article_id}", article),
        Route("/articles/{article_id}/", article),
        Route("/healthz", healthz),
        *web_subscribe.routes(site, cache.store),
    ]
    handlers: dict[Any, Any] = {404: not_found}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Under `digest serve`, queued confirmations are retried here; `digest run` runs
        # uvicorn without a lifespan and retries them from its scheduler instead.
        task = asyncio.create_task(_retry_signups(cache, settings))
        try:
            yield
        finally:
            task.cancel()

    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.cache = cache
    app.add_middleware(Guard)
    return app


async def _retry_signups(cache: Cache, settings: Settings) -> None:
    while True:
        try:
            await signups.drain(cache.store, settings, run=run_in_threadpool)
        except DigestError as exc:
            log.warning("sign-ups: %s", exc)
        await asyncio.sleep(signups.TICK)
