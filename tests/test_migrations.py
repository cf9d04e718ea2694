"""The SQLite schema run by sqlite-utils (digest.store.migrations): databases made by the
release before it (tests/data/db_b1fc283*.sql, dumps of files that commit's code made; their
first lines say how) open with nothing run again and end with the schema of a new database;
processes opening a new database at once apply each step once; a failing step leaves the
database as it was; steps and records read the store's clock; opening an up-to-date
database does not import sqlite_utils."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import digest.store.base
from digest.common.dates import to_iso, utcnow
from digest.common.errors import StoreError
from digest.common.query import parse
from digest.common.sanitize import paragraphs_html
from digest.store import SqliteStore, SubscriberChange, open_store
from digest.store.migrations import apply_pending
from digest.store.schema import MIGRATIONS

from .helpers import DATA, wait_for

RELEASED = DATA / "db_b1fc283.sql"  # all 19 steps, by the released code
RELEASED_0018 = DATA / "db_b1fc283_0018.sql"  # its first 18 steps only
NAMES = [name for name, _ in MIGRATIONS]
T1 = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
# What the released code kept that opening must leave as it was (the search index aside:
# 0019 rebuilds it; the records aside: they gain what is adopted or applied).
KEPT = ("sources", "articles", "article_texts", "article_evidence", "dropped", "stories", "subscribers",
        "signups", "digests", "deliveries", "settings", "leases", "rate_hits", "pages", "sqlite_sequence")  # fmt: skip


def _load(dump: Path, target: Path) -> Path:
    with closing(sqlite3.connect(target)) as db:
        db.executescript(dump.read_text())
    return target


def _rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return [tuple(r) for r in db.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid")]


def _plain(path: Path, table: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return [tuple(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]


def _normalised(sql: str | None) -> str:
    """CREATE text as SQLite reads it: no comments, quotes, case or layout."""
    sql = re.sub(r"--[^\n]*", "", sql or "")
    sql = re.sub(r"\s+", " ", re.sub(r'["`\[\]]', "", sql)).strip().lower()
    return re.sub(r"\s*([(),])\s*", r"\1", sql).replace("create table if not exists ", "create table ")


def _schema(path: Path) -> dict[tuple[str, str], Any]:
    """Every schema object: its normalised SQL and, for a table, what SQLite reports of its
    columns (type, NOT NULL, default, key), foreign keys and indexes (columns, collation,
    order, unique, partial)."""
    found: dict[tuple[str, str], Any] = {}
    with closing(sqlite3.connect(path)) as db:
        for kind, name, sql in db.execute("SELECT type, name, sql FROM sqlite_master").fetchall():
            found[(kind, name)] = _normalised(sql)
            if kind != "table" or (sql or "").startswith("CREATE VIRTUAL"):
                continue
            indexes = [tuple(i)[1:] for i in db.execute(f"PRAGMA index_list('{name}')")]
            found[("columns", name)] = [tuple(c) for c in db.execute(f"PRAGMA table_xinfo('{name}')")]
            found[("references", name)] = sorted(
                tuple(f) for f in db.execute(f"PRAGMA foreign_key_list('{name}')")
            )
            found[("indexes", name)] = sorted(
                (index, [tuple(c) for c in db.execute(f"PRAGMA index_xinfo('{index[0]}')")])
                for index in indexes
            )
    return found


def _fresh_schema(folder: Path) -> dict[tuple[str, str], Any]:
    folder.mkdir()
    open_store(folder / "d.db").close()
    return _schema(folder / "d.db")


@pytest.mark.parametrize("dump", [RELEASED, RELEASED_0018], ids=["at-0019", "at-0018"])
def test_a_database_of_the_release_before_opens_with_nothing_run_again(dump: Path, tmp_path: Path) -> None:
    path = _load(dump, tmp_path / "d.db")
    before = {table: _rows(path, table) for table in KEPT}
    records = _plain(path, "migrations")
    released = [name for _, name, _ in records]
    assert released == NAMES[: len(released)] and len(released) in (18, 19)

    with SqliteStore.open(path, clock=lambda: T1) as store:
        assert store.migrate() == []  # up to date once open
        assert store.applied_migrations() == NAMES
        tracked = store.conn.execute(
            "SELECT name, applied_at FROM _sqlite_migrations WHERE migration_set = 'digest' ORDER BY rowid"
        ).fetchall()
        assert [name for name, _ in tracked] == NAMES  # each once, in order
        # A row the released code wrote: the reader it added, found in another case.
        bob = store.subscriber(email="bob@EXAMPLE.ORG")
        assert bob is not None and bob.email == "Bob@example.org" and bob.status == "active"
        assert [a.title for a in store.search(parse("laos"))] == [
            "China and Laos designate 2026 as friendship year"
        ]
        store.conn.execute("INSERT INTO articles_fts (articles_fts) VALUES ('integrity-check')")
        newcomer = store.upsert_subscribers(
            [SubscriberChange("dee@example.org", status="active", created=T1)]
        )
        assert newcomer == (1, 0)
        dee = store.subscriber(email="dee@example.org")
        assert dee is not None and dee.id == 5  # never cid's 4, removed in the release before
        counted, kept = store.group_counts(), store.group_totals()  # 0021 counted what was there
        assert (kept.regions, kept.themes) == (counted.regions, counted.themes) and kept.regions
        assert store.count_articles() == len(store.articles()) > 0
        listed = [a.id for a in store.articles() if "southeast-asia" in a.regions]  # 0022 filed them
        assert [a.id for a in store.articles(region="southeast-asia")] == listed and listed

    after = _plain(path, "migrations")
    assert after[: len(records)] == records  # nothing the release applied ran again
    # what the release lacked, applied now, by the store's clock
    assert after[len(records) :] == [(n, name, to_iso(T1)) for n, name in enumerate(NAMES, 1)][len(records) :]
    assert [stamp for _, stamp in tracked] == [
        str(datetime.fromisoformat(a).astimezone(UTC)) for *_, a in after
    ]
    for table in KEPT:
        rows = _rows(path, table)
        if table == "subscribers":
            rows = [row for row in rows if row[2] != "dee@example.org"]
        if table == "sqlite_sequence":  # (0026: dee's activation is noted for the webhooks)
            rows = [
                row if row[1] != "subscribers" else (*row[:2], 4)
                for row in rows
                if row[1] != "subscriber_events"
            ]
        if table == "sources":  # 0026: every source then was the config file's, none paused
            assert {row[-2:] for row in rows} == {(None, None)}
            rows = [row[:-2] for row in rows]
        if table == "article_texts":  # 0025: HTML that is only the text's paragraphs is NULL
            assert sum(html is None for _, _, html, _ in rows) > len(rows) / 2
            rows = [
                (n, i, paragraphs_html(text) if html is None else html, text) for n, i, html, text in rows
            ]
        assert rows == before[table], table


def test_a_new_database_has_the_schema_of_one_made_by_the_release_before(tmp_path: Path) -> None:
    fresh = _fresh_schema(tmp_path / "new")
    for dump in (RELEASED, RELEASED_0018):
        path = _load(dump, tmp_path / f"{dump.stem}.db")
        released = _schema(path)
        open_store(path).close()
        migrated = _schema(path)
        assert migrated == fresh, dump.name
        added = {key for key in migrated if key not in released and key[0] in ("table", "index", "trigger")}
        expected = {
            ("table", "_sqlite_migrations"),
            ("index", "idx__sqlite_migrations_migration_set_name"),
            ("table", "changes"),  # 0020, after the release
            ("table", "group_totals"),  # 0021
            *(("trigger", f"group_totals_{event}") for event in ("ai", "ad", "au")),
            ("table", "article_groups"),  # 0022
            *(("trigger", f"article_groups_{event}") for event in ("ai", "ad", "au")),
            ("table", "source_frequencies"),  # 0023
            *(("trigger", f"source_frequencies_{e}") for e in ("ai", "au", "bd", "eai", "eau", "ead")),
            *(("table", name) for name in ("story_words", "story_keys", "story_frequencies")),  # 0024
            ("index", "sqlite_autoindex_story_words_1"),
            ("index", "story_keys_article"),
            *(
                ("table", name) for name in ("api_tokens", "webhooks", "webhook_events", "subscriber_events")
            ),  # 0026
            *(("trigger", f"subscriber_events_{e}") for e in ("ai", "au", "ad")),
            *(
                ("index", name)
                for name in ("api_tokens_name", "webhook_events_due", "webhook_events_created")
            ),
            ("index", "articles_source_recent"),
            *(("table", name) for name in ("admins", "sessions", "audit")),  # 0027
            *(("index", name) for name in ("sessions_admin", "audit_at", "sqlite_autoindex_admins_1")),
            ("index", "sqlite_autoindex_sessions_1"),
            *(
                ("index", f"sqlite_autoindex_{name}")
                for name in ("api_tokens_1", "webhooks_1", "webhook_events_1")
            ),
        }
        assert added == expected, dump.name  # all else the released code made already


@pytest.mark.parametrize("steps", [1, 5, 6, 9, 10, 11, 15, 18])
def test_a_database_left_at_any_step_ends_with_the_same_schema(
    steps: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = _fresh_schema(tmp_path / "new")
    path = tmp_path / "d.db"
    monkeypatch.setattr(digest.store.base, "MIGRATIONS", MIGRATIONS[:steps])
    open_store(path).close()
    monkeypatch.undo()
    with open_store(path) as store:
        assert store.applied_migrations() == NAMES
    assert _schema(path) == fresh


def test_the_text_rebuild_keeps_article_rowids_and_what_search_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0010 rebuilds the articles table (its texts move out): the search index names
    articles by rowid, so a gap left by a removed article must survive the rebuild."""
    path = tmp_path / "d.db"
    monkeypatch.setattr(digest.store.base, "MIGRATIONS", MIGRATIONS[:9])
    with open_store(path) as store:
        # (as the code of step 9 wrote it: sync_sources now also counts a change, in a
        # table of step 20)
        store.conn.execute(
            "INSERT INTO sources (name, url, fetch_url, kind, created)"
            " VALUES ('s', 'https://s.example/feed', 'https://s.example/feed', 'feed', ?)",
            [to_iso(T1)],
        )
        for n, word in enumerate(("lemur", "walrus", "pangolin")):
            store.conn.execute(
                "INSERT INTO articles (id, source_id, title, summary_html, summary_text, first_seen, updated,"
                " content_hash, grouped) VALUES (?, 1, ?, '', ?, ?, ?, 'h', 1)",
                [f"a{n}", f"About a {word}", f"The {word} text.", to_iso(T1), to_iso(T1)],
            )
        store.conn.execute("DELETE FROM articles WHERE id = 'a1'")  # rowid 2 is gone
        rowids = dict(store.conn.execute("SELECT id, rowid FROM articles").fetchall())
    monkeypatch.undo()
    with open_store(path) as store:
        assert (
            dict(store.conn.execute("SELECT id, rowid FROM articles").fetchall())
            == rowids
            == {"a0": 1, "a2": 3}
        )
        assert [a.id for a in store.search(parse("pangolin"))] == ["a2"]
        assert [a.id for a in store.search(parse("walrus"))] == []
        assert store.article("a0").summary_text == "The lemur text."  # type: ignore[union-attr]
        assert [u.id for u in store.ungrouped()] == []  # grouped kept its value through the rebuild
        store.conn.execute("INSERT INTO articles_fts (articles_fts) VALUES ('integrity-check')")


# Imports done, it says it is ready and waits for the word: then all open at once. It
# prints the steps it applied itself (what SqliteStore.open does, without forgetting them).
_OPENER = """
import sys, time
from pathlib import Path
from digest.store import SqliteStore
path, folder = Path(sys.argv[1]), Path(sys.argv[2])
(folder / f"ready-{sys.argv[3]}").touch()
while not (folder / "go").exists():
    time.sleep(0.001)
store = SqliteStore(SqliteStore.connect(path, timeout=60), path)
print(" ".join(store.migrate()))
"""


@pytest.mark.parametrize("wal_before", [True, False], ids=["empty-wal-file", "no-file"])
def test_processes_opening_a_new_database_at_once_apply_each_step_once(
    tmp_path: Path, wal_before: bool
) -> None:
    path = tmp_path / "d.db"
    # With an empty file already in WAL mode the openers meet in the migrations; with no file
    # they meet first in the switch of the new file to WAL, which SQLite refuses at once to
    # all but one of them (it was "database is locked" for some, the release before's too).
    if wal_before:
        with closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA journal_mode = WAL")
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, str(path), str(tmp_path), str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == 4, "four processes ready", seconds=60)
    (tmp_path / "go").touch()
    outputs = [opener.communicate(timeout=120)[0].split() for opener in openers]
    assert [opener.returncode for opener in openers] == [0, 0, 0, 0]
    assert sorted(name for output in outputs for name in output) == NAMES  # each applied once, by someone
    with closing(sqlite3.connect(path)) as db:
        assert [r[0] for r in db.execute("SELECT name FROM migrations ORDER BY id")] == NAMES
        tracked = db.execute("SELECT count(*), count(DISTINCT name) FROM _sqlite_migrations").fetchone()
        assert tracked == (len(NAMES), len(NAMES))


def test_a_step_applied_meanwhile_by_another_opener_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second opener finds the last step pending, waits for the write lock the first
    holds while applying it, then finds it applied: it runs nothing (a deferred BEGIN would
    fail here, its snapshot older than the first's commit)."""
    path = tmp_path / "d.db"
    monkeypatch.setattr(digest.store.base, "MIGRATIONS", MIGRATIONS[:-1])
    open_store(path).close()
    monkeypatch.undo()
    name, step = MIGRATIONS[-1]
    inside, release = threading.Event(), threading.Event()

    def held(db: Any) -> None:  # the step, its transaction kept open until released
        step(db)
        inside.set()
        release.wait(60)

    first: list[str] = []

    def open_first() -> None:
        with closing(SqliteStore.connect(path)) as conn:
            first.extend(apply_pending(conn, [*MIGRATIONS[:-1], (name, held)], utcnow))

    thread = threading.Thread(target=open_first)
    thread.start()
    try:
        assert inside.wait(60)
        threading.Timer(1.0, release.set).start()
        with SqliteStore(SqliteStore.connect(path), path) as second:
            assert second.migrate() == []
            assert second.applied_migrations() == NAMES
    finally:
        release.set()
        thread.join(60)
    assert first == [name]
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM _sqlite_migrations WHERE name = ?", [name]).fetchone()[0] == 1


def _breaks_references(db: Any) -> None:
    db.execute("CREATE TABLE extra (x INTEGER)")
    db.execute(
        "INSERT INTO articles (id, source_id, title, first_seen, updated, content_hash)"
        " VALUES ('orphan', 999, 't', 'x', 'x', 'h')"
    )


def _fails(db: Any) -> None:
    db.execute("CREATE TABLE extra (x INTEGER)")
    db.execute("INSERT INTO no_such_table VALUES (1)")


@pytest.mark.parametrize(
    ("step", "message"), [(_breaks_references, "would break references"), (_fails, "no such table")]
)
def test_a_failing_step_leaves_the_database_as_it_was(
    step: Any, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "d.db"
    open_store(path).close()
    objects = _schema(path)
    monkeypatch.setattr(digest.store.base, "MIGRATIONS", [*MIGRATIONS, ("9999_next", step)])
    with pytest.raises(StoreError, match=message):
        open_store(path)
    with SqliteStore(SqliteStore.connect(path), path) as store:
        with pytest.raises(StoreError, match=message):
            store.migrate()
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1  # on again after it
        assert store.conn.execute("SELECT count(*) FROM articles").fetchone()[0] == 0
    assert _schema(path) == objects  # no table extra, no record of 9999 in either record
    monkeypatch.undo()
    with open_store(path) as store:
        assert store.applied_migrations() == NAMES


def test_steps_and_both_records_read_the_store_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.db"
    monkeypatch.setattr(digest.store.base, "MIGRATIONS", MIGRATIONS[:6])
    SqliteStore.open(path, clock=lambda: datetime(2020, 1, 1, tzinfo=UTC)).close()
    monkeypatch.undo()
    with SqliteStore.open(path, clock=lambda: T1) as store:
        # 0007 stamps when tokens became bound; 0008 compares published dates with now.
        bound = store.conn.execute("SELECT value FROM settings WHERE key = 'tokens_bound_since'").fetchone()
        assert bound[0] == to_iso(T1)
        stamps = store.conn.execute("SELECT name, applied FROM migrations WHERE id > 6").fetchall()
        tracked = store.conn.execute(
            "SELECT name, applied_at FROM _sqlite_migrations WHERE rowid > 6"
        ).fetchall()
    assert {applied for _, applied in stamps} == {to_iso(T1)} and len(stamps) == len(NAMES) - 6
    assert {applied for _, applied in tracked} == {str(T1)}
    assert [name for name, _ in tracked] == [name for name, _ in stamps]


def test_a_record_removed_by_hand_runs_its_step_again(tmp_path: Path) -> None:
    """``migrations`` decides: a step missing there runs again, and whatever sqlite-utils'
    record lacks is copied into it then (without running that step)."""
    path = tmp_path / "d.db"
    open_store(path).close()
    six, nine = "0006_web_links_only", "0009_source_lifecycle"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM migrations WHERE name = ?", [six])
        db.execute("DELETE FROM _sqlite_migrations WHERE name = ?", [nine])
        [(stamp,)] = db.execute("SELECT applied FROM migrations WHERE name = ?", [nine]).fetchall()
    with SqliteStore.open(path, clock=lambda: T1) as store:
        assert store.applied_migrations() == NAMES
        tracked = dict(store.conn.execute("SELECT name, applied_at FROM _sqlite_migrations").fetchall())
        applied = dict(store.conn.execute("SELECT name, applied FROM migrations").fetchall())
    assert sorted(tracked) == NAMES
    assert (tracked[six], applied[six]) == (str(T1), to_iso(T1))  # run again
    assert (tracked[nine], applied[nine]) == (str(datetime.fromisoformat(stamp)), stamp)  # not run


_IMPORTS = """
import sys
from digest.store import open_store
open_store(sys.argv[1]).close()
print("sqlite_utils" in sys.modules)
"""


def test_opening_an_up_to_date_database_does_not_load_sqlite_utils(tmp_path: Path) -> None:
    path = str(tmp_path / "d.db")

    def loaded() -> str:
        done = subprocess.run(
            [sys.executable, "-c", _IMPORTS, path], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert loaded() == "True"  # a new database: its steps run with sqlite-utils
    assert loaded() == "False"  # then up to date: one plain query, no sqlite_utils


def test_a_database_made_by_a_newer_release_is_refused_in_one_line_and_left_alone(tmp_path: Path) -> None:
    from .helpers import run

    assert run("pull", cwd=tmp_path).returncode == 0
    database = tmp_path / "digest.db"
    with closing(sqlite3.connect(database)) as db, db:
        db.execute(
            "INSERT INTO migrations (id, name, applied) VALUES (?, '0099_from_a_later_release', ?)",
            [len(MIGRATIONS) + 1, to_iso(utcnow())],
        )
    before = database.read_bytes()
    for command in ("pull", "status", "articles"):
        refused = run(command, cwd=tmp_path)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert refused.stderr.strip().splitlines() == [
            f"digest: error: {database}: cannot open database: made by a newer release of digest (its schema has step"
            f" {len(MIGRATIONS) + 1}, 0099_from_a_later_release, unknown to this one): upgrade digest,"
            " or open a backup made before"
        ]
    assert database.read_bytes() == before
