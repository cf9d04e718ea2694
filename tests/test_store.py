"""The SQLite store: pragmas, migrations, and errors for paths it cannot use."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from digest.config import SourceSettings
from digest.errors import StoreError
from digest.store import MIGRATIONS, Store


def test_pragmas_and_schema(tmp_path: Path) -> None:
    with Store.open(tmp_path / "d.db") as store:
        conn = store.db.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        tables = set(store.db.table_names())
        assert {"sources", "articles", "articles_fts", "migrations"} <= tables
        assert store.applied_migrations() == [name for name, _ in MIGRATIONS]


def test_migrations_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with Store.open(path) as store:
        store.sync_sources([SourceSettings(name="s", url="http://x.org/f")])
    with Store.open(path) as store:
        assert store.migrate() == []
        assert store.source_state("s").url == "http://x.org/f"


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    with Store.open(tmp_path / "d.db") as store, pytest.raises(sqlite3.IntegrityError):
        store.db.execute(
            "INSERT INTO articles (id, source_id, title, summary_html, summary_text, first_seen, updated,"
            " content_hash) VALUES ('a', 999, 't', '', '', 'x', 'x', 'h')"
        )


def test_a_changed_url_resets_fetch_state(tmp_path: Path) -> None:
    with Store.open(tmp_path / "d.db") as store:
        store.sync_sources([SourceSettings(name="s", url="http://x.org/f")])
        store.record_fetch("s", status=200, error=None, etag='"e"', last_modified="yesterday")
        store.sync_sources([SourceSettings(name="s", url="http://x.org/f")])
        assert store.source_state("s").etag == '"e"'
        store.sync_sources([SourceSettings(name="s", url="http://y.org/f")])
        state = store.source_state("s")
    assert (state.url, state.etag, state.last_modified) == ("http://y.org/f", None, None)


def test_a_locked_database_is_a_store_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with Store.open(path) as store:
        store.db.conn.execute("PRAGMA busy_timeout = 50")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreError, match="database is locked"):
                store.sync_sources([SourceSettings(name="s", url="http://x.org/f")])
        finally:
            other.execute("ROLLBACK")
            other.close()
        store.sync_sources([SourceSettings(name="s", url="http://x.org/f")])  # and it recovers
        assert store.source_state("s").url == "http://x.org/f"


def test_unusable_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"folder .* does not exist"):
        Store.open(tmp_path / "missing" / "d.db")
    not_a_db = tmp_path / "text.db"
    not_a_db.write_text("this is not a database, just text " * 100)
    with pytest.raises(StoreError, match="cannot open database"):
        Store.open(not_a_db)
