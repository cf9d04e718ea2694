"""Events digest tells the outside through outgoing webhooks: what happened, found in the
store, queued as one message for each endpoint that asked for its type.

- ``article.new``: articles first seen since the last look (a window reaching 10 minutes
  further back, for pulls that were still writing then);
- ``story.new``: stories of two or more articles changed since then;
- ``digest.sent``: digests done in the last week;
- ``subscriber.confirmed`` / ``.unsubscribed`` / ``.bounced``: the status changes the
  database noted (whatever made them), forgotten once queued;
- ``source.failing``: a source failing problem the alert check opened (:func:`failing`).

A message's id (its ``webhook-id``) is made from the endpoint, the type, what it is about and
when: found again (a window's overlap, two workers, a rerun) an event is queued once, the
queue keeping the first, so a receiver sees each at least once and can deduplicate by id.
The bodies are Standard Webhooks' ``{"type", "timestamp", "data"}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from digest.common.dates import from_iso, to_iso
from digest.common.models import Article
from digest.config import Settings
from digest.store import DigestSummary, QueuedEvent, Store, StoryRecord, SubscriberEvent

LOOKED_UNTIL = "webhooks_looked_until"  # settings: where the last look ended
OVERLAP = timedelta(minutes=10)
FIRST_LOOK = timedelta(hours=1)  # how far back the first look goes (not the whole history)
DIGESTS_BACK = timedelta(days=7)
STATUS_EVENTS = {
    "active": "subscriber.confirmed",
    "unsubscribed": "subscriber.unsubscribed",
    "bounced": "subscriber.bounced",
}


@dataclass(frozen=True)
class Endpoint:
    """Where events go: from the config file (``[[webhooks_out]]``) or added by the API."""

    url: str
    events: tuple[str, ...]
    secret: str
    allow_private: bool = False
    id: int | None = None  # added by the API: its id there


def endpoints(settings: Settings, store: Store) -> list[Endpoint]:
    """Every endpoint, the config file's first (one the API added at the same URL: the
    file's wins)."""
    found = [Endpoint(w.url, w.events, w.secret, w.allow_private) for w in settings.webhooks_out]
    configured = {e.url for e in found}
    found += [
        Endpoint(w.url, w.events, w.secret, False, w.id) for w in store.webhooks() if w.url not in configured
    ]
    return found


def message_id(url: str, kind: str, key: str) -> str:
    """The id of the message about ``key`` of type ``kind`` to ``url``: the same each time
    it is found."""
    return "msg_" + hashlib.sha256(f"{url}\0{kind}\0{key}".encode()).hexdigest()[:32]


def body(kind: str, data: Mapping[str, Any], at: datetime) -> str:
    """The JSON sent (and signed), exactly."""
    return json.dumps(
        {"type": kind, "timestamp": to_iso(at), "data": data}, ensure_ascii=False, sort_keys=True
    )


def queued(
    targets: Sequence[Endpoint], kind: str, items: Iterable[tuple[str, Mapping[str, Any]]], now: datetime
) -> list[QueuedEvent]:
    """A message for each (key, data) of type ``kind`` to each endpoint that wants it."""
    wanting = [t for t in targets if kind in t.events]
    if not wanting:
        return []
    return [
        QueuedEvent(message_id(t.url, kind, key), t.url, kind, body(kind, data, now), now)
        for key, data in items
        for t in wanting
    ]


def collect(store: Store, settings: Settings, now: datetime) -> int:
    """Queue what happened since the last look; how many messages were queued. With no
    endpoint, the noted status changes are forgotten and nothing is queued."""
    targets = endpoints(settings, store)
    changes = store.subscriber_events(limit=1_000)
    if not targets:
        if changes:
            store.forget_subscriber_events(changes[-1].id)
        return 0
    looked = store.get_setting(LOOKED_UNTIL)
    since = from_iso(looked) - OVERLAP if looked else now - FIRST_LOOK
    base = settings.site.base_url
    messages: list[QueuedEvent] = []
    articles = store.articles(since=since, until=now)
    messages += queued(targets, "article.new", ((a.id, _article(a, base)) for a in articles), now)
    stories = store.stories_changed(since)
    messages += queued(targets, "story.new", ((s.id, _story(s)) for s in stories), now)
    recent = now - DIGESTS_BACK
    done = [d for d in store.digests(limit=50) if d.digest.status == "done" and d.digest.created >= recent]
    messages += queued(targets, "digest.sent", ((d.digest.id, _digest(d, base)) for d in done), now)
    for status, kind in STATUS_EVENTS.items():
        said = ((str(c.id), _change(c)) for c in changes if c.status == status)
        messages += queued(targets, kind, said, now)
    store.enqueue_events(messages)
    if changes:
        store.forget_subscriber_events(changes[-1].id)  # (queued first: a crash between says them again)
    store.put_setting(LOOKED_UNTIL, to_iso(now), shown=False)
    return len(messages)


def failing(store: Store, settings: Settings, opened: Mapping[str, Mapping[str, str]], now: datetime) -> int:
    """Queue ``source.failing`` for each source failing problem open now (the alert check's
    ``opened``: problem key → since, summary), once per time it opened."""
    targets = endpoints(settings, store)
    items = [
        (f"{key}\0{value.get('since', '')}",
         {"source": key.split(":", 1)[1], "since": value.get("since"), "summary": value.get("summary")})
        for key, value in opened.items()
        if key.startswith("source-failing:")
    ]  # fmt: skip
    messages = queued(targets, "source.failing", items, now)
    store.enqueue_events(messages)
    return len(messages)


def _story(story: StoryRecord) -> dict[str, Any]:
    return {
        "id": story.id,
        "label": story.label,
        "articles": story.articles,
        "first_seen": to_iso(story.first_seen),
        "updated": to_iso(story.updated),
    }


def _digest(summary: DigestSummary, base: str) -> dict[str, Any]:
    record = summary.digest
    return {
        "id": record.id,
        "created": to_iso(record.created),
        "until": to_iso(record.until),
        "sent": summary.sent,
        "failed": summary.failed,
        "bounced": summary.bounced,
        "web_copy": f"{base}/digests/{record.id}",
    }


def _change(change: SubscriberEvent) -> dict[str, Any]:
    return {
        "id": change.subscriber_id,
        "email": change.email,
        "status": change.status,
        "reason": change.reason,
        "at": to_iso(change.at),
    }


def _article(article: Article, base: str) -> dict[str, Any]:
    return {
        "id": article.id,
        "title": article.title,
        "url": article.url,
        "source": article.source,
        "published": to_iso(article.published) if article.published else None,
        "first_seen": to_iso(article.first_seen),
        "regions": list(article.regions),
        "themes": list(article.themes),
        "story": article.story,
        "link": f"{base}/articles/{article.id}",
    }
