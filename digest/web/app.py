"""The web app: the route table (the web's map, below), the middlewares, the lifespan.

Each endpoint is a module-level ``async def name(request) -> Response``, one module per group:
:mod:`.pages` (feeds, pages, OPML, search, the web copies of digests), :mod:`.health`,
:mod:`.subscribe` (the subscriber pages), :mod:`.webhooks` (the providers'),
:mod:`.websub` (the hubs' callbacks); :mod:`.errors` answers what they raise. Each reads
what the app holds (settings, the answer cache, the site, the health callable, the fetch,
the rate limits) from ``request.app.state.digest`` (:mod:`.state`). Every request passes
the middlewares first (:mod:`.guard`: security headers, host check, body cap).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.routing import Route

from digest.common import redact
from digest.common.errors import StoreError
from digest.config import Settings
from digest.feedback.webhooks import Fetch, fetch_https
from digest.mail import confirmations
from digest.web import api, errors, pages, subscribe, webhooks, websub
from digest.web.cache import Cache, Rendered
from digest.web.compress import Gzip
from digest.web.guard import (
    API_BODY,
    MAX_BODY,
    PUSH_BODY,
    BodyLimit,
    HostCheck,
    SecurityHeaders,
    allowed_hosts,
)
from digest.web.health import healthz, metrics_text
from digest.web.state import Health, WebState, state_of

__all__ = ["Cache", "Rendered", "create_app"]  # the cache's names, long imported from here too

log = logging.getLogger("digest")

ROUTES = [
    Route("/", pages.index),
    Route("/feed.{fmt}", pages.site_feed),
    Route("/feeds.opml", pages.opml),
    Route("/favicon.svg", pages.favicon),
    Route("/favicon.ico", pages.favicon),
    Route("/robots.txt", pages.robots),
    Route("/regions/{slug}/", pages.region_page),
    Route("/themes/{slug}/", pages.theme_page),
    Route("/regions/{slug}/feed.{fmt}", pages.region_feed),
    Route("/themes/{slug}/feed.{fmt}", pages.theme_feed),
    Route("/articles/{article_id}", pages.article),
    Route("/articles/{article_id}/", pages.article),
    Route("/search", pages.search_page),
    Route("/search.{fmt}", pages.search_feed),
    Route("/healthz", healthz),
    Route("/metrics", metrics_text),
    Route("/subscribe", subscribe.subscribe, methods=["GET", "POST"]),
    Route("/confirm/{token}", subscribe.confirm, methods=["GET", "POST"]),
    Route("/unsubscribe/{token}", subscribe.unsubscribe, methods=["GET", "POST"]),
    Route("/preferences/{token}", subscribe.preferences, methods=["GET", "POST"]),
    Route("/digests/", pages.digests),
    Route("/digests/{digest_id}", pages.digest_copy),
    Route("/webhooks/ses", webhooks.ses, methods=["POST"]),
    Route("/webhooks/postmark", webhooks.postmark, methods=["POST"]),
    Route("/webhooks/mailgun", webhooks.mailgun, methods=["POST"]),
    Route("/websub/{source}/{token}", websub.callback, methods=["GET", "POST"]),
    *api.routes(),
]


def create_app(settings: Settings, health: Health | None = None, fetch: Fetch = fetch_https) -> Starlette:
    """The Starlette app for these settings: feeds, pages, OPML, health (``health`` reports
    the service's state; without it, as under `digest serve`, the app is healthy when up),
    and the providers' webhooks (``fetch`` gets SNS signing certificates)."""
    middleware = [
        Middleware(SecurityHeaders),  # outermost: on every answer, the 400 and 413 below included
        Middleware(HostCheck, hosts=allowed_hosts(settings)),
        Middleware(BodyLimit, limit=MAX_BODY, paths={"/websub/": PUSH_BODY, "/api/v1/": API_BODY}),
        # Innermost: pages built per request gzipped; the cache's gzip passes as it is.
        # (Not Starlette's GZipMiddleware: it says Vary twice on the cache's answers.)
        Middleware(Gzip),
    ]
    app = Starlette(
        routes=ROUTES,
        middleware=middleware,
        exception_handlers={
            404: errors.not_found,
            StoreError: errors.store_trouble,
            500: errors.server_error,
        },
        lifespan=lifespan,
    )
    state = WebState.build(settings, health, fetch)
    app.state.digest = state
    app.state.cache = state.cache  # as before, for a look inside a running app
    return app


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Under `digest serve`, queued confirmations are retried here; `digest run` runs
    uvicorn without a lifespan and retries them from its scheduler instead."""
    task = asyncio.create_task(_retry_signups(state_of(app)))
    try:
        yield
    finally:
        task.cancel()


async def _retry_signups(state: WebState) -> None:
    while True:
        try:
            await confirmations.drain(state.cache.store, state.settings, run=run_in_threadpool)
        except Exception as exc:  # the loop must outlive any one failure
            log.warning("sign-ups: %s", redact.text(str(exc)) or type(exc).__name__)
        await asyncio.sleep(confirmations.TICK)
