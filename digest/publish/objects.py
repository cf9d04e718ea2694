"""The JSON objects digest shows of its records, one shape each, declared as TypedDicts:
what ``--json`` prints on the command line (``digest articles``, ``subscribers list``,
``sources list``: contracts, see DESIGN.md) and what the API answers, its OpenAPI schemas
made from these declarations. Adding a key is compatible; renaming or removing one is not."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from digest.common import redact
from digest.common.dates import optional_iso, to_iso
from digest.common.models import Article
from digest.common.rhythms import weekday_name
from digest.config import SourceSettings
from digest.store import SourceSummary, Subscriber

PlaceJson = TypedDict(
    "PlaceJson",
    {"name": str, "region": str, "kind": str, "count": int, "in": list[str]},
)
PlaceJson.__doc__ = "A place an article names: the evidence behind its regions (where: title, lead, body)."


class ArticleJson(TypedDict):
    """An article, with the evidence behind its regions (places) and themes (phrases)."""

    id: str
    title: str
    url: str | None
    source: str
    published: str | None
    first_seen: str
    updated: str
    author: str | None
    summary: str
    regions: list[str]
    themes: list[str]
    story: str | None
    places: list[PlaceJson]
    theme_phrases: dict[str, list[str]]


def article_json(article: Article) -> ArticleJson:
    """The ``digest articles --json`` object for one article (a contract: see DESIGN.md)."""
    return {
        "id": article.id,
        "title": article.title,
        "url": article.url,
        "source": article.source,
        "published": article.published.isoformat() if article.published else None,
        "first_seen": article.first_seen.isoformat(),
        "updated": article.updated.isoformat(),
        "author": article.author,
        "summary": article.summary_text,
        "regions": list(article.regions),
        "themes": list(article.themes),
        "story": article.story,
        "places": [_place_evidence(p) for p in article.places],
        "theme_phrases": {
            slug: list(m["phrases"]) for slug, m in article.theme_matches.items() if slug in article.themes
        },
    }


def _place_evidence(place: dict[str, Any]) -> PlaceJson:
    where = [part for part in ("title", "lead", "body") if place.get(part)]
    count = sum(int(place.get(part, 0)) for part in ("title", "lead", "body"))
    return {
        "name": str(place["name"]),
        "region": str(place["region"]),
        "kind": str(place["kind"]),
        "count": count,
        "in": where,
    }


class SubscriberJson(TypedDict):
    """A subscriber: status, choices, rhythm (all null: the site's schedule), next digest due."""

    id: int
    email: str
    status: Literal["pending", "active", "unsubscribed", "bounced"]
    regions: list[str]
    themes: list[str]
    created: str
    confirmed: str | None
    unsubscribed: str | None
    reason: str | None
    cadence: str | None
    timezone: str | None
    hour: int | None
    weekday: str | None
    topics: list[str]
    next_due: str | None


def subscriber_json(subscriber: Subscriber) -> SubscriberJson:
    """The ``digest subscribers list --json`` object for one subscriber."""
    rhythm = subscriber.rhythm
    return {
        "id": subscriber.id,
        "email": subscriber.email,
        "status": subscriber.status,  # type: ignore[typeddict-item]  # one of the four: a CHECK
        "regions": list(subscriber.regions),
        "themes": list(subscriber.themes),
        "created": to_iso(subscriber.created),
        "confirmed": optional_iso(subscriber.confirmed),
        "unsubscribed": optional_iso(subscriber.unsubscribed),
        "reason": subscriber.reason,  # why a bounce or a complaint moved them, if one did
        "cadence": rhythm.cadence if rhythm else None,
        "timezone": rhythm.timezone if rhythm else None,
        "hour": rhythm.hour if rhythm else None,
        "weekday": weekday_name(rhythm.weekday) if rhythm else None,
        "topics": list(subscriber.topics),
        "next_due": optional_iso(subscriber.next_due),
    }


class SourceJson(TypedDict):
    """A source: where it comes from (the config file, or added at run time), its state."""

    name: str
    url: str
    fetch_url: str
    kind: str
    origin: Literal["config", "store"]
    paused: bool
    paused_since: str | None
    every: str | float | None
    regions: list[str]
    label: str | None
    articles: int
    newest: str | None
    last_fetched: str | None
    last_status: int | None
    last_error: str | None
    consecutive_failures: int
    next_fetch: str | None
    created: str | None
    removed: str | None


def source_json(
    summary: SourceSummary, configured: SourceSettings | None = None, *, redacted: bool = False
) -> SourceJson:
    """A source as ``digest sources list --json`` and the API show it; ``configured``: its
    settings when the config file names it (for what only the file says); ``redacted``:
    its URLs without credentials or query (what an API token may see: a feed's key is
    the operator's)."""
    options = summary.options if summary.origin == "store" else {}

    def shown(url: str) -> str:
        return redact.url(url) if redacted and "://" in url else url

    return {
        "name": summary.name,
        "url": shown(summary.url),
        "fetch_url": shown(summary.fetch_url or summary.url),
        "kind": summary.kind,
        "origin": "store" if summary.origin == "store" else "config",
        "paused": summary.paused is not None,
        "paused_since": optional_iso(summary.paused),
        "every": options.get("every", configured.every if configured else None),
        "regions": list(options.get("regions", configured.regions if configured else ())),
        "label": options.get("label", configured.label if configured else None),
        "articles": summary.articles,
        "newest": optional_iso(summary.newest),
        "last_fetched": optional_iso(summary.last_fetched),
        "last_status": summary.last_status,
        "last_error": summary.last_error,
        "consecutive_failures": summary.consecutive_failures,
        "next_fetch": optional_iso(summary.next_fetch),
        "created": optional_iso(summary.created),
        "removed": optional_iso(summary.removed),
    }
