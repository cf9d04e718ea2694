"""What goes into a digest: per subscriber, the articles first seen since their last digest,
filtered by their preferences, grouped into sections, one entry per story.

Pure selection and grouping over articles the caller reads from the store; many
subscribers share a selection (same start, same preferences), and callers render each
distinct :class:`Selection` once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from digest.common.models import Article
from digest.common.rhythms import period_label
from digest.store.records import Subscriber


class Grouped(Protocol):
    """What choosing an article for a selection reads of it (an Article or a Headline)."""

    @property
    def first_seen(self) -> datetime: ...
    @property
    def regions(self) -> tuple[str, ...]: ...
    @property
    def themes(self) -> tuple[str, ...]: ...


NEWCOMER_WINDOW = timedelta(days=7)
TOPICS, TOPICS_TITLE = "topics", "Your topics"  # the section of a subscriber's search topics
MAX_ITEMS = 60


@dataclass(frozen=True)
class Selection:
    """Everything that decides a digest's content: since when, which regions and themes
    (empty = everything), which search topics join it, and the period it closes (a
    subscriber's own rhythm: its name, see ``cadence.period_of``; None: the site's schedule)."""

    since: datetime
    regions: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    period: str | None = None

    @classmethod
    def of(cls, since: datetime, subscriber: Subscriber, period: str | None = None) -> Selection:
        """A subscriber's selection from ``since`` (preferences sorted, so equal ones share)."""
        return cls(
            since,
            tuple(sorted(subscriber.regions)),
            tuple(sorted(subscriber.themes)),
            tuple(sorted(subscriber.topics)),
            period,
        )

    def wants(self, article: Grouped) -> bool:
        if article.first_seen < self.since:
            return False
        if self.regions and not set(self.regions) & set(article.regions):
            return False
        return not (self.themes and not set(self.themes) & set(article.themes))


@dataclass(frozen=True)
class Item:
    """One entry: an article, and the others that covered the same story."""

    article: Article
    also: tuple[Article, ...] = ()


@dataclass(frozen=True)
class Section:
    slug: str
    title: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Content:
    """A digest's content. ``count`` is every article selected; ``shown`` those in the
    sections (fewer when a size limit cut the list: ``more`` says how many, never silently)."""

    sections: tuple[Section, ...] = ()
    count: int = 0
    names: tuple[str, ...] = field(default_factory=tuple)  # section titles, largest first
    shown: int = 0
    label: str = ""  # the period it covers ("Week of 30 November"), or nothing

    @property
    def empty(self) -> bool:
        return self.count == 0

    @property
    def more(self) -> int:
        return self.count - self.shown


def newcomer_since(until: datetime) -> datetime:
    """Where a new subscriber's first digest starts: a week before it."""
    return until - NEWCOMER_WINDOW


def has_news(articles: Iterable[Grouped], selection: Selection, topical: Iterable[Grouped] = ()) -> bool:
    """Whether :func:`build` would hold anything (its count not 0), without building it: an
    article its topics found since it starts, or one it wants."""
    return any(a.first_seen >= selection.since for a in topical) or any(map(selection.wants, articles))


def build(
    articles: Iterable[Article],
    selection: Selection,
    names: Mapping[str, str],
    *,
    by: str = "region",
    fallback: str = "Other news",
    limit: int | None = MAX_ITEMS,
    topical: Iterable[Article] = (),
) -> Content:
    """The content of one selection: its articles grouped into sections by primary region
    (or theme, when ``by == "theme"``), one item per story, newest and most salient first;
    at most ``limit`` items (None: all), with the count of every article kept either way.
    ``topical``: the articles its search topics found, first, in a section of their own
    (whatever their regions and themes), and in no other section."""
    first_seen = {a.id: a for a in topical if a.first_seen >= selection.since}
    topic_items = [Item(a) for a in sorted(first_seen.values(), key=lambda a: _order(Item(a)))]
    items = topic_items + _items([a for a in articles if selection.wants(a) and a.id not in first_seen])
    total = sum(1 + len(i.also) for i in items)
    items = items[:limit] if limit is not None else items
    in_topics = {id(i) for i in topic_items}
    sections: dict[str, list[Item]] = {}
    for item in items:
        keys = item.article.regions if by == "region" else item.article.themes
        key = TOPICS if id(item) in in_topics else keys[0] if keys else ""
        sections.setdefault(key, []).append(item)
    # Topics first, then the biggest sections, counting every article a story brought in.
    ordered = sorted(
        sections.items(),
        key=lambda kv: (kv[0] != TOPICS, -sum(1 + len(i.also) for i in kv[1]), names.get(kv[0], "~")),
    )
    built = tuple(
        Section(
            slug,
            TOPICS_TITLE if slug == TOPICS else names.get(slug, fallback),
            tuple(sorted(group, key=_order)),
        )
        for slug, group in ordered
    )
    shown = sum(1 + len(i.also) for i in items)
    label = period_label(selection.period) if selection.period else ""
    return Content(built, total, tuple(s.title for s in built), shown, label)


def _items(chosen: Sequence[Article]) -> list[Item]:
    """One item per article, and one per story (its most salient article leading)."""
    stories: dict[str, list[Article]] = {}
    items: list[Item] = []
    for article in chosen:
        if article.story:
            stories.setdefault(article.story, []).append(article)
    seen_stories: set[str] = set()
    for article in chosen:
        if article.story:
            if article.story in seen_stories:
                continue
            seen_stories.add(article.story)
            group = stories[article.story]
            lead = max(group, key=_salience)
            items.append(Item(lead, tuple(a for a in group if a is not lead)))
        else:
            items.append(Item(article))
    return items


def _salience(article: Article) -> tuple[int, str]:
    return (len(article.summary_text), article.id)


def _order(item: Item) -> tuple[int, float]:
    # Newest first; among the same day, stories covered more often first.
    when = item.article.published or item.article.first_seen
    return (-when.toordinal(), -len(item.also) - when.timestamp() / 1e10)


def subject(content: Content, limit: int = 3) -> str:
    """A subject that says what is inside: "12 new articles: Southeast Asia, Europe, Africa"."""
    noun = "article" if content.count == 1 else "articles"
    shown = ", ".join(content.names[:limit])
    more = f" and {len(content.names) - limit} more" if len(content.names) > limit else ""
    line = f"{content.count} new {noun}: {shown}{more}" if shown else f"{content.count} new {noun}"
    return f"{content.label} · {line}" if content.label else line
