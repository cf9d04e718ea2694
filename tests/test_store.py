"""The SQLite store: pragmas, migrations, and errors for paths it cannot use."""

from __future__ import annotations

import gc
import sqlite3
import weakref
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.common.errors import StoreError
from digest.store import SourceSpec, SqliteStore, SubscriberChange, open_store
from digest.store.schema import MIGRATIONS


def test_pragmas_and_schema(tmp_path: Path) -> None:
    with open_store(tmp_path / "d.db") as store:
        conn = store.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"sources", "articles", "articles_fts", "migrations"} <= tables
        assert store.applied_migrations() == [name for name, _ in MIGRATIONS]


def test_migrations_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with open_store(path) as store:
        store.sync_sources([SourceSpec(kind="auto", name="s", url="http://x.org/f")])
    with open_store(path) as store:
        assert store.migrate() == []
        assert store.source_state("s").url == "http://x.org/f"


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    with open_store(tmp_path / "d.db") as store, pytest.raises(sqlite3.IntegrityError):
        store.conn.execute(
            "INSERT INTO articles (id, source_id, title, first_seen, updated, content_hash)"
            " VALUES ('a', 999, 't', 'x', 'x', 'h')"
        )


def test_a_changed_url_resets_fetch_state(tmp_path: Path) -> None:
    with open_store(tmp_path / "d.db") as store:
        store.sync_sources([SourceSpec(kind="auto", name="s", url="http://x.org/f")])
        store.record_fetch("s", status=200, error=None, etag='"e"', last_modified="yesterday")
        store.sync_sources([SourceSpec(kind="auto", name="s", url="http://x.org/f")])
        assert store.source_state("s").etag == '"e"'
        store.sync_sources([SourceSpec(kind="auto", name="s", url="http://y.org/f")])
        state = store.source_state("s")
    assert (state.url, state.etag, state.last_modified) == ("http://y.org/f", None, None)


def test_a_locked_database_is_a_store_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with open_store(path) as store:
        store.conn.execute("PRAGMA busy_timeout = 50")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreError, match="database is locked"):
                store.sync_sources([SourceSpec(kind="auto", name="s", url="http://x.org/f")])
        finally:
            other.execute("ROLLBACK")
            other.close()
        store.sync_sources([SourceSpec(kind="auto", name="s", url="http://x.org/f")])  # and it recovers
        assert store.source_state("s").url == "http://x.org/f"


def test_unusable_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"folder .* does not exist"):
        open_store(tmp_path / "missing" / "d.db")
    not_a_db = tmp_path / "text.db"
    not_a_db.write_text("this is not a database, just text " * 100)
    with pytest.raises(StoreError, match="cannot open database"):
        open_store(not_a_db)


def test_the_identity_migration_keeps_subscribers_ledgers_and_old_unsubscribe_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest.store.articles
    import digest.store.base
    from digest.common.dates import to_iso, utcnow
    from digest.subscribers.lifecycle import add, bindings, token
    from digest.subscribers.tokens import BadToken, read, secret_for

    path = tmp_path / "d.db"
    monkeypatch.setattr(digest.store.base, "MIGRATIONS", MIGRATIONS[:5])  # a database of the last release
    with open_store(path) as store:
        january = datetime(2026, 1, 1, tzinfo=UTC)
        for name, status in (("ann", "active"), ("bob", "active"), ("cid", "active"), ("pat", "pending")):
            store.upsert_subscribers(
                [SubscriberChange(f"{name}@example.org", status=status, created=january)]
            )
        ids = {r.email: r.id for r in store.subscribers()}
        secret = secret_for(store, None)
    with sqlite3.connect(path) as db:  # a ledger row in that release's columns
        db.execute(
            "INSERT INTO digests (id, created, until, status) VALUES ('d1', ?, ?, 'sending')",
            [to_iso(utcnow())] * 2,
        )
        db.execute(
            "INSERT INTO deliveries (digest_id, subscriber_id, since, status, updated)"
            " VALUES ('d1', ?, ?, 'pending', ?)",
            [ids["bob@example.org"], to_iso(january), to_iso(utcnow())],
        )
    db.close()
    monkeypatch.undo()
    # Links as the last release made them: signed, but bound to nothing but the id.
    old_unsubscribe = _v1_token(secret, {"p": "unsubscribe", "s": ids["bob@example.org"]})
    old_preferences = _v1_token(secret, {"p": "preferences", "s": ids["bob@example.org"]})
    with open_store(path) as store:
        assert {r.email: r.id for r in store.subscribers()} == ids
        assert (
            store.pending_deliveries("d1")[0].subscriber.email == "bob@example.org"
        )  # the ledger kept its rows
        assert (
            read(secret, old_unsubscribe, "unsubscribe", bindings(store, "unsubscribe"))
            == ids["bob@example.org"]
        )
        with pytest.raises(BadToken):
            read(secret, old_preferences, "preferences", bindings(store, "preferences"))
        # Someone who signed up before can still be sent a confirmation, and confirm with it.
        pat = store.subscriber(email="pat@example.org")
        assert pat is not None and pat.pending_since
        assert read(secret, token(secret, "confirm", pat), "confirm", bindings(store, "confirm")) == pat.id
        assert store.delete_subscriber("cid@example.org")
        newcomer = add(store, "dee@example.org", confirmed=True)
        assert newcomer.id > max(ids.values())  # never cid's id again
        # An old-style token for the newcomer's id is refused: such tokens never existed for them.
        with pytest.raises(BadToken):
            read(secret, _v1_token(secret, {"p": "unsubscribe", "s": newcomer.id}), "unsubscribe",
                 bindings(store, "unsubscribe"))  # fmt: skip


def _v1_token(secret: bytes, payload: dict[str, object]) -> str:
    """A token exactly as the release before bound tokens made it."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    body = b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())}"


def test_the_evidence_migration_keeps_what_classification_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import digest.store.articles
    import digest.store.base
    from digest.common.models import Article

    path = tmp_path / "d.db"
    monkeypatch.setattr(digest.store.base, "MIGRATIONS", MIGRATIONS[:10])  # evidence in the article row
    # The code of that release counted no changes (step 20 made the counter) and stored the
    # HTML of every text (step 25 lets it be NULL): writing with today's store there, so too.
    monkeypatch.setattr(digest.store.base.SqliteBase, "_changed", lambda self, tx: None)
    monkeypatch.setattr(digest.store.articles, "stored_html", lambda article: article.summary_html)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    places = [{"key": "LA", "name": "Laos", "region": "southeast-asia", "kind": "country", "title": 1,
               "lead": 0, "body": 2}]  # fmt: skip
    matches = {"trade": {"score": 2.0, "phrases": ["trade"]}}
    with open_store(path) as store:
        _released_source(store)  # (sync_sources now writes columns of step 26)
        store.save_articles(
            "s",
            [
                Article(
                    id=f"a{n}",
                    source="s",
                    title=f"T{n}",
                    url=f"https://s.example/{n}",
                    guid=None,
                    summary_html="<p>x</p>",
                    summary_text="x",
                    author=None,
                    published=None,
                    first_seen=when,
                    updated=when,
                    content_hash=f"h{n}",
                )
                for n in range(2)
            ],
            now=when,
        )
        store.conn.execute(
            "UPDATE articles SET places = ?, theme_matches = ?, grouped = 1 WHERE id = 'a0'",
            (json.dumps(places), json.dumps(matches)),
        )
        store.conn.commit()
    monkeypatch.undo()
    with open_store(path) as store:
        [evidence] = store.evidence("s")
        assert (evidence.id, list(evidence.places), evidence.theme_matches) == ("a0", places, matches)
        assert store.source_frequencies("s") == (1, {"LA": 1}, {"trade": 1})
        assert store.article("a0").places == tuple(places)  # type: ignore[union-attr]
        assert store.article("a1").places == () and [u.id for u in store.ungrouped()] == ["a1"]  # type: ignore[union-attr]


def test_the_search_index_is_rebuilt_with_the_one_tokenizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database of the last release (FTS5's own unicode61 index) is indexed anew by the
    one tokenizer: articles stored before are found by stem, and removing one keeps the
    index whole."""
    import dataclasses

    import digest.store.articles
    import digest.store.base
    from digest.common.models import Article
    from digest.common.query import parse

    path = tmp_path / "d.db"
    monkeypatch.setattr(digest.store.base, "MIGRATIONS", MIGRATIONS[:18])
    # The code of that release counted no changes (step 20 made the counter) and stored the
    # HTML of every text (step 25 lets it be NULL): writing with today's store there, so too.
    monkeypatch.setattr(digest.store.base.SqliteBase, "_changed", lambda self, tx: None)
    monkeypatch.setattr(digest.store.articles, "stored_html", lambda article: article.summary_html)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    base = Article(
        id="a0", source="s", title="Loan talks", url="https://s.example/0", guid=None, summary_html="",
        summary_text="The minister spoke of COVID-19.", author=None, published=None, first_seen=when,
        updated=when, content_hash="h0",
    )  # fmt: skip
    with open_store(path) as store:
        _released_source(store)  # (sync_sources now writes columns of step 26)
        store.save_articles(
            "s", [base, dataclasses.replace(base, id="a1", url="https://s.example/1")], now=when
        )
    monkeypatch.undo()
    with open_store(path) as store:
        assert "0019_search_tokens" in store.applied_migrations()
        assert {a.id for a in store.search(parse("ministers"))} == {"a0", "a1"}
        assert {a.id for a in store.search(parse("covid-19"))} == {"a0", "a1"}
        store.drop_articles([("a1", "drop: x")], now=when)  # the delete trigger feeds the index its tokens
        assert {a.id for a in store.search(parse("minister"))} == {"a0"}
        assert (
            store.conn.execute("INSERT INTO articles_fts(articles_fts) VALUES ('integrity-check')")
            is not None
        )


def test_a_store_dropped_unclosed_is_freed_with_its_connection(tmp_path: Path) -> None:
    # The connection's SQL clock functions once held the store itself: a store a finished
    # thread dropped unclosed (the web app's, the runner's) was never freed, nor its file.
    store = open_store(tmp_path / "d.db")
    assert store.lease_holder("x") is None  # the clock functions in use
    found = weakref.ref(store)
    del store
    gc.collect()
    assert found() is None


def test_html_that_is_only_the_texts_paragraphs_is_stored_once(tmp_path: Path) -> None:
    """Such HTML is NULL in article_texts (the text says it all); other HTML is kept."""
    from dataclasses import replace

    from digest.common.models import Article

    when = datetime(2026, 1, 1, tzinfo=UTC)
    plain = Article(
        id="a0", source="s", title="T", url="https://s.example/0", guid=None,
        summary_html="<p>One &amp; two.</p><p>Three.</p>", summary_text="One & two.\n\nThree.",
        author=None, published=None, first_seen=when, updated=when, content_hash="h0",
    )  # fmt: skip
    marked = replace(
        plain, id="a1", url="https://s.example/1", summary_html="<p>One &amp; <i>two</i>.</p><p>Three.</p>"
    )
    with open_store(tmp_path / "d.db") as store:
        store.sync_sources([SourceSpec("s", "https://s.example/feed", "feed")])
        store.save_articles("s", [plain, marked], now=when)
        raw = dict(store.conn.execute("SELECT article_id, summary_html FROM article_texts").fetchall())
        assert raw == {"a0": None, "a1": marked.summary_html}
        assert store.article("a0") == plain


def _released_source(store: SqliteStore) -> None:
    """Source "s", written as the code of an earlier step wrote it."""
    store.conn.execute(
        "INSERT INTO sources (name, url, fetch_url, kind, created, id_name)"
        " VALUES ('s', 'https://s.example/feed', 'https://s.example/feed', 'feed', '2026-01-01T00:00:00Z', 's')"
    )
