"""Who gets which digest: each subscriber's selection (since when, which regions and themes)
for a digest cut at a moment, and the content of a selection. The one planner behind every
place a digest is shown: sending, the dry run, previews, test copies and web copies.

Synchronous and database-bound: callers on an event loop run it in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from digest.common import query, rhythms
from digest.common.errors import StoreError
from digest.common.models import Article
from digest.common.query import QueryError
from digest.config import Settings
from digest.grouping.regions import regions
from digest.grouping.themes import taxonomy_for
from digest.mail import contents as digests
from digest.mail.contents import Content, Grouped, Selection, newcomer_since
from digest.store import DigestRecord, Store, Subscriber

log = logging.getLogger("digest")
# A digest planned as of a moment further ahead of now than this is planned "ahead" (see
# Planner.selections). Less is now: the clocks of two processes differ by that much, and
# the service looks at rhythms once a minute.
AHEAD = timedelta(minutes=1)
# Matches of one topic in one digest that are counted (its "N more"); a digest shows far fewer.
TOPIC_MATCHES = 1000
PAGE = 5000  # subscribers read at a time


@dataclass(frozen=True)
class Plan:
    """A new digest's deliveries: subscriber id → selection, only those with news, and how
    many distinct selections (each rendered once) they share; and when each subscriber it
    found due on their own rhythm is next due (with news or without)."""

    deliveries: dict[int, Selection]
    considered: int
    distinct: int
    next_due: list[tuple[int, datetime | None]] = field(default_factory=list)


def sample_links(settings: Settings) -> tuple[str, str]:
    """The unsubscribe and preferences links of a copy nobody subscribed with (previews,
    test copies, web copies): both lead to the subscribe page."""
    page = f"{settings.site.base_url}/subscribe"
    return page, page


class Planner:
    """``record``: whether planning may write what it finds out of order (next due times a
    clock that ran ahead left far off); a dry run's planner writes nothing."""

    def __init__(self, store: Store, settings: Settings, *, record: bool = True) -> None:
        self.store = store
        self.settings = settings
        self.record = record
        self.names = regions() if settings.digest.group_by == "region" else taxonomy_for(settings).titles()

    def content(
        self,
        selection: Selection,
        until: datetime,
        *,
        limit: int | None = digests.MAX_ITEMS,
        read: dict[tuple[object, ...], list[Article]] | None = None,
    ) -> Content:
        """What a selection holds of the articles first seen before ``until``. ``read``:
        what earlier selections of the same plan read, by window (and topic), reused:
        selections that differ only in regions, themes or topics read the database once."""
        read = {} if read is None else read
        window = (selection.since, until)
        if window not in read:
            read[window] = self.store.articles(since=selection.since, until=until)
        for topic in selection.topics:
            if (*window, topic) not in read:
                read[(*window, topic)] = self._found(topic, selection.since, until)
        articles = read[window]
        topical = [article for topic in selection.topics for article in read[(*window, topic)]]
        return digests.build(
            articles, selection, self.names, by=self.settings.digest.group_by, limit=limit, topical=topical
        )

    def _has_news(
        self, selection: Selection, until: datetime, read: dict[tuple[object, ...], Sequence[Grouped]]
    ) -> bool:
        """Whether :meth:`content` would hold anything, read as headlines (no text: a plan
        for many subscribers holds a window's groups, not its articles) and without building
        it. ``read``: as for :meth:`content`."""
        window = (selection.since, until)
        if window not in read:
            read[window] = self.store.headlines(since=selection.since, until=until, limit=None)
        for topic in selection.topics:
            if (*window, topic) not in read:
                read[(*window, topic)] = self._found(topic, selection.since, until)
        topical = [article for topic in selection.topics for article in read[(*window, topic)]]
        return digests.has_news(read[window], selection, topical)

    def _found(self, topic: str, since: datetime, until: datetime) -> list[Article]:
        """What one search topic finds in a window; nothing (and a warning) when it cannot
        be run: one reader's topic never holds up a digest."""
        try:
            return self.store.search(query.parse(topic), since=since, until=until, limit=TOPIC_MATCHES)
        except (QueryError, StoreError) as exc:
            log.warning("search topic %r: %s", topic[:80], exc, extra={"event": "digest"})
            return []

    def selections(
        self,
        until: datetime,
        since: datetime | None = None,
        *,
        site_schedule: bool = True,
        everyone: bool = False,
    ) -> tuple[dict[int, Selection], list[tuple[int, datetime | None]]]:
        """Each subscriber's selection for a digest cut at ``until``, and when those on a
        rhythm of their own are next due. Chosen: those on the site's schedule (with
        ``site_schedule``: its cron fired, or the operator sends) and those whose own due
        time has passed; with ``everyone``, every active subscriber, each on no period of
        their rhythm (which goes on as it was, its next digest starting where this one
        ends). Each starts at their last delivered digest (a newcomer: one period back;
        ``since``: an operator's start for everyone). Not a subscriber whose previous
        digest is still pending: it goes out first, and the next one starts where it ends,
        so no article reaches anyone twice however long a server defers. A digest planned
        as of a moment ahead of now (`send --at`) records nothing ahead: those it finds due
        by their rhythm get theirs as with ``everyone``."""
        if self.record:  # a dry run's answer is the same: those it would redate are not due now
            self._redate(until)
        cut = self.cut(until)  # a newcomer looks back from what the digest can hold
        due = [] if everyone else self.store.due_subscribers(until)
        ahead: list[Subscriber] = []  # due by their rhythm, served as with ``everyone``
        if until - cut > AHEAD:
            ahead, due = due, []
        chosen: dict[int, Selection] = {}
        shared: dict[Selection, Selection] = {}  # many subscribers, a few hundred selections

        def choose(subscribers: list[Subscriber]) -> None:
            last = self.store.last_delivered([s.id for s in subscribers]) if subscribers else {}
            for s in subscribers:
                selection = Selection.of(since or last.get(s.id, newcomer_since(cut)), s)
                chosen[s.id] = shared.setdefault(selection, selection)

        if site_schedule or everyone:
            waiting = self.store.subscribers_with_pending()
            for page in self._pages("active"):  # never every subscriber at once
                choose([s for s in page if (everyone or s.rhythm is None) and s.id not in waiting])
        choose(ahead)
        last = self.store.last_delivered([s.id for s in due]) if due else {}
        next_due: list[tuple[int, datetime | None]] = []
        times: dict[rhythms.Rhythm, tuple[str, datetime, datetime]] = {}
        for subscriber in due:
            rhythm = subscriber.rhythm
            if rhythm is None:
                # Stored, but no longer a rhythm (its zone left the system's database): the
                # site's schedule serves them from now on, and no tick looks at them again.
                log.warning("%s: rhythm no longer valid; on the site's schedule", subscriber.email)
                next_due.append((subscriber.id, None))
                continue
            if rhythm not in times:  # many share a rhythm: its arithmetic is done once a tick
                closes = rhythms.last_due(rhythm, until)
                times[rhythm] = (
                    rhythms.period_of(rhythm, closes),
                    rhythms.previous_due(rhythm, closes),
                    rhythms.next_due(rhythm, until),
                )
            period, newcomer, following = times[rhythm]
            if subscriber.id not in last and subscriber.confirmed is not None:
                # A newcomer's first digest looks back one period from their *first* due
                # time: if it passed while the service was down, nothing since is lost.
                first = rhythms.next_due(rhythm, subscriber.confirmed)
                newcomer = min(newcomer, rhythms.previous_due(rhythm, first))
            start = since or last.get(subscriber.id) or newcomer
            chosen[subscriber.id] = Selection.of(start, subscriber, period)
            next_due.append((subscriber.id, following))
        return chosen, next_due

    def _pages(self, status: str) -> Iterator[list[Subscriber]]:
        after = 0
        while page := self.store.subscribers(status, after=after, limit=PAGE):
            yield page
            after = page[-1].id

    def _redate(self, now: datetime) -> None:
        """Next due times further ahead than any cadence puts them were set by a clock that
        ran ahead (or a `digest send --at` in the future): from ``now`` again. The ledger's
        one digest per period keeps this from sending anything twice."""
        misdated = [(s.id, s.rhythm) for s in self.store.misdated_subscribers(now) if s.rhythm is not None]
        if misdated:
            log.warning("%d subscribers were due far ahead of %s: due again from now", len(misdated), now)
            self.store.set_next_due([(sid, rhythms.next_due(rhythm, now)) for sid, rhythm in misdated])

    def cut(self, until: datetime) -> datetime:
        """Where a digest planned as of ``until`` ends: there, or now if that is later than
        now (`digest send --at` a future moment). Nothing first seen after now is in it, and
        the next digest starts where this one ends: past now, what came in meanwhile would
        fall between the two and never go out."""
        return min(until, self.store.now())

    def plan(
        self,
        until: datetime,
        since: datetime | None = None,
        *,
        site_schedule: bool = True,
        everyone: bool = False,
    ) -> Plan:
        """The deliveries of a digest planned as of ``until`` (who is due then; ``everyone``:
        every active subscriber), with what has come in up to :meth:`cut`: those whose
        selection has news."""
        chosen, next_due = self.selections(until, since, site_schedule=site_schedule, everyone=everyone)
        cut = self.cut(until)
        has_news: dict[Selection, bool] = {}  # not the contents: sending renders each again
        read: dict[tuple[object, ...], Sequence[Grouped]] = {}
        for selection in chosen.values():
            if selection not in has_news:
                has_news[selection] = self._has_news(selection, cut, read)
        news = {sid: sel for sid, sel in chosen.items() if has_news[sel]}
        return Plan(news, len(chosen), len({sel for sel in news.values()}), next_due)

    def create(
        self,
        until: datetime,
        since: datetime | None = None,
        *,
        site_schedule: bool = True,
        everyone: bool = False,
    ) -> str | None:
        """Plan a digest and record it with its pending deliveries; None when nobody has news
        (or every period in it was had already). Those due on their own rhythm are then next
        due at their next due time; a crash in between only plans them again, and the
        ledger keeps one digest per subscriber and period."""
        plan = self.plan(until, since, site_schedule=site_schedule, everyone=everyone)
        digest_id: str | None = None
        if plan.deliveries:
            cut = self.cut(until)
            digest_id = base_id = cut.strftime("%Y%m%dT%H%M%SZ")
            for n in range(2, 100):
                if self.store.digest(digest_id) is None:
                    break
                digest_id = f"{base_id}-{n}"
            rows = [(sid, sel.since, sel.period) for sid, sel in plan.deliveries.items()]
            if not self.store.create_digest(digest_id, cut, rows):
                digest_id = None
        if plan.next_due:
            self.store.set_next_due(plan.next_due)
        return digest_id

    def for_subscriber(
        self, subscriber: Subscriber, until: datetime, since: datetime | None = None
    ) -> Selection:
        """The selection of this subscriber's next digest, with what has come in up to
        ``until`` (a preview of it)."""
        last = self.store.last_delivered([subscriber.id]).get(subscriber.id)
        if subscriber.rhythm is None:
            return Selection.of(since or last or newcomer_since(until), subscriber)
        closes = rhythms.next_due(subscriber.rhythm, until)
        start = since or last or rhythms.previous_due(subscriber.rhythm, closes)
        return Selection.of(start, subscriber, rhythms.period_of(subscriber.rhythm, closes))

    def web_copy(self, digest: DigestRecord) -> Content:
        """A past digest as the web shows it: everything of its week, nothing cut."""
        return self.content(Selection(newcomer_since(digest.until)), digest.until, limit=None)
