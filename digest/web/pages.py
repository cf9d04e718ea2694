"""The public pages and feeds: the home page; the site's feed, and a page and a feed for each
region and theme; OPML (every feed, for readers); articles; search (a page, and feeds of
saved searches); the web copies of past digests.

Every answer comes from the cache (:mod:`.cache`): rendered in a worker thread once per
change of the database, sent with its validators (304 when the reader's copy is current)
and gzip. What does not exist is a 404 that says what was asked for (:mod:`.errors` renders
it). A search the cache cannot answer counts against its client's limit (:mod:`.limits`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from digest.common import query
from digest.common.errors import SearchTimeout
from digest.mail import compose
from digest.mail.planner import Planner, sample_links
from digest.publish import feeds
from digest.publish.feeds import FeedSpec
from digest.publish.site import FAVICON, ROBOTS, Site
from digest.store import ArticlesStore, SettingsStore, Store
from digest.web.cache import HTML, PAGE_CACHE_CONTROL, Rendered
from digest.web.guard import SECURITY_TEXT_HEADERS
from digest.web.limits import client_of
from digest.web.state import WebState, web_state

if TYPE_CHECKING:
    from digest.store.contract import ArticlesAndSettings, ArticlesAndSources

FEED_CACHE_CONTROL = "public, max-age=300"
FILE_CACHE_CONTROL = "public, max-age=86400"
OPML = "text/x-opml; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


async def index(request: Request) -> Response:
    """The home page: the latest articles by group, the feeds, the subscribe form."""
    state = web_state(request)
    site = state.site
    build = lambda store: Rendered.of(site.index(store).encode(), HTML)  # noqa: E731
    return await state.cache.answer(request, ("index",), build, PAGE_CACHE_CONTROL)


async def opml(request: Request) -> Response:
    """Every feed, as an OPML outline for feed readers."""
    state = web_state(request)
    site = state.site
    return await state.cache.answer(
        request, ("opml",), lambda _: Rendered.of(site.opml(), OPML), FEED_CACHE_CONTROL
    )


async def favicon(request: Request) -> Response:
    """The site's icon (``/favicon.svg``, and ``/favicon.ico`` that browsers ask for unbidden)."""
    return Response(FAVICON, media_type="image/svg+xml", headers={"cache-control": FILE_CACHE_CONTROL})


async def robots(request: Request) -> Response:
    """``/robots.txt``: crawlers kept out of subscribers' pages and searches."""
    return Response(ROBOTS, media_type=TEXT, headers={"cache-control": FILE_CACHE_CONTROL})


async def site_feed(request: Request) -> Response:
    """``/feed.{fmt}``: everything."""
    return await _feed(request, "site")


async def region_feed(request: Request) -> Response:
    """``/regions/{slug}/feed.{fmt}``."""
    return await _feed(request, "region")


async def theme_feed(request: Request) -> Response:
    """``/themes/{slug}/feed.{fmt}``."""
    return await _feed(request, "theme")


async def region_page(request: Request) -> Response:
    """``/regions/{slug}/``."""
    return await _group_page(request, "region")


async def theme_page(request: Request) -> Response:
    """``/themes/{slug}/``."""
    return await _group_page(request, "theme")


async def article(request: Request) -> Response:
    """One article, sanitised (a 404 page, never kept, for an id we do not have)."""
    state = web_state(request)
    site, article_id = state.site, request.path_params["article_id"]

    def build(store: ArticlesStore) -> Rendered:
        found = store.article(article_id)
        if found is None:
            missing = f"There is no article with the id {article_id!r}."
            return Rendered.of(site.not_found(store.count_articles(), missing).encode(), HTML, status=404)
        return Rendered.of(site.article(store, found).encode(), HTML)

    return await state.cache.answer(request, ("article", article_id), build, PAGE_CACHE_CONTROL)


async def search_page(request: Request) -> Response:
    """``/search?q=``: the results page (an empty query shows the form)."""
    state = web_state(request)
    text = request.query_params.get("q", "")[: query.MAX_LENGTH + 1]

    def build(store: ArticlesAndSettings) -> Rendered:
        if text.strip() and (refused := _too_many(state, store, request)):
            return refused
        status, page = state.site.search(store, text)
        return Rendered.of(page.encode(), HTML, status=status)

    return await state.cache.answer(request, ("search", text), build, PAGE_CACHE_CONTROL)


async def search_feed(request: Request) -> Response:
    """``/search.{fmt}?q=``: a saved search as a feed."""
    fmt = request.path_params["fmt"]
    if fmt not in feeds.FORMATS:
        raise HTTPException(
            404, f"Search feeds come as search.atom, search.rss or search.json, not search.{fmt}."
        )
    try:
        parsed = query.parse(request.query_params.get("q", "")[: query.MAX_LENGTH + 1])
    except query.QueryError as exc:
        return PlainTextResponse(f"{exc}\n", 400, headers=dict(SECURITY_TEXT_HEADERS))
    state = web_state(request)
    spec = state.site.search_spec(parsed)
    render = _feed_builder(state.site, spec, fmt)

    def build(store: Store) -> Rendered:
        if refused := _too_many(state, store, request):
            return refused
        try:
            return render(store)
        except SearchTimeout:  # other trouble with the database is the 503 of errors.py
            return Rendered.of(b"this search took too long; try fewer words\n", TEXT, status=400)

    return await state.cache.answer(request, ("search", spec.slug or "", fmt), build, FEED_CACHE_CONTROL)


async def digests(request: Request) -> Response:
    """``/digests/``: the digests sent so far (not to whom, nor to how many)."""
    state = web_state(request)

    def render() -> HTMLResponse:
        store = state.store()
        sent = store.digests()
        return HTMLResponse(state.site.render("digests.html", store.count_articles(), digests=sent))

    return await run_in_threadpool(render)


async def digest_copy(request: Request) -> Response:
    """``/digests/{id}``: the web copy of a digest, as a subscriber read it (their address
    and links replaced by samples)."""
    state = web_state(request)
    settings, site, digest_id = state.settings, state.site, request.path_params["digest_id"]

    def build(store: Store) -> Rendered:
        found = store.digest(digest_id)
        if found is None:
            page = site.render(
                "message.html", store.count_articles(), heading="Not found",
                text=f"There is no digest {digest_id!r}.", button=None,
            )  # fmt: skip
            return Rendered.of(page.encode(), HTML, status=404)
        content = Planner(store, settings).web_copy(found)
        rendered = compose.render(content, settings, found.id, compose.environment(settings.digest.templates))
        unsubscribe, preferences = sample_links(settings)
        body = rendered.filled(
            "html", email="a subscriber", unsubscribe_url=unsubscribe, preferences_url=preferences
        )
        return Rendered.of(body.encode(), HTML)

    return await state.cache.answer(request, ("digest", digest_id), build, PAGE_CACHE_CONTROL)


# --- helpers ----------------------------------------------------------------------------------


async def _feed(request: Request, kind: str) -> Response:
    fmt = request.path_params["fmt"]
    if fmt not in feeds.FORMATS:
        raise HTTPException(404, f"Feeds come as feed.atom, feed.rss or feed.json, not feed.{fmt}.")
    state = web_state(request)
    spec = _spec(state.site, kind, request)
    key = ("feed", kind, spec.slug or "", fmt)
    return await state.cache.answer(request, key, _feed_builder(state.site, spec, fmt), FEED_CACHE_CONTROL)


async def _group_page(request: Request, kind: str) -> Response:
    state = web_state(request)
    site = state.site
    spec = _spec(site, kind, request)
    build = lambda store: Rendered.of(site.group(store, spec).encode(), HTML)  # noqa: E731
    return await state.cache.answer(request, ("page", kind, spec.slug or ""), build, PAGE_CACHE_CONTROL)


def _spec(site: Site, kind: str, request: Request) -> FeedSpec:
    """The region or theme (or the whole site) the path names; a 404 for one we do not have."""
    slug = request.path_params.get("slug")
    spec = site.spec(kind, slug)
    if spec is None:
        raise HTTPException(404, f"There is no {kind} called {slug!r}.")
    return spec


def _feed_builder(site: Site, spec: FeedSpec, fmt: str) -> Callable[[ArticlesAndSources], Rendered]:
    def build(store: ArticlesAndSources) -> Rendered:
        body, articles = site.feed(store, spec, fmt)
        newest = feeds.content_changed(articles).timestamp() if articles else None
        return Rendered.of(body, feeds.CONTENT_TYPES[fmt], newest)

    return build


def _too_many(state: WebState, store: SettingsStore, request: Request) -> Rendered | None:
    """A 429 when this client has run too many searches lately (only searches the cache
    cannot answer count: each may cost up to ``SEARCH_SECONDS`` of the database's time)."""
    if state.limits.searches.allow(store, state.secret(), client_of(request)):
        return None
    return Rendered.of(b"Too many searches: please wait a minute.\n", TEXT, status=429)
