"""The web app: feeds, pages, OPML and the subscriber pages over HTTP (Starlette).

Answers are cached (:mod:`.cache`); every request passes the guard first (:mod:`.guard`:
host check, body cap, security headers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from digest.common import metrics, query, redact
from digest.common.clients import client_key
from digest.common.errors import StoreError
from digest.config import Settings
from digest.feedback import webhooks
from digest.mail import confirmations
from digest.publish import feeds as publish
from digest.publish.feeds import FeedSpec
from digest.store import Store
from digest.subscribers.tokens import secret_for
from digest.web import subscribe as web_subscribe
from digest.web import websub as web_websub
from digest.web.cache import HTML, PAGE_CACHE_CONTROL, Cache, Rendered
from digest.web.guard import SECURITY_TEXT_HEADERS, Guard, is_loopback
from digest.web.subscribe import RateLimit

log = logging.getLogger("digest")
FEED_CACHE_CONTROL = "public, max-age=300"
OPML = "text/x-opml; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
SEARCHES = RateLimit("search", 60, 60.0)  # searches run per client a minute (cached answers are free)


def create_app(
    settings: Settings,
    health: Callable[[], Awaitable[tuple[int, dict[str, Any]]]] | None = None,
    fetch: webhooks.Fetch = webhooks.fetch_https,
) -> Starlette:
    """The Starlette app for these settings: feeds, pages, OPML, health (``health`` reports
    the service's state; without it, as under `digest serve`, the app is healthy when up),
    and the providers' webhooks (``fetch`` gets SNS signing certificates)."""
    cache = Cache(settings)
    site = cache.site
    cached = cache.answer

    def feed_builder(spec: FeedSpec, fmt: str) -> Callable[[Store], Rendered]:
        def build(store: Store) -> Rendered:
            body, articles = site.feed(store, spec, fmt)
            newest = publish.content_changed(articles).timestamp() if articles else None
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

    def too_many(store: Store, request: Request) -> Rendered | None:
        """A 429 when this client has run too many searches lately (only searches not in the
        cache count: each may cost up to ``SEARCH_SECONDS`` of the database's time)."""
        client = client_key(request.client.host if request.client else "unknown")
        if SEARCHES.allow(store, secret_for(store, settings.secret), client):
            return None
        return Rendered.of(b"Too many searches: please wait a minute.\n", TEXT, status=429)

    async def search_page(request: Request) -> Response:
        text = request.query_params.get("q", "")[: query.MAX_LENGTH + 1]

        def build(store: Store) -> Rendered:
            if text.strip() and (refused := too_many(store, request)):
                return refused
            status, page = site.search(store, text)
            return Rendered.of(page.encode(), HTML, status=status)

        return await cached(request, ("search", text), build, PAGE_CACHE_CONTROL)

    async def search_feed(request: Request) -> Response:
        fmt = request.path_params["fmt"]
        if fmt not in publish.FORMATS:
            raise HTTPException(
                404, f"Search feeds come as search.atom, search.rss or search.json, not search.{fmt}."
            )
        try:
            parsed = query.parse(request.query_params.get("q", "")[: query.MAX_LENGTH + 1])
        except query.QueryError as exc:
            return PlainTextResponse(f"{exc}\n", 400, headers=dict(SECURITY_TEXT_HEADERS))
        spec = site.search_spec(parsed)

        def build(store: Store) -> Rendered:
            if refused := too_many(store, request):
                return refused
            try:
                return feed_builder(spec, fmt)(store)
            except StoreError:
                return Rendered.of(b"this search took too long; try fewer words\n", TEXT, status=400)

        return await cached(request, ("search", spec.slug or "", fmt), build, FEED_CACHE_CONTROL)

    async def healthz(request: Request) -> Response:
        if health is None:
            return JSONResponse({"status": "ok"})
        status, body = await health()
        if not is_loopback(request):
            body = {"status": body["status"]}  # details (sources, errors) are for the operator
        return JSONResponse(body, status_code=status)

    async def metrics_text(request: Request) -> Response:
        if not settings.web.metrics:
            raise HTTPException(404, "Metrics are off ([web] metrics = true turns them on).")
        if not is_loopback(request):
            return PlainTextResponse(
                "metrics are for loopback clients\n", 403, headers=dict(SECURITY_TEXT_HEADERS)
            )
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)

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
        Route("/search", search_page),
        Route("/search.{fmt}", search_feed),
        Route("/healthz", healthz),
        Route("/metrics", metrics_text),
        *web_subscribe.routes(cache),
        *webhooks.routes(settings, cache.store, fetch),
        *web_websub.routes(settings, cache.store),
    ]

    async def server_error(request: Request, exc: Exception) -> Response:
        # Sent from outside the guard (Starlette's outermost layer): it adds its own headers.
        return PlainTextResponse("Internal server error", 500, headers=dict(SECURITY_TEXT_HEADERS))

    handlers: dict[Any, Any] = {404: not_found, 500: server_error}

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
    app.add_middleware(Guard, settings=settings)
    return app


async def _retry_signups(cache: Cache, settings: Settings) -> None:
    while True:
        try:
            await confirmations.drain(cache.store, settings, run=run_in_threadpool)
        except Exception as exc:  # the loop must outlive any one failure
            log.warning("sign-ups: %s", redact.text(str(exc)) or type(exc).__name__)
        await asyncio.sleep(confirmations.TICK)
