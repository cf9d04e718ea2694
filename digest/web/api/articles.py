"""The API's articles (filtered, searched, in pages), one article with the evidence behind
its regions and themes, and stories."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, TypedDict

from digest.common.errors import SearchTimeout
from digest.common.query import QueryError, parse
from digest.publish.objects import ArticleJson, article_json
from digest.store import Store
from digest.web.api.framework import API, Call, Param, Problem
from digest.web.api.pages import CURSOR, LIMIT, decode, encode, limit_of, sliced
from digest.web.api.schema import Meta
from digest.web.api.sources import Region
from digest.web.limits import client_of

MAX_SEARCHED = 1_000  # how deep pages of a search go (it ranks the newest matches)
SINCE = Param("since", datetime, "Only what was first seen from then on (ISO 8601).")


class ArticlePage(TypedDict):
    """A page of articles: newest first, or best match first for a search."""

    items: list[ArticleJson]
    next: str | None


class StoryJson(TypedDict):
    """A story: articles from several sources on the same event."""

    id: str
    label: str
    articles: int
    members: list[str]


class StoryPage(TypedDict):
    items: list[StoryJson]
    next: str | None


def _since(call: Call) -> datetime | None:
    found = call.query.get("since")
    return found if isinstance(found, datetime) else None


@API.operation(
    "GET",
    "/articles",
    summary="List or search articles",
    scope="read",
    tag="articles",
    params=[
        Param("region", Region, "Only articles about this region."),
        Param("theme", Annotated[str, Meta(max_length=64)], "Only articles on this theme."),
        Param("source", Annotated[str, Meta(max_length=64)], "Only articles of this source."),
        Param(
            "q",
            Annotated[str, Meta(max_length=500)],
            'A search, in the search language (words, "phrases", -not, OR).',
        ),
        SINCE,
        LIMIT,
        CURSOR,
    ],
    answer=ArticlePage,
)
async def list_articles(call: Call) -> ArticlePage:
    """Newest first; with `q`, best match first (pages go 1,000 deep)."""
    query, since, limit = call.query, _since(call), limit_of(call.query)
    region, theme, source = query.get("region"), query.get("theme"), query.get("source")
    text = query.get("q")
    if text is None:
        after = decode(query.get("cursor"), str)

        def listed(store: Store) -> ArticlePage:
            found = store.articles(
                since=since,
                region=region,
                theme=theme,
                source=source,
                limit=limit + 1,
                after=after,
            )
            page = found[:limit]
            return {
                "items": [article_json(a) for a in page],
                "next": encode(page[-1].id) if len(found) > limit else None,
            }

        return await call.run(listed)
    try:
        parsed = parse(text)
    except QueryError as exc:
        raise Problem(400, f"q: {exc}") from None
    state, client = call.state, client_of(call.request)
    if not await call.run(lambda store: state.limits.searches.allow(store, state.secret(), client)):
        raise Problem(
            429, "too many searches from this network; try again in a minute", headers={"retry-after": "60"}
        )
    start = decode(query.get("cursor"), int) or 0
    if start < 0 or start >= MAX_SEARCHED:
        raise Problem(400, f"cursor: searches go {MAX_SEARCHED:,} deep")

    def searched(store: Store) -> ArticlePage:
        # Filtered here: enough to fill the page after filtering (all allowed); unfiltered,
        # this page and one more article (whether there is a next page).
        filtered = region is not None or theme is not None or source is not None
        wanted = MAX_SEARCHED if filtered else min(MAX_SEARCHED, start + limit + 1)
        try:
            found = store.search(parsed, limit=wanted, since=since)
        except SearchTimeout as exc:
            raise Problem(503, f"{exc}; ask with fewer words", headers={"retry-after": "5"}) from None
        kept = [
            a for a in found
            if (region is None or region in a.regions) and (theme is None or theme in a.themes)
            and (source is None or a.source == source)
        ]  # fmt: skip
        page, following = sliced(kept, start, limit)
        return {"items": [article_json(a) for a in page], "next": following}

    return await call.run(searched)


@API.operation(
    "GET",
    "/articles/{id}",
    summary="Show an article",
    scope="read",
    tag="articles",
    params=[Param("id", Annotated[str, Meta(max_length=200)], "The article's id.", where="path")],
    answer=ArticleJson,
)
async def get_article(call: Call) -> ArticleJson:
    """With its regions, themes and story, and the evidence behind them (the places named,
    where, how often; each theme's phrases)."""
    article_id = call.path["id"]
    found = await call.run(lambda store: store.article(article_id))
    if found is None:
        raise Problem(404, f"no article {article_id!r}")
    return article_json(found)


@API.operation(
    "GET",
    "/stories",
    summary="List stories",
    scope="read",
    tag="articles",
    params=[SINCE, LIMIT, CURSOR],
    answer=StoryPage,
)
async def list_stories(call: Call) -> StoryPage:
    """Stories of at least two articles first seen since `since` (the last 7 days when not
    given), most articles first."""
    since = _since(call)
    start = decode(call.query.get("cursor"), int) or 0
    limit = limit_of(call.query)

    def listed(store: Store) -> StoryPage:
        counts = store.group_counts(since or store.now() - timedelta(days=7))
        chosen, following = sliced(counts.stories, start, limit)
        return {
            "items": [
                {"id": s.id, "label": s.label, "articles": s.articles, "members": list(s.members)}
                for s in chosen
            ],
            "next": following,
        }

    return await call.run(listed)
