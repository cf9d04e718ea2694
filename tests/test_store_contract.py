"""The storage contract, method by method, for every backend (the `backend` fixture).

Written against the Protocol in ``digest/store/contract.py`` only: a second backend (the
PostgreSQL issue) runs this suite unchanged by adding itself to ``BACKENDS``. Besides what
each method does, every method is called on a locked and on a read-only database, and must
then either work or raise StoreError, never a driver's exception; a damaged database is a
StoreError when it is opened.
"""

from __future__ import annotations

import inspect
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from digest.common.dates import utcnow
from digest.common.errors import StoreError
from digest.common.models import Article, SearchTokens
from digest.common.query import index_text, parse
from digest.common.rhythms import Rhythm, next_due
from digest.store import (
    AddedSource,
    DroppedItem,
    Evidence,
    Groups,
    QueuedEvent,
    SourceSpec,
    SqliteStore,
    Store,
    Story,
    StoryMember,
    StoryWords,
    SubscriberChange,
)
from digest.store.contract import Store as Contract
from digest.store.postgres import PostgresStore
from tests import pgcluster
from tests.helpers import within

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@dataclass
class Backend:
    """How to get a store of one kind, and to put it in trouble."""

    name: str
    open: Callable[..., Store]  # (folder, clock=the system's)
    open_readonly: Callable[[Path], Store]
    open_impatient: Callable[[Path], Store]  # gives up on a lock in a fraction of a second
    locked: Callable[[Path], Any]  # a context manager: another connection holds the write lock
    damage: Callable[[Path], None]


@contextmanager
def _sqlite_lock(path: Path) -> Iterator[None]:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def _sqlite_damage(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.seek(0)
        handle.write(b"\x00" * 4096)


def _pg(path: Path) -> str:
    return pgcluster.database_for(str(path))


@contextmanager
def _pg_lock(path: Path) -> Iterator[None]:
    """Another worker holds every table against writers (reads go on), as SQLite's lock."""
    with psycopg.connect(_pg(path)) as other:
        tables = [
            row[0] for row in other.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        other.execute(f"LOCK TABLE {', '.join(tables)} IN EXCLUSIVE MODE")
        yield
        other.rollback()


def _pg_damage(path: Path) -> None:
    with psycopg.connect(_pg(path), autocommit=True) as conn:
        conn.execute("DROP TABLE migrations")
        conn.execute("CREATE TABLE migrations (garbage BYTEA)")


BACKENDS = [
    Backend(
        "sqlite",
        open=lambda path, clock=utcnow: SqliteStore.open(path / "d.db", clock=clock),
        open_readonly=lambda path: SqliteStore.open(path / "d.db", readonly=True),
        open_impatient=lambda path: SqliteStore.open(path / "d.db", timeout=0.05),
        locked=lambda path: _sqlite_lock(path / "d.db"),
        damage=lambda path: _sqlite_damage(path / "d.db"),
    ),
    Backend(
        "postgresql",
        open=lambda path, clock=utcnow: PostgresStore.open(_pg(path), clock=clock),
        open_readonly=lambda path: PostgresStore.open(_pg(path), readonly=True),
        open_impatient=lambda path: PostgresStore.open(_pg(path), timeout=0.05),
        locked=_pg_lock,
        damage=_pg_damage,
    ),
]


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param.name == "postgresql":
        pgcluster.shared()  # skips (fails in CI) without a server to start
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def store(backend: Backend, tmp_path: Path) -> Iterator[Store]:
    with backend.open(tmp_path) as opened:
        yield opened


def _article(
    n: int, source: str = "s", *, url: str | None = "", title: str | None = None, **extra: Any
) -> Article:
    first = extra.pop("first_seen", T0 + timedelta(minutes=n))
    return Article(
        id=f"a{n}", source=source, title=title or f"Article number {n}",
        url=f"https://x.org/{n}" if url == "" else url, guid=None,
        summary_html=f"<p>Body of article {n} about the Mekong.</p>",
        summary_text=f"Body of article {n} about the Mekong.", author=None,
        published=extra.pop("published", None), first_seen=first, updated=first,
        content_hash=extra.pop("content_hash", f"h{n}"),
    )  # fmt: skip


def _with_articles(store: Store, count: int = 3, source: str = "s") -> list[Article]:
    store.sync_sources([SourceSpec(source, f"https://{source}.example/feed", "feed")])
    articles = [_article(n, source) for n in range(count)]
    store.save_articles(source, articles, now=T0)
    return articles


# HTML and text pairs as summaries come: paragraphs only (stored once, as the text), and
# others that must come back as they went in, byte for byte.
SUMMARIES = [
    ("<p>One paragraph.</p><p>Two &amp; <b>bold</b>.</p>", "One paragraph.\n\nTwo & bold."),
    ("<p>One paragraph.</p><p>Two &amp; three.</p>", "One paragraph.\n\nTwo & three."),
    ("<p>Line one<br>line two &lt;b&gt;</p>", "Line one\nline two <b>"),
    ("<p>“Quoted” and &quot;quoted&quot;</p>", '“Quoted” and "quoted"'),
    ('<p>“Quoted” and "quoted"</p>', '“Quoted” and "quoted"'),
    ("", "A text without HTML."),
    ("", ""),
    ("<p></p>", ""),
]


def test_summaries_come_back_as_they_were_stored(store: Store) -> None:
    """HTML that is only its text's paragraphs is kept once, as the text (issue 30: half
    an article's bytes): whatever the pair, saved or changed, it is read back unchanged."""
    store.sync_sources([SourceSpec("s", "https://s.example/feed", "feed")])
    made = [
        replace(_article(n), summary_html=html, summary_text=text) for n, (html, text) in enumerate(SUMMARIES)
    ]
    store.save_articles("s", made, now=T0)
    read = {a.id: (a.summary_html, a.summary_text) for a in store.articles()}
    assert read == {a.id: (a.summary_html, a.summary_text) for a in made}
    changed = [
        replace(a, summary_html=b.summary_html, summary_text=b.summary_text, content_hash="changed")
        for a, b in zip(made, made[1:] + made[:1], strict=True)
    ]
    store.save_articles("s", changed, now=T0 + timedelta(hours=1))
    read = {a.id: (a.summary_html, a.summary_text) for a in store.articles()}
    assert read == {a.id: (a.summary_html, a.summary_text) for a in changed}
    for one in changed:
        found = store.article(one.id)
        assert found is not None and (found.summary_html, found.summary_text) == (
            one.summary_html,
            one.summary_text,
        )


# --- what rules dropped ----------------------------------------------------------------------


def test_what_rules_dropped_is_remembered_moved_and_forgotten(store: Store) -> None:
    _with_articles(store, 3)
    later = T0 + timedelta(hours=1)
    store.save_dropped(
        [DroppedItem("x1", "s", "Video: a tour", "https://x.org/v", "drop: title:/^video:/", "hx", T0)]
    )
    assert store.remembered_drops(["x1", "a0", "nope"]) == {"x1": ("drop: title:/^video:/", "hx")}
    store.save_dropped([DroppedItem("x1", "s", "Video: a tour", None, "drop: Laos", "hy", later)])  # replaced
    assert store.remembered_drops(["x1"]) == {"x1": ("drop: Laos", "hy")}
    # A stored article dropped once grouped leaves the articles (and the search) for the dropped.
    assert store.drop_articles([("a1", "drop: region:europe"), ("gone", "drop: x")], now=later) == 1
    assert store.article("a1") is None and store.count_articles() == 2
    assert {a.id for a in store.search(parse("mekong"))} == {"a0", "a2"}
    items = store.dropped_items()
    assert [(d.article_id, d.source, d.rule, d.content_hash) for d in items] == [
        ("a1", "s", "drop: region:europe", "h1"),
        ("x1", "s", "drop: Laos", "hy"),
    ]
    assert (
        items[0].title == "Article number 1"
        and items[0].url == "https://x.org/1"
        and items[0].dropped == later
    )
    assert len(store.dropped_items(limit=1)) == 1
    store.forget_drops(["x1", "a1"])
    assert store.dropped_items() == [] and store.remembered_drops(["x1", "a1"]) == {}


def test_an_article_dropped_again_is_remembered_as_the_last_drop_says(store: Store) -> None:
    # PostgreSQL once kept the first drop's title and link, SQLite the last's.
    _with_articles(store, 2)
    store.save_dropped([DroppedItem("a1", "s", "An older title", None, "drop: x", "h0", T0)])
    assert store.drop_articles([("a1", "drop: y")], now=T0 + timedelta(hours=1)) == 1
    [item] = store.dropped_items()
    assert (item.title, item.url, item.rule, item.content_hash) == (
        "Article number 1",
        "https://x.org/1",
        "drop: y",
        "h1",
    )


def test_article_pages_keep_their_validators(store: Store) -> None:
    store.save_page_validators(
        [("https://x.org/1", '"v1"', None), ("https://x.org/2", None, "Mon, 02 Nov 2026 08:00:00 GMT")],
        now=T0,
    )
    store.save_page_validators([("https://x.org/1", '"v2"', None)], now=T0)  # replaced
    assert store.page_validators(["https://x.org/1", "https://x.org/2", "https://x.org/3"]) == {
        "https://x.org/1": ('"v2"', None),
        "https://x.org/2": (None, "Mon, 02 Nov 2026 08:00:00 GMT"),
    }


# --- the database -------------------------------------------------------------------------


def test_migrate_is_idempotent_and_backup_copies(store: Store, backend: Backend, tmp_path: Path) -> None:
    applied = store.applied_migrations()
    assert applied and store.migrate() == [] and store.applied_migrations() == applied
    _with_articles(store)
    target = tmp_path / "copy"
    target.mkdir()
    store.backup(target / "d.db")  # a SQLite file, whichever the backend
    with SqliteStore.open(target / "d.db") as copy:
        assert copy.count_articles() == 3
    with pytest.raises(StoreError, match="already exists"):
        store.backup(target / "d.db")


def test_data_version_moves_when_another_connection_commits(
    store: Store, backend: Backend, tmp_path: Path
) -> None:
    before = store.data_version()
    with backend.open(tmp_path) as other:
        other.put_setting("k", "v")
    assert store.data_version() != before


def test_data_version_moves_for_what_pages_show_and_not_for_bookkeeping(
    store: Store, backend: Backend, tmp_path: Path
) -> None:
    """The web caches watch data_version: rate-limit hits, leases and claims (written by
    every search, every tick) must not empty them (issue 30); a pull must."""
    store.sync_sources([SourceSpec("s", "https://x.org/a", "feed")])
    with backend.open(tmp_path) as other:
        before = store.data_version()
        assert other.allow_hit("search:client", limit=100, window=60, now=T0)
        assert other.acquire_lease("plan", "me", 60)
        other.release_lease("plan", "me")
        assert other.claim_source("s", "me", 60)
        assert store.data_version() == before
        other.save_articles("s", [_article(7)], now=T0)
        assert store.data_version() != before


# --- sources ------------------------------------------------------------------------------


def test_sources_sync_record_and_summarise(store: Store) -> None:
    store.sync_sources([SourceSpec("s", "https://x.org/a", "feed")])
    store.record_fetch(
        "s", status=200, error=None, etag='"e"', last_modified="lm", fetch_url="https://x.org/b"
    )
    state = store.source_state("s")
    assert (state.url, state.etag, state.last_modified, state.id_name) == (
        "https://x.org/b",
        '"e"',
        "lm",
        "s",
    )
    store.record_fetch("s", status=500, error="https://u:pw@x.org/b?k=1: HTTP 500", keep_validators=True)
    store.record_fetch("s", status=500, error="again", keep_validators=True, next_fetch=T0)
    state = store.source_state("s")
    assert state.consecutive_failures == 2 and state.etag == '"e"' and state.next_fetch == T0
    assert store.source_urls() == {"s": "https://x.org/b"}
    [summary] = store.source_summaries()
    assert (summary.name, summary.articles, summary.consecutive_failures) == ("s", 0, 2)
    assert summary.last_error == "again"
    store.record_fetch("s", status=410, error="gone", disable=True, keep_validators=True)
    assert not store.source_state("s").enabled
    store.sync_sources([SourceSpec("s", "https://y.org/feed", "feed")])  # a new URL starts afresh
    state = store.source_state("s")
    assert (state.url, state.enabled, state.etag, state.consecutive_failures) == (
        "https://y.org/feed",
        True,
        None,
        0,
    )
    with pytest.raises(StoreError, match="no source named"):
        store.source_state("nope")


def test_the_first_stored_error_is_redacted(store: Store) -> None:
    store.sync_sources([SourceSpec("s", "https://x.org/a", "feed")])
    store.record_fetch("s", status=500, error="https://u:secret@x.org/a?key=K: HTTP 500")
    assert "secret" not in str(store.source_state("s").last_error)


def test_retire_and_rename_sources(store: Store) -> None:
    _with_articles(store, 2, "old")
    store.sync_sources([SourceSpec("keep", "https://k.example/", "feed")])
    store.retire_sources(["keep"])
    removed = {s.name: s.removed for s in store.source_summaries()}
    assert removed["old"] is not None and removed["keep"] is None
    store.rename_source("old", "new")
    assert {a.source for a in store.articles()} == {"new"}
    assert store.source_state("new").id_name == "old"  # ids are made with the first name
    with pytest.raises(StoreError, match="already has 2 articles"):
        store.rename_source("keep", "new")


def test_renaming_a_source_to_its_own_name_keeps_it(store: Store) -> None:
    # The clash check once took the source itself for a clash and deleted it.
    store.sync_sources([SourceSpec("same", "https://s.example/", "feed")])
    store.retire_sources([])
    store.rename_source("same", "same")
    assert [(s.name, s.removed) for s in store.source_summaries()] == [("same", None)]


def test_sources_added_at_run_time_keep_their_options_pause_and_go(store: Store) -> None:
    store.sync_sources([SourceSpec("cfg", "https://c.example/", "feed")])
    options = {"name": "wire", "url": "https://w.example/feed", "kind": "feed", "every": "15m"}
    store.add_sources([AddedSource("wire", "https://w.example/feed", "feed", options)])
    [added] = store.added_sources()
    assert (added.name, added.options, added.paused) == ("wire", options, None)
    assert (added.url, added.kind) == ("https://w.example/feed", "feed")
    assert {s.name: s.origin for s in store.source_summaries()} == {"cfg": "config", "wire": "store"}
    store.retire_sources(["cfg"])  # the configuration does not retire what was added at run time
    assert [s.name for s in store.added_sources()] == ["wire"]
    assert {s.name: s.removed for s in store.source_summaries()}["wire"] is None
    with pytest.raises(StoreError, match="'wire' exists already"):
        store.add_sources(
            [AddedSource("other", "https://o.example/", "auto", {}), AddedSource("wire", "u", "auto", {})]
        )
    assert [s.name for s in store.source_summaries()] == ["cfg", "wire"]  # all or none
    with pytest.raises(StoreError, match="'cfg' is from the config file"):
        store.change_source("cfg", paused=True)
    with pytest.raises(StoreError, match="'cfg' is from the config file"):
        store.remove_source("cfg")
    with pytest.raises(StoreError, match="no source named 'nope'"):
        store.change_source("nope", paused=True)
    store.change_source("wire", paused=True)
    paused = store.added_sources()[0].paused
    assert paused is not None
    store.change_source("wire", paused=True)  # paused already: keeps its date
    assert store.added_sources()[0].paused == paused
    store.change_source("wire", paused=False)
    assert store.added_sources()[0].paused is None
    moved = {**options, "url": "https://w.example/atom", "kind": "auto"}
    store.record_fetch("wire", status=200, error=None, fetch_url="https://w.example/redirected")
    store.change_source("wire", options=moved)
    assert store.source_state("wire").url == "https://w.example/atom"  # a new URL is fetched now
    assert (store.added_sources()[0].options, store.added_sources()[0].kind) == (moved, "auto")
    store.remove_source("wire")
    assert store.added_sources() == []
    assert {s.name: s.removed is not None for s in store.source_summaries()} == {"cfg": False, "wire": True}
    with pytest.raises(StoreError, match="no source named 'wire'"):
        store.remove_source("wire")
    store.add_sources([AddedSource("wire", "https://w.example/again", "feed", {"name": "wire"})])
    assert [s.url for s in store.added_sources()] == ["https://w.example/again"]  # taken up again
    store.sync_sources([SourceSpec("wire", "https://w.example/again", "feed")])  # moved into the file
    assert store.added_sources() == []
    assert {s.name: s.origin for s in store.source_summaries()}["wire"] == "config"


# --- tokens and webhooks -------------------------------------------------------------------


def test_tokens_are_kept_by_hash_revoked_and_named_once_among_the_live(store: Store) -> None:
    assert not store.has_tokens()
    made = store.create_token("ci", "read", "h1")
    assert (made.name, made.scope, made.hash, made.revoked, made.last_used) == (
        "ci",
        "read",
        "h1",
        None,
        None,
    )
    assert store.has_tokens() and store.token_by_hash("h1") == made and store.token_by_hash("h2") is None
    with pytest.raises(StoreError, match="'ci' exists already"):
        store.create_token("ci", "write", "h2")
    store.token_used(made.id, T0)
    store.token_used(made.id, T0 + timedelta(seconds=30))  # within a minute: not written again
    assert store.api_tokens()[0].last_used == T0
    store.token_used(made.id, T0 + timedelta(minutes=2))
    assert store.api_tokens()[0].last_used == T0 + timedelta(minutes=2)
    store.revoke_token("ci")
    assert not store.has_tokens()
    assert store.token_by_hash("h1").revoked is not None  # type: ignore[union-attr]
    with pytest.raises(StoreError, match="no token named 'ci'"):
        store.revoke_token("ci")
    again = store.create_token("ci", "write", "h2")  # the name is free once revoked
    assert [t.id for t in store.api_tokens()] == [again.id, made.id]  # newest first
    with pytest.raises(StoreError):
        store.create_token("other", "read", "h2")  # a hash is unique


def test_webhooks_and_their_queue_are_claimed_once_retried_and_pruned(store: Store) -> None:
    hook = store.add_webhook("https://h.example/in", ["article.new"], "s3cret")
    assert store.webhooks() == [hook] and hook.events == ("article.new",)
    with pytest.raises(StoreError, match="exists already"):
        store.add_webhook("https://h.example/in", [], "x")
    events = [
        QueuedEvent(f"msg_{n}", hook.url, "article.new", f'{{"n": {n}}}', T0 + timedelta(seconds=n))
        for n in range(3)
    ]
    store.enqueue_events(events)
    store.enqueue_events(events[:1])  # queued already: left as it is
    first = store.claim_events("w1", limit=2, seconds=60, now=T0 + timedelta(seconds=5))
    assert [e.id for e in first] == ["msg_0", "msg_1"] and first[0].payload == '{"n": 0}'
    second = store.claim_events("w2", limit=5, seconds=3600, now=T0 + timedelta(seconds=5))
    assert [e.id for e in second] == ["msg_2"]  # what w1 holds is not handed out twice
    store.event_tried("msg_0", now=T0, error=None, retry_at=None)
    store.event_tried("msg_1", now=T0, error="HTTP 500", retry_at=T0 + timedelta(minutes=1))
    assert store.claim_events("w2", limit=5, seconds=60, now=T0 + timedelta(seconds=30)) == []
    [retried] = store.claim_events("w2", limit=5, seconds=60, now=T0 + timedelta(minutes=2))
    assert (retried.id, retried.attempts, retried.last_error) == ("msg_1", 1, "HTTP 500")
    store.event_tried("msg_1", now=T0, error="HTTP 500", retry_at=None)  # given up
    statuses = {e.id: e.status for e in store.queued_events()}
    assert statuses == {"msg_0": "delivered", "msg_1": "failed", "msg_2": "pending"}
    # msg_2's claim ran out: another worker takes it over.
    assert [e.id for e in store.claim_events("w3", limit=5, seconds=60, now=T0 + timedelta(hours=2))] == [
        "msg_2"
    ]
    assert store.prune_events(T0 + timedelta(seconds=1)) == 2
    assert [e.id for e in store.queued_events()] == ["msg_2"]
    store.remove_webhook(hook.id)
    assert store.webhooks() == []
    with pytest.raises(StoreError, match=f"no webhook {hook.id}"):
        store.remove_webhook(hook.id)


# --- the console ----------------------------------------------------------------------------


def test_console_accounts_sessions_and_the_audit_log(store: Store) -> None:
    assert not store.has_admins() and store.admin("ann") is None
    ann = store.add_admin("ann", "h1")
    assert (ann.name, ann.hash, ann.last_login) == ("ann", "h1", None) and store.has_admins()
    with pytest.raises(StoreError, match="'ann' exists already"):
        store.add_admin("ann", "h2")
    bob = store.add_admin("bob", "h3")
    assert [a.name for a in store.admins()] == ["ann", "bob"]
    store.start_session("s1", ann.id, "c1", now=T0, expires=T0 + timedelta(hours=12))
    store.start_session("s2", ann.id, "c2", now=T0, expires=T0 + timedelta(hours=12))
    store.start_session("s3", bob.id, "c3", now=T0, expires=T0 + timedelta(minutes=5))
    found = store.session("s1")
    assert found is not None and (found.admin, found.csrf, found.seen) == ("ann", "c1", T0)
    assert store.admin("ann").last_login == T0  # type: ignore[union-attr]
    store.session_seen("s1", T0 + timedelta(minutes=30))
    store.session_seen("s1", T0 + timedelta(minutes=10))  # never moved back
    assert store.session("s1").seen == T0 + timedelta(minutes=30)  # type: ignore[union-attr]
    store.end_session("s2")
    assert store.session("s2") is None and store.session("nope") is None
    # bob's ran out; ann's was seen 30 minutes in: an idle limit of 20 minutes keeps it
    assert store.prune_sessions(now=T0 + timedelta(minutes=40), idle_before=T0 + timedelta(minutes=20)) == 1
    assert store.session("s3") is None and store.session("s1") is not None
    store.set_admin_password("ann", "h9")  # a new password ends every session of the account
    assert store.session("s1") is None and store.admin("ann").hash == "h9"  # type: ignore[union-attr]
    with pytest.raises(StoreError, match="no account named 'cy'"):
        store.set_admin_password("cy", "x")
    store.record_audit("ann", "source.pause", "wire", {"was": "active"})
    store.record_audit("bob", "subscriber.delete", None)
    log = store.audit_log()
    assert [(e.actor, e.action, e.target, e.detail) for e in log] == [
        ("bob", "subscriber.delete", None, {}), ("ann", "source.pause", "wire", {"was": "active"}),
    ]  # fmt: skip
    assert [e.actor for e in store.audit_log(before=log[0].id)] == ["ann"]
    store.start_session("s4", bob.id, "c4", now=T0, expires=T0 + timedelta(hours=1))
    store.remove_admin("bob")
    assert store.admin("bob") is None and store.session("s4") is None
    assert [e.actor for e in store.audit_log()] == ["bob", "ann"]  # the log outlives the account
    with pytest.raises(StoreError, match="no account named 'bob'"):
        store.remove_admin("bob")


# --- articles -----------------------------------------------------------------------------


def test_save_articles_new_updated_unchanged_and_first_seen_kept(store: Store) -> None:
    original = _with_articles(store, 2)
    changed = _article(1, title="A new title", content_hash="other", first_seen=T0 + timedelta(days=3))
    counts = store.save_articles("s", [original[0], changed], now=T0 + timedelta(days=3))
    assert (counts.new, counts.updated, counts.unchanged) == (0, 1, 1)
    found = store.article("a1")
    assert found is not None and found.title == "A new title" and found.first_seen == original[1].first_seen
    assert found.updated == T0 + timedelta(days=3)
    store.sync_sources([SourceSpec("t", "https://t.example/", "feed")])
    copy = _article(99, "t", url="https://x.org/0", title="Copy of zero")
    # One link from another source is that source's own article: it never takes the first's.
    assert store.save_articles("t", [copy], now=T0).new == 1
    assert store.article("a0").source == "s" and store.article("a99").source == "t"  # type: ignore[union-attr]
    assert store.owned_ids("s", ["a0", "a99", "nope"]) == {"a0"} and store.owned_ids("t", ["a0", "a99"]) == {
        "a99"
    }
    assert store.save_articles("t", [replace(copy, id="a98")], now=T0).unchanged == 1  # its own link: its own
    with pytest.raises(StoreError, match="no source named"):
        store.save_articles("nope", [copy], now=T0)


def test_two_processes_storing_one_link_at_once_store_it_once(
    store: Store, backend: Backend, tmp_path: Path
) -> None:
    """Two workers pulling one source at once (a claim ran out, say) store each link once."""
    import threading

    store.sync_sources([SourceSpec("s", "https://s.example/", "feed")])
    start = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def saving(worker: int) -> None:
        with backend.open(tmp_path) as own:  # a connection of its own, as another worker has
            for round_ in range(5):
                start.wait()
                offset = 100_000 * worker + 1000 * round_  # other ids, the same links
                batch = [_article(n + offset, "s", url=f"https://x.org/{round_}/{n}") for n in range(200)]
                own.save_articles("s", batch, now=T0)

    def save(worker: int) -> None:
        try:
            saving(worker)
        except BaseException as exc:
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=save, args=(worker,)) for worker in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    stored = store.articles()
    assert len(stored) == 1000 and len({a.url for a in stored}) == 1000


def test_content_hashes_of_stored_articles(store: Store) -> None:
    _with_articles(store, 2)
    store.save_articles("s", [_article(1, content_hash="other")], now=T0 + timedelta(days=1))
    assert store.content_hashes(["a0", "a1", "a9", "a0"]) == {"a0": _article(0).content_hash, "a1": "other"}
    assert store.content_hashes([]) == {}


def test_articles_filter_and_order(store: Store) -> None:
    _with_articles(store, 5)
    store.set_groups([Groups("a1", ("europe", "africa"), ("trade",)), Groups("a3", ("europe",), ())])
    assert [a.id for a in store.articles()] == ["a4", "a3", "a2", "a1", "a0"]  # newest first
    assert [a.id for a in store.articles(limit=2)] == ["a4", "a3"]
    window = store.articles(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))
    assert [a.id for a in window] == ["a2", "a1"]  # since <= first_seen < until
    assert [a.id for a in store.articles(region="europe")] == ["a3", "a1"]
    assert [a.id for a in store.articles(theme="trade")] == ["a1"]
    assert store.articles(source="nope") == [] and len(store.articles(source="s")) == 5
    assert store.article("a1").regions == ("europe", "africa")  # type: ignore[union-attr]
    assert store.article("missing") is None and store.count_articles() == 5


def test_articles_come_in_pages_after_a_given_one_ties_and_groups_too(store: Store) -> None:
    store.sync_sources([SourceSpec("s", "https://s.example/feed", "feed")])
    tied = T0 + timedelta(hours=1)
    store.save_articles(
        "s",
        [_article(n, published=tied if n in (1, 2, 3, 4) else None) for n in range(7)],
        now=T0,
    )
    store.set_groups([Groups(f"a{n}", ("europe",), ()) for n in (0, 2, 3, 4, 6)])
    for region in (None, "europe"):
        whole = [a.id for a in store.articles(region=region)]
        paged: list[str] = []
        after = None
        while True:
            page = store.articles(region=region, limit=2, after=after)
            if not page:
                break
            paged += [a.id for a in page]
            after = page[-1].id
        assert paged == whole and len(whole) == (7 if region is None else 5), region
    assert [a.id for a in store.articles()][:4] == ["a1", "a2", "a3", "a4"]  # ties: as stored
    assert store.articles(after="missing") == []


def test_a_subscribers_deliveries_and_each_days_activity(store: Store) -> None:
    _with_articles(store, 3)
    store.upsert_subscribers(
        [SubscriberChange(f"{n}@example.org", status="active", created=T0) for n in "ab"]
    )
    ann, bob = (store.subscriber(email=f"{n}@example.org") for n in "ab")
    assert ann is not None and bob is not None
    for digest_id in ("d1", "d2", "d3"):
        store.create_digest(digest_id, T0, [(ann.id, T0, None), (bob.id, T0, None)])
    store.record_delivery("d1", ann.id, "sent", message_id="<m1>")
    store.record_delivery("d2", ann.id, "pending", reply="451 later")
    store.record_feedback(ann.id, "d1", "complaint", "spam", soft_limit=3, now=T0 + timedelta(days=1))
    found = store.deliveries_of(ann.id)
    assert {d.digest_id: (d.status, d.attempts) for d in found} == {
        "d1": ("sent", 1),
        "d2": ("pending", 1),
        "d3": ("pending", 0),
    }
    assert [d.digest_id for d in found] == sorted(
        (d.digest_id for d in found),
        key=lambda i: (-next(d for d in found if d.digest_id == i).updated.timestamp(), i),
    )
    assert next(d for d in found if d.digest_id == "d1").feedback == "complaint"
    first = store.deliveries_of(ann.id, limit=2)
    rest = store.deliveries_of(ann.id, before=first[-1].digest_id)
    assert [d.digest_id for d in first + rest] == [d.digest_id for d in found]
    assert store.deliveries_of(ann.id, before="nope") == [] and len(store.deliveries_of(bob.id)) == 3
    seen = store.activity(T0 - timedelta(days=1))
    assert seen.articles == {T0.date().isoformat(): 3}
    assert sum(n for day in seen.deliveries.values() for n in day.values()) == 6
    assert seen.feedback == {(T0 + timedelta(days=1)).date().isoformat(): {"complaint": 1}}
    assert store.activity(T0 + timedelta(days=400)).articles == {}


def test_status_changes_are_noted_whatever_makes_them_and_forgotten_when_said(store: Store) -> None:
    store.upsert_subscribers(
        [SubscriberChange("ann@example.org", status="pending", created=T0),
         SubscriberChange("bob@example.org", status="active", created=T0, confirmed=T0)]
    )  # fmt: skip
    ann, bob = (store.subscriber(email=f"{n}@example.org") for n in ("ann", "bob"))
    assert ann is not None and bob is not None
    store.set_subscriber_status(ann.id, "active", at=T0 + timedelta(hours=1))
    store.set_subscriber_status(ann.id, "active", at=T0 + timedelta(hours=2))  # no change: nothing noted
    store.set_subscriber_status(ann.id, "unsubscribed", at=T0 + timedelta(hours=3))
    store.create_digest("d1", T0, [(bob.id, T0, None)])
    for _ in range(2):  # refused for good twice: bounced, inside the ledger's own write
        store.record_delivery(
            "d1", bob.id, "failed", reply="550 no such user", strike=True, strikes_to_bounce=2
        )
    noted = store.subscriber_events()
    assert [(e.email, e.status) for e in noted] == [
        ("bob@example.org", "active"), ("ann@example.org", "active"), ("ann@example.org", "unsubscribed"),
        ("bob@example.org", "bounced"),
    ]  # fmt: skip
    assert noted[1].at == T0 + timedelta(hours=1) and noted[2].at == T0 + timedelta(hours=3)
    assert noted[3].reason and "550" in noted[3].reason
    store.forget_subscriber_events(noted[1].id)
    assert [e.id for e in store.subscriber_events()] == [e.id for e in noted[2:]]
    store.delete_subscriber("ann@example.org")  # erased: what was noted of them goes too
    assert [e.email for e in store.subscriber_events()] == ["bob@example.org"]


def test_stories_changed_since_a_moment(store: Store) -> None:
    _with_articles(store, 4)
    store.save_stories(
        ["a0", "a1", "a2", "a3"], [Story("s1", "One", ("a0", "a1")), Story("s2", "Two", ("a2",))]
    )
    changed = store.stories_changed(T0 - timedelta(days=1))
    assert [(s.id, s.label, s.articles) for s in changed] == [("s1", "One", 2)]  # two articles at least
    assert store.stories_changed(T0 - timedelta(days=1), min_articles=3) == []
    assert store.stories_changed(changed[0].updated + timedelta(seconds=1)) == []


def test_subscribers_come_in_pages_of_any_status(store: Store) -> None:
    store.upsert_subscribers(
        [SubscriberChange(f"{name}@example.org", status=status, created=T0)
         for name, status in (("zed", "active"), ("amy", "pending"), ("bob", "active"))]
    )  # fmt: skip
    first = store.subscribers(limit=2)
    assert [s.email for s in first] == ["zed@example.org", "amy@example.org"]  # by id
    assert [s.email for s in store.subscribers(after=first[-1].id, limit=2)] == ["bob@example.org"]
    assert [s.email for s in store.subscribers()] == ["amy@example.org", "bob@example.org", "zed@example.org"]


def test_a_search_ranks_only_the_newest_matches(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search's cost is bounded by what it shows, not by how many articles match (issue
    30): only the newest ``search_candidates`` matches (in the window asked for) are ranked."""
    store.sync_sources([SourceSpec("s", "https://s.example/feed", "feed")])
    mekong = "Mekong dam Mekong river Mekong basin"
    store.save_articles(
        "s",
        [_article(0, title=mekong)]  # the best match, and the oldest
        + [_article(n, title=f"Article number {n}") for n in range(1, 6)],  # "Mekong" in the body only
        now=T0,
    )
    monkeypatch.setattr(type(store), "search_candidates", 3)
    # the page (2) is filled from the newest three matches: a0, the best, is not among them
    assert {a.id for a in store.search(parse("mekong"), limit=2)} < {"a3", "a4", "a5"}
    assert len(store.search(parse("mekong"), limit=10)) == 6  # never fewer than a page asks for
    # a window reaching back ranks the newest matches inside it: the best comes first
    window = store.search(parse("mekong"), limit=2, until=T0 + timedelta(minutes=3))
    assert window[0].id == "a0" and {a.id for a in window} < {"a0", "a1", "a2"}
    monkeypatch.undo()
    assert store.search(parse("mekong"), limit=1)[0].id == "a0"  # all six ranked by default


def test_headlines_are_the_newest_articles_without_their_text(store: Store) -> None:
    """The home page lists a thousand headlines: read without the articles' text (issue 30)."""
    _with_articles(store, 4)
    store.save_articles("s", [_article(9, published=T0 - timedelta(days=1))], now=T0)
    store.set_groups([Groups("a2", ("europe", "africa"), ("trade",), Evidence.of("a2", (), {}))])
    full = store.articles(limit=3)
    heads = store.headlines(limit=3)
    assert [(h.id, h.title, h.source, h.published, h.first_seen, h.regions, h.themes) for h in heads] == [
        (a.id, a.title, a.source, a.published, a.first_seen, a.regions, a.themes) for a in full
    ]
    assert [h.id for h in heads] == ["a3", "a2", "a1"] and heads[1].regions == ("europe", "africa")
    assert not hasattr(heads[0], "summary_text")
    assert [h.id for h in store.headlines(limit=10)][-1] == "a9"  # its publication date is oldest
    assert [h.id for h in store.headlines(limit=10, region="africa")] == ["a2"]
    assert [h.id for h in store.headlines(limit=10, theme="trade")] == ["a2"]
    assert store.headlines(limit=10, region="oceania") == []
    # A window of first-seen times, as articles() selects it; all of it without a limit.
    seen = sorted({a.first_seen for a in store.articles()})
    for since, until in [(seen[1], seen[3]), (seen[0], None), (None, seen[2])]:
        wanted = [a.id for a in store.articles(since=since, until=until)]
        assert [h.id for h in store.headlines(limit=None, since=since, until=until)] == wanted
        assert len(wanted) < 5 or since == seen[0]
    assert [h.id for h in store.headlines(limit=None, region="europe", since=seen[0])] == ["a2"]


def test_full_text_search(store: Store) -> None:
    _with_articles(store, 2)
    store.save_articles("s", [_article(7, title="Laos railway opens")], now=T0)

    def found(text: str, **window: datetime) -> list[str]:
        return sorted(a.id for a in store.search(parse(text), **window))

    assert found("laos") == ["a7"]
    assert found("mekong") == ["a0", "a1", "a7"]
    assert found("nothingmatches") == []
    # Each batch is indexed, and an update replaces the text searched (nothing stale left).
    store.save_articles(
        "s",
        [_article(8, title="Mekong dam talks"), _article(9, title="Hanoi summit")],
        now=T0 + timedelta(hours=1),
    )
    assert found("hanoi") == ["a9"] and len(found("mekong")) == 5
    store.save_articles("s", [_article(7, title="Vientiane station opens", content_hash="new")], now=T0)
    assert found("laos") == [] and found("vientiane") == ["a7"]
    # Phrases, OR, NOT; a window of first_seen.
    assert found('"dam talks"') == ["a8"] and found('"talks dam"') == []
    assert found("hanoi OR vientiane") == ["a7", "a9"]
    assert found("mekong -dam") == ["a0", "a1", "a7", "a9"] and found("mekong NOT dam NOT hanoi") == [
        "a0",
        "a1",
        "a7",
    ]
    assert found("mekong", since=T0 + timedelta(minutes=8)) == ["a8", "a9"]  # first seen minute n
    assert found("mekong", until=T0 + timedelta(minutes=8)) == ["a0", "a1", "a7"]
    # What a reader types is words, never the database's syntax.
    assert found("NEAR(mekong dam) OR title:hanoi* ^summit") == []
    assert found("dam* AND (talks)") == ["a8"]


def test_search_tokens_worked_out_ahead_are_used_only_for_their_own_title_and_text(store: Store) -> None:
    """An article may come with its search tokens (worked out where it was normalised); a
    copy whose title or text changed since is indexed by what it says now, and an update
    then forgets exactly what was indexed (a contentless index told otherwise is corrupt)."""
    store.sync_sources([SourceSpec("s", "https://s.example/feed", "feed")])
    plain = _article(1, title="Laos railway opens")
    given = SearchTokens(
        plain.title, plain.summary_text, index_text(plain.title), index_text(plain.summary_text)
    )
    ahead = replace(plain, search_tokens=given)
    stale = replace(
        ahead, id="a2", url="https://x.org/2", title="Hanoi summit", summary_text="Talks in Vientiane.",
        content_hash="h2",
    )  # fmt: skip
    store.save_articles("s", [ahead, stale], now=T0)

    def found(text: str) -> list[str]:
        return sorted(a.id for a in store.search(parse(text)))

    assert found("laos") == ["a1"] and found("hanoi") == ["a2"] and found("vientiane") == ["a2"]
    changed = replace(stale, summary_text="Talks on the Mekong.", content_hash="h3")
    store.save_articles("s", [changed], now=T0)
    assert found("vientiane") == [] and found("mekong") == ["a1", "a2"]
    store.save_articles("s", [replace(changed, title="Summit moved", content_hash="h4")], now=T0)
    assert found("hanoi") == [] and found("summit") == ["a2"]


SEARCHED = {
    "covid": ("COVID-19 cases rise in Hanoi", "Hospitals report more COVID-19 cases."),
    "f35": ("Jets for Taipei", "The sale of F-35 fighters was approved."),
    "us": ("Beijing answers Washington", "The U.S. and China met in Geneva."),
    "money": ("A loan for Laos", "A “1.5 billion” loan for the railway, said the minister."),
    "site": ("Notes", "See example.com for the full text; the Ministers agreed."),
    "cafe": ("Café diplomacy", "Talks in a café by the Mekong."),
    "belt": ("“Belt and Road” in Kenya", "Nairobi’s railway, financed by China."),
}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("COVID-19", {"covid"}), ("covid 19", {"covid"}), ("F-35", {"f35"}), ("U.S.", {"us"}),
        ('"1.5 billion"', {"money"}), ("example.com", {"site"}), ("ministers", {"money", "site"}),
        ("minister", {"money", "site"}), ("cafe", {"cafe"}), ("Café", {"cafe"}), ("belt", {"belt"}),
        ('"Belt and Road"', {"belt"}), ("“road”", {"belt"}), ("nairobi", {"belt"}), ("case", {"covid"}),
        ("us -china", set()), ("railway -loan", {"belt"}),
    ],
)  # fmt: skip
def test_both_stores_find_the_same_articles_for_the_same_words(
    store: Store, query: str, expected: set[str]
) -> None:
    """One tokenizer: the same words in, the same articles out, whichever database holds
    them (PostgreSQL's parser kept "-19", "u.s", "1.5" and "example.com" whole; SQLite's
    index did not stem). The expected sets are the same for both backends."""
    store.sync_sources([SourceSpec("s", "https://s.example/feed", "feed")])
    articles = [
        replace(_article(n), id=key, title=title, summary_html=f"<p>{text}</p>", summary_text=text)
        for n, (key, (title, text)) in enumerate(SEARCHED.items())
    ]
    store.save_articles("s", articles, now=T0)
    assert {a.id for a in store.search(parse(query))} == expected


# --- grouping -----------------------------------------------------------------------------


def test_evidence_groups_and_frequencies(store: Store) -> None:
    _with_articles(store, 3)
    store.save_articles("s", [_article(3, published=T0 - timedelta(days=1))], now=T0)
    pending = {u.id: u for u in store.ungrouped()}
    assert set(pending) == {"a0", "a1", "a2", "a3"}
    assert (pending["a0"].published, pending["a3"].published) == (None, T0 - timedelta(days=1))
    assert pending["a3"].summary_text == "Body of article 3 about the Mekong."
    assert store.source_frequencies("s") == (0, {}, {})  # nothing classified yet
    place = {
        "key": "laos",
        "name": "Laos",
        "region": "southeast-asia",
        "kind": "country",
        "title": 1,
        "lead": 0,
        "body": 2,
    }
    found = Evidence.of("a0", (place,), {"trade": {"score": 2.0, "phrases": ["trade"]}})
    store.set_groups(
        [Groups("a0", ("southeast-asia",), ("trade",), evidence=found), Groups("a1", ("europe",), ())]
    )
    # Groups with evidence classify the article; groups alone only score it.
    assert {u.id for u in store.ungrouped()} == {"a1", "a2", "a3"}
    assert store.source_frequencies("s") == (1, {"laos": 1}, {"trade": 1})
    [evidence] = store.evidence("s")
    assert evidence.places[0]["name"] == "Laos" and evidence.theme_matches["trade"]["phrases"] == ["trade"]
    assert (evidence.places, evidence.theme_matches) == (found.places, found.theme_matches)
    counts = store.group_counts()
    assert [(r.slug, r.articles, r.primary) for r in counts.regions] == [
        ("europe", 1, 1),
        ("southeast-asia", 1, 1),
    ]
    assert [(t.slug, t.articles) for t in counts.themes] == [("trade", 1)]
    assert store.group_counts(since=T0 + timedelta(days=1)).regions == ()
    store.mark_ungrouped()
    assert len(store.ungrouped()) == 4 and store.evidence("s") == []
    assert store.source_frequencies("s") == (0, {}, {})


def _frequencies_agree(store: Store, source: str) -> tuple[int, dict[str, int], dict[str, int]]:
    """The frequencies kept for a source say what counting its classified articles says."""
    pending = {u.id for u in store.ungrouped()}
    total = sum(1 for a in store.articles(source=source) if a.id not in pending)
    places: dict[str, int] = {}
    themes: dict[str, int] = {}
    for evidence in store.evidence(source):
        for key in {p["key"] for p in evidence.places}:
            places[key] = places.get(key, 0) + 1
        for slug in evidence.theme_matches:
            themes[slug] = themes.get(slug, 0) + 1
    kept = store.source_frequencies(source)
    assert kept == (total, places, themes)
    return kept


def _place(key: str, region: str = "southeast-asia") -> dict[str, Any]:
    return {"key": key, "name": key.title(), "region": region, "kind": "country", "title": 1, "lead": 0,
            "body": 1}  # fmt: skip


def test_source_frequencies_are_kept_as_articles_are_classified_changed_and_go(store: Store) -> None:
    """A source's place and theme frequencies (its IDF) are kept as articles are written, not
    read from all its evidence at every pull (issue 30): classified, classified again, changed
    (waiting to be classified again), dropped, all marked for classifying again."""
    _with_articles(store, 4)
    store.sync_sources(
        [SourceSpec("s", "https://s.example/feed", "feed"), SourceSpec("t", "https://t.x/", "feed")]
    )
    store.save_articles("t", [_article(n, "t") for n in (7, 8)], now=T0)
    trade = {"trade": {"score": 1.0, "phrases": ["trade"]}}
    # a0 lists Laos twice: an article counts a place once.
    store.set_groups(
        [
            Groups("a0", ("southeast-asia",), ("trade",), Evidence.of("a0", (_place("laos"),) * 2, trade)),
            Groups("a1", ("southeast-asia",), (), Evidence.of("a1", (_place("laos"), _place("vietnam")), {})),
            Groups("a2", (), (), Evidence.of("a2", (), {})),
        ]
    )
    assert _frequencies_agree(store, "s") == (3, {"laos": 2, "vietnam": 1}, {"trade": 1})
    assert _frequencies_agree(store, "t") == (0, {}, {})
    # Scores alone (a young source re-scored) change nothing counted.
    store.set_groups([Groups("a1", ("europe",), ())])
    assert _frequencies_agree(store, "s") == (3, {"laos": 2, "vietnam": 1}, {"trade": 1})
    # a1's text changes: it waits to be classified again, and counts for nothing meanwhile.
    store.save_articles("s", [_article(1, content_hash="h1'")], now=T0)
    assert _frequencies_agree(store, "s") == (2, {"laos": 1}, {"trade": 1})
    store.set_groups(
        [Groups("a1", (), ("trade",), Evidence.of("a1", (_place("peru", "latin-america"),), trade))]
    )
    assert _frequencies_agree(store, "s") == (3, {"laos": 1, "peru": 1}, {"trade": 2})
    # Dropped once grouped: what it counted goes with it.
    assert store.drop_articles([("a0", "drop: title:/x/")], now=T0) == 1
    assert _frequencies_agree(store, "s") == (2, {"peru": 1}, {"trade": 1})
    store.set_groups([Groups("a7", (), (), Evidence.of("a7", (_place("laos"),), {}))])  # t's
    assert _frequencies_agree(store, "t") == (1, {"laos": 1}, {})
    store.mark_ungrouped()
    assert store.source_frequencies("s") == store.source_frequencies("t") == (0, {}, {})
    store.set_groups([Groups("a7", (), (), Evidence.of("a7", (_place("chile"),), {}))])
    assert _frequencies_agree(store, "t") == (1, {"chile": 1}, {})


def _totals_agree(store: Store) -> None:
    """The kept totals say what counting every article says."""
    counted, kept = store.group_counts(), store.group_totals()
    assert kept.regions == counted.regions and kept.themes == counted.themes and kept.stories == ()
    assert store.count_articles() == len(store.articles())


def test_group_totals_are_kept_as_articles_come_change_and_go(store: Store) -> None:
    """The home page's counts and every page's article count are read from totals kept as
    articles are written, not counted over the whole database (issue 30)."""
    _totals_agree(store)
    _with_articles(store, 5)
    _totals_agree(store)
    store.set_groups(
        [
            Groups("a0", ("southeast-asia", "europe"), ("trade",), Evidence.of("a0", (), {})),
            Groups("a1", ("europe",), ("trade", "security"), Evidence.of("a1", (), {})),
            Groups("a2", ("europe", "africa"), (), Evidence.of("a2", (), {})),
        ]
    )
    _totals_agree(store)
    assert [(r.slug, r.articles, r.primary) for r in store.group_totals().regions] == [
        ("europe", 3, 2),
        ("africa", 1, 0),
        ("southeast-asia", 1, 1),
    ]
    store.set_groups([Groups("a0", ("africa",), (), Evidence.of("a0", (), {}))])  # classified again
    _totals_agree(store)
    assert store.drop_articles([("a2", "drop: title:/x/"), ("a9", "drop: none such")], now=T0) == 1
    _totals_agree(store)
    assert [(r.slug, r.articles, r.primary) for r in store.group_totals().regions] == [
        ("africa", 1, 1),
        ("europe", 1, 1),
    ]
    store.save_articles("s", [_article(7)], now=T0 + timedelta(hours=1))
    _totals_agree(store)
    assert store.count_articles() == 5


def _lists_agree(store: Store) -> None:
    """A region's or theme's list, read through the rows kept per group, is the whole list
    filtered, in the same order (ties as stored), for each group and pair of groups."""
    everything = store.articles()
    totals = store.group_totals()
    regions, themes = [r.slug for r in totals.regions], [t.slug for t in totals.themes]
    pairs = [(r, None) for r in regions] + [(None, t) for t in themes]
    pairs += [(r, t) for r in regions for t in themes] + [("nowhere", None)]
    for region, theme in pairs:
        wanted = [
            a.id
            for a in everything
            if (region is None or region in a.regions) and (theme is None or theme in a.themes)
        ]
        assert [a.id for a in store.articles(region=region, theme=theme)] == wanted, (region, theme)
        assert [h.id for h in store.headlines(limit=2, region=region, theme=theme)] == wanted[:2]


def test_region_and_theme_lists_follow_articles_as_they_come_change_and_go(store: Store) -> None:
    """Lists of a group read the rows kept for it (a rare region's newest are found without
    reading every article, issue 30): they follow a new article, a new classification, a
    changed date and a removal."""
    _with_articles(store, 4)
    # Two with the same date: ties are listed in the order they were stored.
    store.save_articles("s", [_article(5, published=T0), _article(6, published=T0)], now=T0)
    groups = {
        "a0": (("europe", "africa"), ("trade",)),
        "a1": (("europe",), ("trade", "security")),
        "a3": (("oceania",), ()),
        "a5": (("europe",), ("security",)),
        "a6": (("europe",), ("security",)),
    }
    store.set_groups([Groups(k, r, t, Evidence.of(k, (), {})) for k, (r, t) in groups.items()])
    _lists_agree(store)
    assert [a.id for a in store.articles(region="europe")] == ["a1", "a0", "a5", "a6"]
    # a0's text changes and it says when it was published: it moves down the lists.
    store.save_articles("s", [_article(0, published=T0 - timedelta(days=1), content_hash="h0'")], now=T0)
    _lists_agree(store)
    assert [a.id for a in store.articles(region="europe")] == ["a1", "a5", "a6", "a0"]
    store.set_groups([Groups("a1", ("oceania",), (), Evidence.of("a1", (), {}))])  # classified again
    _lists_agree(store)
    assert store.drop_articles([("a3", "drop: title:/x/")], now=T0) == 1
    _lists_agree(store)
    assert [a.id for a in store.articles(region="oceania")] == ["a1"]
    assert [a.id for a in store.articles(region="europe", theme="security", limit=1)] == ["a5"]


def test_the_story_index_keeps_words_keys_and_counts(store: Store) -> None:
    """What a pull's story clustering reads instead of the window's text (issue 30)."""
    _with_articles(store, 4)
    assert store.story_index_empty() and store.word_frequencies(["mekong"]) == (0, {})
    at = [T0 + timedelta(hours=n) for n in range(4)]
    store.index_stories(
        [
            StoryWords("a0", at[0], {"mekong": 2, "dam": 1}, ("laos",), (("mekong", 0.8), ("dam", 0.5))),
            StoryWords("a1", at[1], {"mekong": 1, "river": 1}, (), (("mekong", 0.6), ("river", 0.7)), 1.5),
            StoryWords("a2", at[2], {"mekong": 1}, (), (("mekong", 0.9),)),
            StoryWords("zz", at[3], {"ghost": 1}, (), (("ghost", 1.0),)),  # not stored: left out
        ],
        {},
    )
    assert not store.story_index_empty()
    assert store.word_frequencies(["mekong", "dam", "ghost", "none"]) == (3, {"mekong": 3, "dam": 1})
    keys = store.story_keys(["mekong", "river"], at[0], at[2], per_key=2)
    assert sorted((k.key, k.article_id, k.weight) for k in keys) == [
        ("mekong", "a1", 0.6),
        ("mekong", "a2", 0.9),
        ("river", "a1", 0.7),
    ]  # fmt: skip  (the latest two of "mekong")
    assert {k.at for k in keys if k.article_id == "a1"} == {at[1]}
    assert [k.article_id for k in store.story_keys(["mekong"], at[1], at[1], per_key=5)] == ["a1"]
    [entry] = store.story_entries(["a0", "zz"])
    assert (entry.id, entry.title, entry.words, entry.entities, entry.story, entry.centrality) == (
        "a0", "Article number 0", {"mekong": 2, "dam": 1}, ("laos",), None, 0.0
    )  # fmt: skip
    # Indexed again (its text changed): what it counted before is counted no more.
    store.index_stories([StoryWords("a0", at[0], {"river": 1}, (), (("river", 1.0),))], {"a1": 0.5})
    assert store.word_frequencies(["mekong", "dam", "river"]) == (3, {"mekong": 2, "river": 2})
    assert [k.article_id for k in store.story_keys(["dam"], at[0], at[3], per_key=5)] == []
    [a1] = store.story_entries(["a1"])
    assert a1.centrality == 2.0  # 1.5 kept, 0.5 gained
    store.save_stories(["a0", "a1"], [Story("a0", "Mekong", ("a0", "a1"))])
    heads = store.story_heads(["a0", "nope"])
    assert (heads["a0"].earliest.id, heads["a0"].central.id, heads["a0"].central.centrality) == (
        "a0",
        "a1",
        2.0,
    )
    assert "nope" not in heads
    store.drop_articles([("a1", "drop: x")], now=T0)  # a removed article leaves the index
    assert store.story_entries(["a1"]) == [] and store.story_keys(["river"], at[0], at[3], per_key=5)
    store.clear_story_index()
    assert store.story_index_empty() and store.word_frequencies(["river"]) == (0, {})


def test_stories_replace_and_count(store: Store) -> None:
    _with_articles(store, 4)
    rows = store.story_inputs()
    assert [r.id for r in rows] == ["a0", "a1", "a2", "a3"] and rows[0].first_seen == T0
    assert [r.id for r in store.story_inputs(T0 + timedelta(minutes=2))] == ["a2", "a3"]
    store.set_groups([Groups("a1", ("europe",), ("trade",), Evidence.of("a1", (), {}))])
    assert [r.id for r in store.story_inputs(classified_only=True)] == ["a1"]
    assert store.story_inputs(T0 + timedelta(minutes=2), classified_only=True) == []
    store.save_stories(
        [r.id for r in rows], [Story("st1", "Mekong", ("a0", "a1")), Story("lone", "x", ("a3",))]
    )
    [story] = store.group_counts().stories
    assert (story.id, story.label, story.articles, set(story.members)) == ("st1", "Mekong", 2, {"a0", "a1"})
    assert store.article("a3").story is None  # type: ignore[union-attr]  # one article is no story
    ids = [r.id for r in rows]
    store.save_stories(ids, [Story("st1", "Mekong", ("a0", "a1"))])  # unchanged: stays
    assert [(s.id, s.articles) for s in store.group_counts().stories] == [("st1", 2)]
    store.save_stories(ids, [Story("st1", "Mekong", ("a0", "a3")), Story("st2", "Dams", ("a1", "a2"))])
    assert {a.id: a.story for a in store.articles()} == {"a0": "st1", "a1": "st2", "a2": "st2", "a3": "st1"}
    store.save_stories(["a0", "a1"], [])
    assert store.group_counts().stories == ()


def test_a_story_is_read_by_its_heads_and_absorbed_whole(store: Store) -> None:
    """A pull extends a stored story without reading or naming its members (issue 30: one
    story had grown to 17,845): its heads are the earliest and the most central member
    (the earliest of equals, an unindexed member counting as 0), and a story absorbed
    brings all its members along."""
    _with_articles(store, 7)
    at = [T0 + timedelta(minutes=n) for n in range(7)]
    store.index_stories(
        [
            StoryWords(f"a{n}", at[n], {"w": 1}, (), (("w", 1.0),), c)
            for n, c in [(1, 0.5), (2, 0.9), (3, 0.9)]
        ],
        {},
    )
    store.save_stories(
        [f"a{n}" for n in range(7)],
        [Story("a0", "Zero", ("a0", "a1", "a2", "a3")), Story("a4", "Four", ("a4", "a5"))],
    )
    heads = store.story_heads(["a4", "a0", "a0", "gone"])
    assert sorted(heads) == ["a0", "a4"]
    assert (heads["a0"].earliest, heads["a0"].central) == (
        StoryMember("a0", at[0], "Article number 0", 0.0), StoryMember("a2", at[2], "Article number 2", 0.9)
    )  # fmt: skip
    assert (heads["a4"].earliest.id, heads["a4"].central.id) == ("a4", "a4")  # 0 and 0: the earliest
    # a6 links a1 and a5: a0's and a4's stories become one, a3 (named elsewhere) leaves.
    store.save_stories(
        ["a6", "a1", "a5", "a3"],
        [Story("a0", "Two", ("a1", "a5", "a6"), ("a0", "a4")), Story("lone", "x", ("a3",))],
    )
    assert {a.id: a.story for a in store.articles()} == {
        "a0": "a0", "a1": "a0", "a2": "a0", "a4": "a0", "a5": "a0", "a6": "a0", "a3": None
    }  # fmt: skip
    assert [(s.id, s.label, s.articles) for s in store.group_counts().stories] == [("a0", "Two", 6)]
    # A story absorbed into another whose id is new: the old one is gone.
    store.save_stories(["a3"], [Story("a3", "Three", ("a3",), ("a0",))])
    assert [(s.id, s.label, s.articles) for s in store.group_counts().stories] == [("a3", "Three", 7)]
    assert store.story_heads(["a0"]) == {}
    # Moves are read before any is made: a new story's id may be an absorbed story's old one
    # (found by review: a9, edited, keeps its old story's id for a story absorbing a11's,
    # while a9's old story goes to a7's).
    store.save_articles("s", [_article(n) for n in range(7, 13)], now=T0)
    store.save_stories(
        [f"a{n}" for n in range(7, 13)],
        [Story("a7", "S", ("a7", "a8")), Story("a9", "T", ("a9", "a10")), Story("a11", "U", ("a11", "a12"))],
    )
    store.save_stories(
        ["a9", "a11", "a10"],
        [Story("a9", "T2", ("a9", "a11"), ("a11",)), Story("a7", "S2", ("a10",), ("a7", "a9"))],
    )
    assert {a.id: a.story for a in store.articles() if int(a.id[1:]) >= 7} == {
        "a9": "a9", "a11": "a9", "a12": "a9", "a7": "a7", "a8": "a7", "a10": "a7"
    }  # fmt: skip
    # One named in no story follows its story when that is absorbed (edited, it linked
    # nothing: its stored link is not undone); when its story is left alone, it leaves it.
    store.save_stories(["a8", "a10"], [Story("a7", "S3", ("a10",), ("a7",))])
    assert store.article("a8").story == "a7"  # type: ignore[union-attr]
    store.save_stories(["a8"], [])
    assert store.article("a8").story is None  # type: ignore[union-attr]


# --- settings and leases ------------------------------------------------------------------


def test_settings_and_leases(store: Store) -> None:
    made: list[int] = []
    assert store.setting("k", lambda: str(made.append(1) or "first")) == "first"
    assert store.setting("k", lambda: "second") == "first" and len(made) == 1
    assert store.get_setting("missing") is None
    before = store.data_version()
    store.put_setting("k", "third")
    assert store.get_setting("k") == "third" and store.data_version() != before
    before = store.data_version()
    store.put_setting("mark", "here", shown=False)  # a mark of where work got to: no page changes
    assert store.get_setting("mark") == "here" and store.data_version() == before
    assert store.acquire_lease("job", "a", 60) and store.acquire_lease("job", "a", 60)  # renewed
    assert not store.acquire_lease("job", "b", 60) and store.lease_holder("job") == "a"
    store.release_lease("job", "b")  # not b's to release
    assert not store.acquire_lease("job", "b", 60)
    store.release_lease("job", "a")
    assert store.lease_holder("job") is None and store.acquire_lease("job", "b", 0.001)
    time.sleep(0.01)
    assert store.lease_holder("job") is None  # b's lease expired
    assert store.acquire_lease("job", "a", 60)


def test_rate_limits_count_hits_in_a_sliding_window(store: Store, backend: Backend, tmp_path: Path) -> None:
    allowed = [store.allow_hit("k", limit=2, window=60, now=T0 + timedelta(seconds=n)) for n in range(3)]
    assert allowed == [True, True, False]
    assert store.allow_hit("other", limit=2, window=60, now=T0)  # per key
    with backend.open(tmp_path) as other:  # another process serving the form counts the same
        assert not other.allow_hit("k", limit=2, window=60, now=T0 + timedelta(seconds=59))
    assert store.count_hits("k", window=60, now=T0 + timedelta(seconds=59)) == 2  # counting none
    assert store.allow_hit("k", limit=2, window=60, now=T0 + timedelta(seconds=61))  # the first aged out
    assert store.count_hits("k", window=60, now=T0 + timedelta(seconds=61)) == 1  # the new one only
    assert store.count_hits("nobody", window=60, now=T0) == 0


# --- subscribers and sign-ups -------------------------------------------------------------


def test_subscribers_upsert_status_and_preferences(store: Store) -> None:
    added, updated = store.upsert_subscribers(
        [SubscriberChange("ann@example.org", status="pending", regions=("europe",), created=T0, pending_since=T0),
         SubscriberChange("bob@example.org")]
    )  # fmt: skip
    assert (added, updated) == (2, 0)
    ann = store.subscriber(email="ANN@example.org")  # addresses match in any case
    assert ann is not None and (ann.status, ann.regions, ann.created, ann.pending_since) == (
        "pending", ("europe",), T0, T0
    )  # fmt: skip
    assert store.subscriber(subscriber_id=ann.id) == ann
    later = T0 + timedelta(days=1)
    assert store.upsert_subscribers(
        [SubscriberChange("ann@example.org", themes=("trade",), created=later)]
    ) == (0, 1)
    ann = store.subscriber(email="ann@example.org")
    assert ann is not None and ann.created == T0 and ann.themes == ("trade",)  # created never changes
    store.set_subscriber_status(ann.id, "active", at=later)
    ann = store.subscriber(email="ann@example.org")
    assert ann is not None and (ann.status, ann.confirmed, ann.pending_since) == ("active", later, None)
    store.set_subscriber_status(ann.id, "unsubscribed", at=later)
    assert store.subscriber(email="ann@example.org").unsubscribed == later  # type: ignore[union-attr]
    store.set_preferences(ann.id, ["africa"], [])
    ann = store.subscriber(email="ann@example.org")
    assert ann is not None and (ann.regions, ann.themes) == (("africa",), ())
    assert [s.email for s in store.subscribers()] == ["ann@example.org", "bob@example.org"]
    assert [s.email for s in store.subscribers("active")] == ["bob@example.org"]
    assert store.delete_subscriber("bob@example.org") and not store.delete_subscriber("bob@example.org")
    with pytest.raises(StoreError):
        store.set_subscriber_status(ann.id, "sleeping", at=later)


def test_subscribers_of_a_status_come_in_pages_in_sign_up_order(store: Store) -> None:
    """Going through many subscribers a page at a time (a plan for 100,000 holds a page)."""
    store.upsert_subscribers(
        [SubscriberChange(f"r{n}@example.org", "pending" if n % 3 == 0 else "active") for n in range(8)]
    )
    everyone = store.subscribers("active")
    assert len(everyone) == 5 and [s.id for s in everyone] == sorted(s.id for s in everyone)
    pages, after = [], 0
    while page := store.subscribers("active", after=after, limit=2):
        pages.append([s.email for s in page])
        after = page[-1].id
    assert pages == [[s.email for s in everyone[k : k + 2]] for k in range(0, 5, 2)]
    assert store.subscribers("active", after=everyone[-1].id) == []


def test_rhythms_topics_and_who_is_due(store: Store) -> None:
    daily = Rhythm("daily", "America/New_York", 7)
    weekly = Rhythm("weekly", "Europe/London", 9, weekday=4)
    before = store.now()
    store.upsert_subscribers(
        [
            SubscriberChange("ann@example.org", rhythm=daily, topics=("Laos OR Mekong",), created=T0),
            SubscriberChange("bob@example.org", rhythm=weekly, created=T0),
            SubscriberChange("cid@example.org", created=T0),  # the site's schedule
            SubscriberChange("dan@example.org", status="pending", rhythm=daily, created=T0),
        ]
    )
    ann, bob, cid, dan = (store.subscriber(email=f"{n}@example.org") for n in ("ann", "bob", "cid", "dan"))
    assert ann and bob and cid and dan
    assert (ann.rhythm, ann.topics, bob.rhythm, bob.topics, cid.rhythm, cid.next_due) == (
        daily, ("Laos OR Mekong",), weekly, (), None, None
    )  # fmt: skip
    # A new rhythm is next due at its first due time from now (the moment of the upsert).
    after = store.now()
    assert ann.next_due is not None and before < ann.next_due <= after + timedelta(days=1)
    assert next_due(daily, ann.next_due - timedelta(seconds=1)) == ann.next_due  # a due time of hers
    assert bob.next_due is not None and before < bob.next_due <= after + timedelta(days=7)
    store.set_next_due([(ann.id, T0), (bob.id, T0 + timedelta(hours=1))])
    assert store.due_subscribers(T0 - timedelta(seconds=1)) == []
    # who is next after a moment (pending dan and cid on the site's schedule never)
    assert store.next_due_after(T0 - timedelta(seconds=1)) == (T0, 1)
    assert store.next_due_after(T0) == (T0 + timedelta(hours=1), 1)
    assert store.next_due_after(T0 + timedelta(hours=1)) is None
    assert [s.email for s in store.due_subscribers(T0)] == ["ann@example.org"]  # not pending dan
    assert [s.email for s in store.due_subscribers(T0 + timedelta(hours=2))] == [
        "ann@example.org", "bob@example.org"
    ]  # fmt: skip
    # Not one whose previous digest is still pending.
    store.create_digest("d1", T0, [(ann.id, T0, "daily:2026-01-01")])
    assert [s.email for s in store.due_subscribers(T0 + timedelta(hours=2))] == ["bob@example.org"]
    store.record_delivery("d1", ann.id, "sent")
    # One digest per subscriber and period: a second row for a period they had is left out.
    assert store.create_digest("d2", T0, [(ann.id, T0, "daily:2026-01-01"), (bob.id, T0, "weekly:x")]) == 1
    assert [p.subscriber.email for p in store.pending_deliveries("d2")] == ["bob@example.org"]
    assert store.pending_deliveries("d2")[0].period == "weekly:x"
    assert store.create_digest("d3", T0, [(ann.id, T0, "daily:2026-01-01")]) == 0
    assert store.digest("d3") is None  # nothing in it: no digest either
    assert store.last_delivered([ann.id, cid.id]) == {ann.id: T0}
    # Preferences may change the rhythm (due afresh) and the topics, or leave them.
    store.set_preferences(ann.id, ["europe"], [], rhythm=weekly, topics=["Mekong"])
    ann = store.subscriber(email="ann@example.org")
    assert ann and (ann.rhythm, ann.topics, ann.regions) == (weekly, ("Mekong",), ("europe",))
    assert ann.next_due is not None and ann.next_due > after
    store.set_preferences(ann.id, [], [])
    assert store.subscriber(email="ann@example.org").rhythm == weekly  # type: ignore[union-attr]
    # Due further ahead than the cadence ever puts it: a clock ran ahead when it was set.
    store.set_next_due(
        [(ann.id, T0 + timedelta(days=7, hours=1)), (bob.id, T0 + timedelta(days=2)), (cid.id, None)]
    )
    assert store.misdated_subscribers(T0) == []  # weekly: a week and an hour is possible
    store.set_next_due([(ann.id, T0 + timedelta(days=8)), (bob.id, T0 + timedelta(days=27))])
    assert [s.email for s in store.misdated_subscribers(T0)] == ["ann@example.org", "bob@example.org"]
    store.set_next_due([(ann.id, None)])  # none at all: never due, never misdated
    assert [s.email for s in store.misdated_subscribers(T0)] == ["bob@example.org"]
    assert ann.id not in {s.id for s in store.due_subscribers(T0 + timedelta(days=400))}


def test_the_sign_up_queue(store: Store) -> None:
    store.enqueue_signup("ann@example.org", ["europe"], [], now=T0)
    store.enqueue_signup(
        "bob@example.org", [], ["trade"], now=T0 + timedelta(seconds=1), rhythm=Rhythm("daily"), topics=["x"]
    )
    [first] = store.claim_signups(T0, until=T0 + timedelta(minutes=5), limit=5)
    assert (first.email, first.regions, first.attempts, first.subscriber_id) == (
        "ann@example.org",
        ("europe",),
        0,
        None,
    )
    assert [
        s.email
        for s in store.claim_signups(T0 + timedelta(seconds=2), until=T0 + timedelta(minutes=5), limit=5)
    ] == ["bob@example.org"]  # ann's is held until her claim runs out
    store.signup_for(first.id, 42)
    store.retry_signup(first.id, T0 + timedelta(hours=1), "server down")
    ann = next(s for s in store.signups() if s.id == first.id)
    assert (ann.attempts, ann.next_try, ann.last_error, ann.subscriber_id) == (
        1,
        T0 + timedelta(hours=1),
        "server down",
        42,
    )
    store.postpone_signups(T0 + timedelta(days=1), T0 + timedelta(days=2))
    assert {s.next_try for s in store.signups()} == {T0 + timedelta(days=2)}
    store.finish_signup(first.id)
    assert [(s.email, s.rhythm, s.topics) for s in store.signups()] == [
        ("bob@example.org", Rhythm("daily"), ("x",))
    ]  # fmt: skip
    assert first.rhythm is None and first.topics == ()


# --- digests and the ledger ---------------------------------------------------------------


def test_the_ledger(store: Store) -> None:
    store.upsert_subscribers(
        [SubscriberChange(f"{n}@example.org", created=T0) for n in ("ann", "bob", "cid")]
    )
    ids = {s.email.split("@")[0]: s.id for s in store.subscribers()}
    first_cut, second_cut = T0 + timedelta(days=1), T0 + timedelta(days=8)
    store.create_digest("d1", first_cut, [(ids[n], T0, None) for n in ("ann", "bob", "cid")])
    record = store.digest("d1")
    assert record is not None and (record.until, record.status) == (first_cut, "sending")
    assert store.digest("nope") is None
    assert store.subscribers_with_pending() == set(ids.values())
    pending = store.pending_deliveries("d1")
    assert [p.subscriber.email for p in pending] == ["ann@example.org", "bob@example.org", "cid@example.org"]
    assert pending[0].since == T0 and pending[0].attempts == 0
    store.record_delivery("d1", ids["ann"], "sent", message_id="<m1>", reply="250 OK")
    for _ in range(2):  # two refusals for good in a row, with bouncing at two
        store.record_delivery("d1", ids["bob"], "failed", reply="550 no", strike=True, strikes_to_bounce=2)
    assert store.subscriber(subscriber_id=ids["bob"]).status == "bounced"  # type: ignore[union-attr]
    assert store.subscriber(subscriber_id=ids["bob"]).bounces == 2  # type: ignore[union-attr]
    assert store.delivery_counts("d1") == {"sent": 1, "failed": 1, "pending": 1}
    store.finish_digest("d1")
    assert store.digest("d1").status == "sending"  # type: ignore[union-attr]  # cid is pending
    assert [d.id for d in store.unfinished_digests()] == ["d1"]
    store.record_delivery("d1", ids["cid"], "sent")
    store.finish_digest("d1")
    assert store.digest("d1").status == "done" and store.unfinished_digests() == []  # type: ignore[union-attr]
    store.create_digest("d2", second_cut, [(ids["ann"], first_cut, None)])
    store.record_delivery("d2", ids["ann"], "sent")
    assert store.last_delivered() == {ids["ann"]: second_cut, ids["cid"]: first_cut}  # the latest one
    [latest, older] = store.digests()
    assert (latest.digest.id, latest.sent, older.digest.id, older.sent, older.failed) == ("d2", 1, "d1", 2, 1)
    assert store.subscribers_with_pending() == set()
    store.set_subscriber_status(ids["bob"], "active", at=second_cut)  # reactivated: strikes from none
    bob = store.subscriber(subscriber_id=ids["bob"])
    assert bob is not None and (bob.status, bob.bounces) == ("active", 0)


def test_bounces_and_complaints_after_delivery(store: Store) -> None:
    """A report lands on its delivery once; hard and complaint act at once; soft bounces act
    only when each of the latest digests came back; a departed subscriber stays departed."""
    names = ("ann", "bob", "cid", "dan")
    # The ledger is stamped by the store's clock (PostgreSQL's: the server's), so the moments
    # it is compared with come from that clock too, whatever the date.
    start = store.ledger_now()
    store.upsert_subscribers([SubscriberChange(f"{n}@example.org", created=start) for n in names])
    ids = {s.email.split("@")[0]: s.id for s in store.subscribers()}
    for n, day in enumerate(("d1", "d2", "d3")):
        store.create_digest(day, T0 + timedelta(days=n + 1), [(ids[x], T0, None) for x in names])
        for x in names:
            store.record_delivery(day, ids[x], "sent", message_id=f"<{day}.{x}@digest.example.org>")
    assert store.sent_digests(ids["ann"]) == ["d3", "d2", "d1"]
    assert store.sent_digests(ids["ann"], limit=1) == ["d3"]
    assert store.delivery_of_message("d2.bob@digest.example.org") == ("d2", ids["bob"])
    assert store.delivery_of_message("<d2.bob@digest.example.org>") == ("d2", ids["bob"])
    assert store.delivery_of_message("<nope@x>") is None

    def report(who: str, digest: str | None, kind: str, soft_limit: int = 3) -> str:
        return store.record_feedback(
            ids[who], digest, kind, "5.1.1 no such user", soft_limit=soft_limit, now=T0
        )

    def subscriber(who: str) -> tuple[str, str | None]:
        found = store.subscriber(subscriber_id=ids[who])
        assert found is not None
        return found.status, found.reason

    assert report("ann", "d2", "hard") == "bounced"
    assert subscriber("ann") == ("bounced", "hard bounce: 5.1.1 no such user")
    assert report("ann", "d2", "hard") == "repeat"
    assert report("ann", "d3", "complaint") == "inactive"  # noted on d3, status unchanged
    assert subscriber("ann")[0] == "bounced"
    assert report("bob", None, "complaint") == "unsubscribed"  # no digest named: the latest
    bob = store.subscriber(subscriber_id=ids["bob"])
    assert bob is not None and bob.unsubscribed == T0 and bob.reason == "complaint: 5.1.1 no such user"
    assert report("cid", "d1", "soft") == "counted"
    assert report("cid", "d1", "soft") == "repeat"  # a retried notice counts once
    assert report("cid", "d3", "soft") == "counted"  # d2 came back with nothing: no run of three
    assert subscriber("cid") == ("active", None)
    assert report("cid", "d2", "soft") == "bounced"  # now d1, d2 and d3 all came back
    assert subscriber("cid")[0] == "bounced" and "3 soft bounces in a row" in (subscriber("cid")[1] or "")
    assert report("dan", "nope", "soft", soft_limit=1) == "bounced"  # an unknown digest: the latest
    assert store.feedback_counts("d3") == {"complaint": 2, "soft": 2}  # ann and bob; cid and dan
    assert store.feedback_counts("d2") == {"hard": 1, "soft": 1}
    assert store.record_feedback(9999, None, "hard", "x", soft_limit=3, now=T0) == "unknown"
    store.set_subscriber_status(ids["ann"], "active", at=T0)  # the operator brings ann back
    assert subscriber("ann") == ("active", None)
    store.set_subscriber_status(ids["cid"], "active", at=store.ledger_now())  # and cid, after d1 to d3
    store.create_digest("d4", T0 + timedelta(days=31), [(ids["cid"], T0, None)])
    store.record_delivery("d4", ids["cid"], "sent")
    assert report("cid", "d4", "soft") == "counted"  # a fresh start: d1 to d3 count no more
    assert subscriber("cid") == ("active", None)


def test_refusals_bounce_only_three_in_a_row(store: Store) -> None:
    """A message the server took clears the strikes: two refusals, a delivery, two more
    refusals leave the reader active; a third in a row bounces them."""
    store.upsert_subscribers([SubscriberChange("bob@example.org", status="active", created=T0)])
    [bob] = store.subscribers()

    def deliver(n: int, outcome: str) -> None:
        store.create_digest(f"d{n}", T0 + timedelta(days=n), [(bob.id, T0, None)])
        strike = outcome == "failed"
        store.record_delivery(
            f"d{n}",
            bob.id,
            outcome,
            reply="550 no such user" if strike else None,
            strike=strike,
            strikes_to_bounce=3,
        )

    for n, outcome in enumerate(("failed", "failed", "sent", "failed", "failed")):
        deliver(n, outcome)
    found = store.subscriber(subscriber_id=bob.id)
    assert found is not None and (found.status, found.bounces) == ("active", 2)
    deliver(5, "failed")
    found = store.subscriber(subscriber_id=bob.id)
    assert found is not None and found.status == "bounced"
    assert found.reason == "3 refusals in a row: 550 no such user"


def test_a_late_report_about_a_digest_before_a_reactivation_changes_nothing(store: Store) -> None:
    """The operator reactivated a bounced reader; the bounce's late duplicate (or another
    report about that old digest) is noted on it, and the reader stays active. A report
    about a digest sent since counts as any does."""
    store.upsert_subscribers([SubscriberChange("eve@example.org", created=store.ledger_now())])
    [eve] = store.subscribers()
    store.create_digest("old", T0, [(eve.id, T0, None)])
    store.record_delivery("old", eve.id, "sent")

    def report(digest: str) -> str:
        return store.record_feedback(eve.id, digest, "hard", "5.1.1 no such user", soft_limit=3, now=T0)

    assert report("old") == "bounced"
    store.set_subscriber_status(eve.id, "active", at=store.ledger_now())  # the operator's word
    assert store.record_feedback(eve.id, "old", "complaint", "abuse", soft_limit=3, now=T0) == "stale"
    found = store.subscriber(subscriber_id=eve.id)
    assert found is not None and found.status == "active"
    assert store.feedback_counts("old") == {"complaint": 1}  # noted on it, all the same
    store.create_digest("new", T0 + timedelta(days=1), [(eve.id, T0, None)])
    store.record_delivery("new", eve.id, "sent")
    assert report("new") == "bounced"


def test_what_the_store_stamps_unasked_is_by_its_own_clock(backend: Backend, tmp_path: Path) -> None:
    """A store given a clock (a test's moment) stamps by it whatever it is not told the time
    of; only what workers coordinate by follows the server's clock on PostgreSQL."""
    at = [T0 + timedelta(days=400)]  # a moment far from the real one, and moved below
    with backend.open(tmp_path, clock=lambda: at[0]) as store:
        assert store.now() == at[0]
        store.sync_sources([SourceSpec("s", "https://x.org/a", "feed")])
        store.record_fetch("s", status=200, error=None)
        assert store.source_state("s").last_fetched == at[0]
        store.upsert_subscribers([SubscriberChange("ann@example.org")])
        ann = store.subscriber(email="ann@example.org")
        assert ann is not None and ann.created == at[0]
        at[0] += timedelta(days=1)
        assert store.now() == T0 + timedelta(days=401)  # read anew each time
        if backend.name == "sqlite":  # one machine: its claims go by the store's clock too
            assert store.ledger_now() == at[0]
        else:  # the server's, whatever this worker's clock says
            assert abs(store.ledger_now() - datetime.now(UTC)) < timedelta(minutes=1)


def test_deliveries_are_claimed_in_batches_and_claims_expire(store: Store) -> None:
    store.upsert_subscribers([SubscriberChange(f"{n}@example.org", created=T0) for n in range(6)])
    ids = sorted(s.id for s in store.subscribers())
    store.create_digest("d1", T0, [(sid, T0, None) for sid in ids])
    run = store.ledger_now()  # when the workers' runs began, by the clock claims are judged by

    def claim(holder: str, limit: int = 10, seconds: float = 60) -> list[int]:
        found = store.claim_deliveries("d1", holder, limit=limit, seconds=seconds, tried_before=run)
        return [p.subscriber.id for p in found]

    # w2's claims last 2 s: long beside what a loaded machine takes for the next few steps.
    assert claim("w1", 2) == ids[:2] and claim("w2", seconds=2) == ids[2:]
    first = store.pending_deliveries("d1")[0]
    assert first.since == T0 and first.subscriber.email == "0@example.org"
    assert claim("w1") == [] and store.claim_holders("d1", "w1") == {"w2"}  # all held
    store.record_delivery("d1", ids[2], "sent")  # w2 sent one, then died
    assert store.claim_holders("d1", "w3") == {"w1", "w2"}
    assert store.renew_claims("d1", "w1", 60) == set(ids[:2])  # w1 lives on
    expiry = run + timedelta(seconds=2)
    waited = within(lambda: store.claim_holders("d1", "w3") == {"w1"}, 30, every=0.01)  # w2's claims run out
    assert waited and store.ledger_now() >= expiry  # then, not before: nobody to wait for
    assert store.renew_claims("d1", "w2", 60) == set()  # too late to renew: they may be another's
    assert claim("w1") == ids[3:]  # w2's expired claims, not its sent one
    assert store.ledger_now() >= run
    store.record_delivery("d1", ids[5], "pending", reply="451 try later")  # deferred during this run
    assert claim("w3") == [] and store.claim_holders("d1", "w3") == {"w1"}  # w1 holds 0, 1, 3, 4
    store.release_deliveries("d1", "w1")  # w1 stops early: its claims go back
    assert claim("w3") == [*ids[:2], *ids[3:5]] and store.claim_holders("d1", "w3") == set()
    assert [
        p.subscriber.id
        for p in store.claim_deliveries("d1", "w4", limit=10, seconds=60, tried_before=store.ledger_now())
    ] == [ids[5]]  # the next run
    assert len(store.pending_deliveries("d1")) == 5  # claims do not change what is pending


def test_a_source_is_claimed_by_one_worker_until_its_fetch_is_recorded(store: Store) -> None:
    store.sync_sources([SourceSpec("s", "https://x.org/a", "feed")])
    assert store.claim_source("s", "w1", 60) and store.claim_source("s", "w1", 60)  # renewed
    assert not store.claim_source("s", "w2", 60)
    store.record_fetch("s", status=200, error=None)
    assert store.claim_source("s", "w2", 0.01)
    time.sleep(0.05)
    assert store.claim_source("s", "w1", 60)  # w2's claim expired
    assert not store.claim_source("nope", "w1", 60)


def _everything(store: Store) -> dict[str, list[dict[str, Any]]]:
    return {table: [dict(row) for row in rows] for table, rows in store.dump()}


def test_dump_and_load_move_every_table(store: Store, backend: Backend, tmp_path: Path) -> None:
    _furnish_store(store)
    store.set_groups([Groups("a0", ("europe",), ("trade",), Evidence.of("a0", ({"key": "laos"},), {}))])
    store.save_stories(["a0"], [])
    store.record_delivery("d1", 1, "sent", message_id="<m>")
    assert not store.is_empty()
    dumped = _everything(store)
    assert {table: len(rows) for table, rows in dumped.items() if table not in ("sequences", "settings")} == {
        "sources": 2, "articles": 1, "dropped": 1, "pages": 1, "stories": 0, "subscribers": 1, "digests": 1, "deliveries": 1,
        "signups": 1, "api_tokens": 1, "webhooks": 1, "webhook_events": 1, "admins": 1, "audit": 1,
    }  # fmt: skip
    assert {"key": "k", "value": "v"} in dumped["settings"]
    [article] = dumped["articles"]
    assert (article["first_seen"], article["regions"], article["places"], article["grouped"]) == (
        T0, ["europe"], [{"key": "laos"}], True
    )  # fmt: skip
    other = tmp_path / "other"
    other.mkdir()
    with backend.open(other) as target:
        assert target.is_empty()
        target.load(store.dump())
        assert _everything(target) == dumped
        assert target.search(parse("mekong"))[0].id == "a0"  # the search index came along
        target.upsert_subscribers([SubscriberChange("new@example.org")])
        assert target.subscriber(email="new@example.org").id == 2  # type: ignore[union-attr]
        assert target.create_token("t1", "read", "h1").id == 2  # ids go on past the copied ones
        assert target.add_webhook("https://h.example/1", [], "k1").id == 2
        assert target.add_admin("two", "h").id == 2
        with pytest.raises(StoreError, match="not empty"):
            target.load(store.dump())
        assert (
            _everything(target)["subscribers"][0] == dumped["subscribers"][0]
        )  # a refused load changed nothing


# --- trouble: every method works or raises StoreError -------------------------------------

# One call of every method of the contract, on a store that has a source, an article, a
# subscriber, a digest and a sign-up.
CALLS: dict[str, Callable[[Store, Path], Any]] = {
    "close": lambda s, p: None,  # closing is tried last, on its own
    "__enter__": lambda s, p: s.__enter__(),
    "__exit__": lambda s, p: None,
    "migrate": lambda s, p: s.migrate(),
    "applied_migrations": lambda s, p: s.applied_migrations(),
    "backup": lambda s, p: s.backup(p / "backup.db"),
    "data_version": lambda s, p: s.data_version(),
    "now": lambda s, p: s.now(),
    "sync_sources": lambda s, p: s.sync_sources([SourceSpec("s", "https://x.org/new", "feed")]),
    "retire_sources": lambda s, p: s.retire_sources(["s"]),
    "rename_source": lambda s, p: s.rename_source("s", "s2"),
    "source_state": lambda s, p: s.source_state("s"),
    "add_sources": lambda s, p: s.add_sources(
        [AddedSource("w", "https://w.example/", "feed", {"name": "w"})]
    ),
    "change_source": lambda s, p: s.change_source("w", paused=True),
    "remove_source": lambda s, p: s.remove_source("w"),
    "added_sources": lambda s, p: s.added_sources(),
    "deliveries_of": lambda s, p: s.deliveries_of(1),
    "subscriber_events": lambda s, p: s.subscriber_events(),
    "forget_subscriber_events": lambda s, p: s.forget_subscriber_events(1),
    "stories_changed": lambda s, p: s.stories_changed(T0),
    "activity": lambda s, p: s.activity(T0),
    "add_admin": lambda s, p: s.add_admin("a", "h"),
    "admins": lambda s, p: s.admins(),
    "admin": lambda s, p: s.admin("a"),
    "has_admins": lambda s, p: s.has_admins(),
    "set_admin_password": lambda s, p: s.set_admin_password("a", "h2"),
    "remove_admin": lambda s, p: s.remove_admin("a"),
    "start_session": lambda s, p: s.start_session("s", 1, "c", now=T0, expires=T0),
    "session": lambda s, p: s.session("s"),
    "session_seen": lambda s, p: s.session_seen("s", T0),
    "end_session": lambda s, p: s.end_session("s"),
    "prune_sessions": lambda s, p: s.prune_sessions(now=T0, idle_before=T0),
    "record_audit": lambda s, p: s.record_audit("a", "x"),
    "audit_log": lambda s, p: s.audit_log(),
    "count_hits": lambda s, p: s.count_hits("k", window=60, now=T0),
    "create_token": lambda s, p: s.create_token("t", "read", "h"),
    "api_tokens": lambda s, p: s.api_tokens(),
    "token_by_hash": lambda s, p: s.token_by_hash("h"),
    "has_tokens": lambda s, p: s.has_tokens(),
    "revoke_token": lambda s, p: s.revoke_token("t"),
    "token_used": lambda s, p: s.token_used(1, T0),
    "add_webhook": lambda s, p: s.add_webhook("https://h.example/", ["story.new"], "k"),
    "webhooks": lambda s, p: s.webhooks(),
    "remove_webhook": lambda s, p: s.remove_webhook(1),
    "enqueue_events": lambda s, p: s.enqueue_events(
        [QueuedEvent("m", "https://h.example/", "story.new", "{}", T0)]
    ),
    "claim_events": lambda s, p: s.claim_events("h", limit=5, seconds=10, now=T0),
    "event_tried": lambda s, p: s.event_tried("m", now=T0, error=None, retry_at=None),
    "queued_events": lambda s, p: s.queued_events(),
    "prune_events": lambda s, p: s.prune_events(T0),
    "record_fetch": lambda s, p: s.record_fetch("s", status=200, error=None),
    "claim_source": lambda s, p: s.claim_source("s", "me", 60),
    "source_urls": lambda s, p: s.source_urls(),
    "source_summaries": lambda s, p: s.source_summaries(),
    "save_articles": lambda s, p: s.save_articles("s", [_article(5)], now=T0),
    "articles": lambda s, p: s.articles(region="europe"),
    "search": lambda s, p: s.search(parse("mekong")),
    "article": lambda s, p: s.article("a0"),
    "count_articles": lambda s, p: s.count_articles(),
    "content_hashes": lambda s, p: s.content_hashes(["a0"]),
    "owned_ids": lambda s, p: s.owned_ids("s", ["a0"]),
    "remembered_drops": lambda s, p: s.remembered_drops(["a0"]),
    "save_dropped": lambda s, p: s.save_dropped([DroppedItem("zz", "s", "t", None, "drop: x", "h", T0)]),
    "drop_articles": lambda s, p: s.drop_articles([("a0", "drop: x")], now=T0),
    "forget_drops": lambda s, p: s.forget_drops(["zz"]),
    "page_validators": lambda s, p: s.page_validators(["https://x.org/0"]),
    "save_page_validators": lambda s, p: s.save_page_validators([("https://x.org/0", '"e"', None)], now=T0),
    "dropped_items": lambda s, p: s.dropped_items(),
    "ungrouped": lambda s, p: s.ungrouped(),
    "mark_ungrouped": lambda s, p: s.mark_ungrouped(),
    "source_frequencies": lambda s, p: s.source_frequencies("s"),
    "evidence": lambda s, p: s.evidence("s"),
    "set_groups": lambda s, p: s.set_groups([Groups("a0", ("europe",), (), Evidence.of("a0", (), {}))]),
    "story_inputs": lambda s, p: s.story_inputs(),
    "save_stories": lambda s, p: s.save_stories(["a0"], []),
    "story_index_empty": lambda s, p: s.story_index_empty(),
    "word_frequencies": lambda s, p: s.word_frequencies(["mekong"]),
    "story_keys": lambda s, p: s.story_keys(["mekong"], T0, T0, per_key=5),
    "story_entries": lambda s, p: s.story_entries(["a0"]),
    "story_heads": lambda s, p: s.story_heads(["st"]),
    "index_stories": lambda s, p: s.index_stories(
        [StoryWords("a0", T0, {"mekong": 1}, (), (("mekong", 1.0),))], {}
    ),
    "clear_story_index": lambda s, p: s.clear_story_index(),
    "group_counts": lambda s, p: s.group_counts(),
    "group_totals": lambda s, p: s.group_totals(),
    "headlines": lambda s, p: s.headlines(limit=5),
    "next_due_after": lambda s, p: s.next_due_after(T0),
    "setting": lambda s, p: s.setting("new", lambda: "v"),
    "get_setting": lambda s, p: s.get_setting("k"),
    "put_setting": lambda s, p: s.put_setting("k", "v2"),
    "acquire_lease": lambda s, p: s.acquire_lease("job", "me", 60),
    "release_lease": lambda s, p: s.release_lease("job", "me"),
    "lease_holder": lambda s, p: s.lease_holder("job"),
    "allow_hit": lambda s, p: s.allow_hit("k", limit=1, window=60, now=T0),
    "subscriber": lambda s, p: s.subscriber(email="ann@example.org"),
    "subscribers": lambda s, p: s.subscribers(),
    "upsert_subscribers": lambda s, p: s.upsert_subscribers([SubscriberChange("new@example.org")]),
    "set_subscriber_status": lambda s, p: s.set_subscriber_status(1, "active", at=T0),
    "set_preferences": lambda s, p: s.set_preferences(1, ["europe"], []),
    "due_subscribers": lambda s, p: s.due_subscribers(T0),
    "set_next_due": lambda s, p: s.set_next_due([(1, T0)]),
    "misdated_subscribers": lambda s, p: s.misdated_subscribers(T0),
    "delete_subscriber": lambda s, p: s.delete_subscriber("ann@example.org"),
    "enqueue_signup": lambda s, p: s.enqueue_signup("x@example.org", [], [], now=T0),
    "claim_signups": lambda s, p: s.claim_signups(T0, until=T0, limit=1),
    "signup_for": lambda s, p: s.signup_for(1, 1),
    "retry_signup": lambda s, p: s.retry_signup(1, T0, "e"),
    "postpone_signups": lambda s, p: s.postpone_signups(T0, T0),
    "finish_signup": lambda s, p: s.finish_signup(1),
    "signups": lambda s, p: s.signups(),
    "last_delivered": lambda s, p: s.last_delivered(),
    "subscribers_with_pending": lambda s, p: s.subscribers_with_pending(),
    "create_digest": lambda s, p: s.create_digest("d2", T0, [(1, T0, None)]),
    "digest": lambda s, p: s.digest("d1"),
    "digests": lambda s, p: s.digests(),
    "unfinished_digests": lambda s, p: s.unfinished_digests(),
    "pending_deliveries": lambda s, p: s.pending_deliveries("d1"),
    "claim_deliveries": lambda s, p: s.claim_deliveries("d1", "me", limit=5, seconds=60, tried_before=T0),
    "claim_holders": lambda s, p: s.claim_holders("d1", "me"),
    "renew_claims": lambda s, p: s.renew_claims("d1", "me", 60),
    "ledger_now": lambda s, p: s.ledger_now(),
    "release_deliveries": lambda s, p: s.release_deliveries("d1", "me"),
    "record_delivery": lambda s, p: s.record_delivery("d1", 1, "sent"),
    "finish_digest": lambda s, p: s.finish_digest("d1"),
    "delivery_counts": lambda s, p: s.delivery_counts("d1"),
    "sent_digests": lambda s, p: s.sent_digests(1),
    "delivery_of_message": lambda s, p: s.delivery_of_message("<m1>"),
    "record_feedback": lambda s, p: s.record_feedback(1, "d1", "soft", "4.2.2 full", soft_limit=3, now=T0),
    "feedback_counts": lambda s, p: s.feedback_counts("d1"),
    "is_empty": lambda s, p: s.is_empty(),
    "dump": lambda s, p: [(table, list(rows)) for table, rows in s.dump()],
    "load": lambda s, p: s.load([]),  # not empty: refused
}


def test_the_trouble_suite_calls_every_method_of_the_contract() -> None:
    methods = {name for name, _ in inspect.getmembers(Contract, inspect.isfunction)}
    assert set(CALLS) == methods - {"__init__", "__subclasshook__", "_proto_hook", "__init_subclass__"}


def _furnish(backend: Backend, folder: Path) -> None:
    with backend.open(folder) as store:
        _furnish_store(store)


def _furnish_store(store: Store) -> None:
    _with_articles(store, 1)
    store.save_dropped([DroppedItem("x9", "s", "Dropped", None, "drop: x", "h9", T0)])
    store.save_page_validators([("https://x.org/0", '"e0"', "Mon, 02 Nov 2026 08:00:00 GMT")], now=T0)
    store.put_setting("k", "v")
    store.upsert_subscribers([SubscriberChange("ann@example.org", created=T0)])
    store.create_digest("d1", T0, [(1, T0, None)])
    store.enqueue_signup("ann@example.org", [], [], now=T0)
    store.add_sources(
        [AddedSource("w0", "https://w.example/", "feed", {"name": "w0", "url": "https://w.example/"})]
    )
    store.create_token("t0", "write", "h0")
    hook = store.add_webhook("https://h.example/0", ["article.new"], "k0")
    store.enqueue_events([QueuedEvent("m0", hook.url, "article.new", "{}", T0)])
    store.add_admin("root", "h")
    store.record_audit("root", "source.add", "w0", {"url": "https://w.example/"})


def _each_works_or_is_a_store_error(store: Store, folder: Path) -> dict[str, str]:
    outcomes = {}
    for name, call in CALLS.items():
        try:
            call(store, folder)
            outcomes[name] = "ok"
        except StoreError:
            outcomes[name] = "StoreError"
        # Anything else (sqlite3.Error above all) fails the test right here.
    return outcomes


def test_on_a_locked_database_every_method_works_or_raises_store_error(
    backend: Backend, tmp_path: Path
) -> None:
    _furnish(backend, tmp_path)
    with backend.open_impatient(tmp_path) as store, backend.locked(tmp_path):
        outcomes = _each_works_or_is_a_store_error(store, tmp_path)
    assert outcomes["put_setting"] == outcomes["save_articles"] == "StoreError"  # writes wait, then give up


def test_on_a_read_only_database_every_method_works_or_raises_store_error(
    backend: Backend, tmp_path: Path
) -> None:
    _furnish(backend, tmp_path)
    with backend.open_readonly(tmp_path) as store:
        outcomes = _each_works_or_is_a_store_error(store, tmp_path)
    assert outcomes["count_articles"] == "ok" and outcomes["put_setting"] == "StoreError"


def test_a_damaged_database_is_a_store_error_when_opened(backend: Backend, tmp_path: Path) -> None:
    _furnish(backend, tmp_path)
    backend.damage(tmp_path)
    with pytest.raises(StoreError, match="cannot open database"):
        backend.open(tmp_path)
