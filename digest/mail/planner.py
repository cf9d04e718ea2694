"""Who gets which digest: each subscriber's selection (since when, which regions and themes)
for a digest cut at a moment, and the content of a selection. The one planner behind every
place a digest is shown: sending, the dry run, previews, test copies and web copies.

Synchronous and database-bound: callers on an event loop run it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from digest import digests
from digest.config import Settings
from digest.digests import Content, Selection, newcomer_since
from digest.grouping.regions import regions
from digest.grouping.themes import taxonomy_for
from digest.store import DigestRecord, Store, Subscriber


@dataclass(frozen=True)
class Plan:
    """A new digest's deliveries: subscriber id → selection, only those with news, and how
    many distinct selections (each rendered once) they share."""

    deliveries: dict[int, Selection]
    considered: int
    distinct: int


def sample_links(settings: Settings) -> tuple[str, str]:
    """The unsubscribe and preferences links of a copy nobody subscribed with (previews,
    test copies, web copies): both lead to the subscribe page."""
    page = f"{settings.site.base_url}/subscribe"
    return page, page


class Planner:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.names = regions() if settings.digest.group_by == "region" else taxonomy_for(settings).titles()

    def content(
        self, selection: Selection, until: datetime, *, limit: int | None = digests.MAX_ITEMS
    ) -> Content:
        """What a selection holds of the articles first seen before ``until``."""
        articles = self.store.articles(since=selection.since, until=until)
        return digests.build(articles, selection, self.names, by=self.settings.digest.group_by, limit=limit)

    def selections(self, until: datetime, since: datetime | None = None) -> dict[int, Selection]:
        """Each active subscriber's selection for a digest cut at ``until`` (``since``: an
        operator's start for everyone). Not a subscriber whose previous digest is still
        pending: it goes out first, and the next one starts where it ends, so no article
        reaches anyone twice however long a server defers."""
        waiting = self.store.subscribers_with_pending()
        active = [s for s in self.store.subscribers("active") if s.id not in waiting]
        return digests.selections(active, self.store.last_delivered(), until, since)

    def plan(self, until: datetime, since: datetime | None = None) -> Plan:
        """The deliveries of a digest cut at ``until``: those whose selection has news."""
        chosen = self.selections(until, since)
        contents: dict[Selection, Content] = {}
        for selection in chosen.values():
            if selection not in contents:
                contents[selection] = self.content(selection, until)
        news = {sid: sel for sid, sel in chosen.items() if not contents[sel].empty}
        return Plan(news, len(chosen), len({sel for sel in news.values()}))

    def create(self, until: datetime, since: datetime | None = None) -> str | None:
        """Plan a digest and record it with its pending deliveries; None when nobody has news."""
        plan = self.plan(until, since)
        if not plan.deliveries:
            return None
        digest_id = base_id = until.strftime("%Y%m%dT%H%M%SZ")
        for n in range(2, 100):
            if self.store.digest(digest_id) is None:
                break
            digest_id = f"{base_id}-{n}"
        self.store.create_digest(digest_id, until, [(sid, sel.since) for sid, sel in plan.deliveries.items()])
        return digest_id

    def for_subscriber(
        self, subscriber: Subscriber, until: datetime, since: datetime | None = None
    ) -> Selection:
        """The selection of this subscriber's next digest (a preview of it)."""
        start = since or self.store.last_delivered().get(subscriber.id, newcomer_since(until))
        return Selection.of(start, subscriber)

    def web_copy(self, digest: DigestRecord) -> Content:
        """A past digest as the web shows it: everything of its week, nothing cut."""
        return self.content(Selection(newcomer_since(digest.until)), digest.until, limit=None)
