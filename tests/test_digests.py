"""Choosing a digest's articles (pure): windows, newcomers, preferences, stories, subject."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest.common.models import Article
from digest.mail.contents import Selection, build, has_news, newcomer_since, subject

from .helpers import article, settings_for

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
NAMES = {"europe": "Europe", "africa": "Africa", "east-asia": "East Asia"}


def _article(
    n: int,
    days_ago: float,
    regions: tuple[str, ...],
    themes: tuple[str, ...] = ("t",),
    story: str | None = None,
) -> Article:
    return article(
        f"a{n}",
        NOW - timedelta(days=days_ago),
        title=f"Article {n}",
        summary_text="x" * n,
        regions=regions,
        themes=themes,
        story=story,
    )


ARTICLES = [
    _article(1, 1, ("europe",)),
    _article(2, 2, ("africa", "europe"), ("trade",)),
    _article(3, 3, ("east-asia",), story="s1"),
    _article(4, 3.1, ("east-asia",), story="s1"),
    _article(5, 9, ("europe",)),  # older than a week: not for newcomers
]


def test_a_newcomer_gets_the_last_week_and_nothing_older() -> None:
    content = build(ARTICLES, Selection(newcomer_since(NOW)), NAMES)
    titles = [i.article.title for s in content.sections for i in s.items]
    assert "Article 5" not in titles and content.count == 4


def test_after_a_digest_only_what_came_since() -> None:
    since = NOW - timedelta(days=2, hours=12)
    content = build(ARTICLES, Selection(since), NAMES)
    assert sorted(i.article.title for s in content.sections for i in s.items) == ["Article 1", "Article 2"]


def test_preferences_filter_and_sections_follow_primary_region() -> None:
    content = build(ARTICLES, Selection(newcomer_since(NOW), regions=("europe",)), NAMES)
    # One article each: the tie is broken by name.
    assert [s.title for s in content.sections] == ["Africa", "Europe"]
    assert content.count == 2
    themed = build(ARTICLES, Selection(newcomer_since(NOW), themes=("trade",)), NAMES)
    assert [i.article.id for s in themed.sections for i in s.items] == ["a2"]
    by_theme = build(ARTICLES, Selection(newcomer_since(NOW)), {"t": "T", "trade": "Trade"}, by="theme")
    assert {s.title for s in by_theme.sections} == {"T", "Trade"}


def test_one_story_is_one_item_with_the_others_as_also_covered() -> None:
    content = build(ARTICLES, Selection(newcomer_since(NOW), regions=("east-asia",)), NAMES)
    [section] = content.sections
    [item] = section.items
    assert item.article.id == "a4" and [a.id for a in item.also] == ["a3"]  # the fuller text leads
    assert content.count == 2


def test_whether_a_selection_has_news_is_whether_its_content_is_empty() -> None:
    """A plan asks only whether each selection has news (of headlines, without building it):
    the answer is the content's, for every start, region, theme and topic match."""
    regions = [(), ("europe",), ("africa",), ("east-asia",), ("oceania",), ("africa", "east-asia")]
    themes = [(), ("t",), ("trade",), ("energy",)]
    found = 0
    for days in (0.5, 1.5, 2.5, 3.05, 5, 10):
        since = NOW - timedelta(days=days)
        for region in regions:
            for theme in themes:
                for topical in ([], [ARTICLES[4]], [ARTICLES[0]]):
                    selection = Selection(since, region, theme)
                    empty = build(ARTICLES, selection, NAMES, topical=topical).empty
                    assert has_news(ARTICLES, selection, topical) is not empty, (days, region, theme, topical)
                    found += not empty
    assert 0 < found < 6 * 6 * 4 * 3  # some selections have news, some none


def test_subject_says_what_is_inside() -> None:
    content = build(ARTICLES, Selection(newcomer_since(NOW)), NAMES)
    assert subject(content) == "4 new articles: East Asia, Africa, Europe"  # the story's two articles first
    assert build([], Selection(newcomer_since(NOW)), NAMES).empty


def test_every_topic_match_is_counted_though_a_digest_shows_sixty(tmp_path: Path) -> None:
    """Seventy articles a reader's topic finds outside their regions: the digest shows sixty
    and says "10 more" (matches beyond sixty used to be dropped, and not counted)."""
    from dataclasses import replace

    from digest.mail.planner import Planner
    from digest.store import SourceSpec, SubscriberChange, open_store

    settings = settings_for(tmp_path, "")
    with open_store(settings.database.path, clock=lambda: NOW) as store:
        store.sync_sources([SourceSpec("wire", "https://wire.example/feed", "feed")])
        found = [
            replace(_article(n, (n + 1) / 24, ()), source="wire", title=f"Mekong dam {n}",
                    summary_text=f"On the Mekong, story {n}.", url=f"https://wire.example/{n}")
            for n in range(70)
        ]  # fmt: skip
        store.save_articles("wire", found, now=NOW)
        store.upsert_subscribers(
            [SubscriberChange("ann@example.org", status="active", regions=("europe",), topics=("mekong",))]
        )
        ann = store.subscriber(email="ann@example.org")
        assert ann is not None
        content = Planner(store, settings).content(Selection.of(NOW - timedelta(days=7), ann), NOW)
    assert (content.count, content.shown, content.more) == (70, 60, 10)
