"""Robustness and ground truth over the public corpora in ../shared/corpora.

They skip with a clear message on a machine without ../shared (a user's checkout), and
fail in CI (``CI`` set), which always has it.
"""

from __future__ import annotations

import email
import email.policy
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest

from digest.common.dates import utcnow
from digest.common.sanitize import one_line
from digest.config import Settings, SourceSettings
from digest.intake.fetch import Fetcher
from digest.intake.kinds.feed import fast_path_eligible, parse_with_fastfeedparser, parse_with_feedparser
from digest.intake.pull import normalise, pull_source
from digest.store import Store, open_store

from .helpers import SHARED, require, settings_for

CORPORA = SHARED / "corpora"
FEEDPARSER = CORPORA / "feedparser"
RSS2EMAIL = CORPORA / "rss2email"

pytestmark = [pytest.mark.corpus]


@pytest.fixture(autouse=True)
def _corpora() -> None:
    require(CORPORA, "the corpora")


def _feedparser_files() -> list[Path]:
    return sorted(
        p
        for folder in ("wellformed", "illformed", "encoding")
        for p in (FEEDPARSER / folder).rglob("*")
        if p.is_file()
    )


def test_every_feedparser_corpus_file_ingests_or_fails_clearly(tmp_path: Path) -> None:
    files = _feedparser_files()
    assert len(files) >= 1800, "the feedparser corpus is incomplete"
    settings = settings_for(tmp_path, "")
    outcomes: Counter[str] = Counter()
    slowest = 0.0
    with open_store(tmp_path / "corpus.db") as store, Fetcher(settings.fetch) as fetcher:
        for index, path in enumerate(files):
            source = SourceSettings(name=f"c{index}", url=str(path), kind="auto")
            store.sync_sources([source])
            started = time.monotonic()
            report = pull_source(store, fetcher, source, settings)
            slowest = max(slowest, time.monotonic() - started)
            if report.error is not None:
                assert report.error.strip() and "\n" not in report.error, path
                assert "Traceback" not in report.error
                outcomes["rejected"] += 1
            else:
                outcomes["stored"] += 1
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = store.count_articles()
        published, mailed = _publish_and_mail_everything(store, settings)
    print(
        f"feedparser corpus: {len(files)} files, {dict(outcomes)}, {stored} articles, slowest {slowest:.2f}s;"
        f" {published} articles through the feeds and {mailed} through digests"
    )
    assert published == stored and mailed == stored
    assert outcomes["stored"] > 0.9 * len(files)
    assert slowest < 5, "a corpus file took too long: something loops"


def _publish_and_mail_everything(store: Store, settings: Settings) -> tuple[int, int]:
    """Every stored article through the Atom and RSS feeds and an email digest, 50 at a time."""
    from email import message_from_bytes
    from email.policy import default

    from digest.mail import compose
    from digest.mail.contents import Selection, build
    from digest.publish.feeds import FeedSpec, render

    articles = store.articles()
    published = mailed = 0
    env = compose.environment()
    for start in range(0, len(articles), 50):
        chunk = articles[start : start + 50]
        for fmt in ("atom", "rss"):
            parsed = feedparser.parse(render(FeedSpec("site", None, "Corpus"), fmt, chunk, settings))
            assert parsed.bozo == 0, parsed.get("bozo_exception")
        published += len(chunk)
        content = build(chunk, Selection(datetime(2000, 1, 1, tzinfo=UTC)), {})
        out, _ = compose.personal_bytes(
            compose.prepare(compose.render(content, settings, "corpus", env), settings),
            to="reader@example.org",
            unsubscribe_url="https://x/u",
            preferences_url="https://x/p",
            date=utcnow(),
            domain="x",
        )
        assert message_from_bytes(out.data, policy=default).get_body(("html",)) is not None
        mailed += content.count
    return published, mailed


def test_fast_path_gives_the_reference_results_on_the_whole_corpus() -> None:
    now = utcnow()
    files = [p for p in CORPORA.rglob("*") if p.is_file() and p.suffix in (".xml", ".atom", ".rss")]
    compared = 0
    for path in files:
        body = path.read_bytes()
        base = f"http://corpus.example/{path.name}"
        if not fast_path_eligible(body, None):
            continue
        fast = parse_with_fastfeedparser(body, base)
        if fast is None:
            continue
        reference = parse_with_feedparser(body, None, base)
        ours = [normalise(item, "s", base, now) for item in fast]
        theirs = [normalise(item, "s", base, now) for item in reference]
        assert ours == theirs, path
        compared += 1
    print(f"fast path agreed with feedparser on {compared} corpus feeds")
    assert compared >= 30


def _expected_messages(folder: Path) -> list[email.message.EmailMessage]:
    text = (folder / "1.expected").read_text(encoding="utf-8")
    chunks = [c for c in text.split("SENT BY: ") if c.strip()]
    messages = []
    for chunk in chunks:
        raw = chunk.split("\n", 1)[1]
        messages.append(email.message_from_string(raw, policy=email.policy.default))
    return messages  # type: ignore[return-value]


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in RSS2EMAIL.iterdir() if (p / "1.expected").exists()) if RSS2EMAIL.is_dir() else [],
)
def test_rss2email_titles_and_links_match_what_it_sends(tmp_path: Path, name: str) -> None:
    folder = RSS2EMAIL / name
    feed = next(p for p in folder.iterdir() if p.name.startswith("feed."))
    settings = settings_for(tmp_path, f'[[sources]]\nname = "{name}"\nurl = "{feed}"\nkind = "feed"\n')
    with open_store(settings.database.path) as store, Fetcher(settings.fetch) as fetcher:
        store.sync_sources(settings.sources)
        report = pull_source(store, fetcher, settings.sources[0], settings)
        assert report.ok, report.error
        articles = store.articles()
    stored = {a.url: a for a in articles if a.url}
    titled = {
        entry.get("link"): bool(entry.get("title", "").strip())
        for entry in feedparser.parse(feed.read_bytes()).entries
    }
    messages = _expected_messages(folder)
    assert messages
    assert len(articles) >= len(messages)
    for message in messages:
        subject = one_line(str(message["Subject"]))
        if message["X-RSS-URL"] is None:  # an item without a link: found by its title
            assert subject in {a.title for a in articles if a.url is None}, f"{name}: {subject!r}"
            continue
        url = str(message["X-RSS-URL"]).strip()
        assert url in stored, f"{name}: {url} not stored"
        if titled.get(url, True):
            assert stored[url].title == subject, f"{name}: {url}"
        else:  # both made a title from the text: they start alike
            assert stored[url].title[:20] == subject[:20], f"{name}: {url}"
