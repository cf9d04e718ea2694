"""The SQLite store: schema, migrations and every query digest makes (the only module with SQL)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from digest import redact
from digest.config import SourceSettings
from digest.dates import from_iso, to_iso, utcnow
from digest.errors import StoreError
from digest.models import Article, SourceState

BUSY_TIMEOUT_MS = 10_000
_ARTICLE_SELECT = "SELECT a.*, s.name AS source FROM articles a JOIN sources s ON s.id = a.source_id"
# SQLite errors that come from the file or its surroundings, not from our SQL.
_ENVIRONMENTAL = re.compile(r"locked|busy|readonly|read-only|disk|unable to open|full|permission", re.I)


def _initial(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE sources (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            url TEXT NOT NULL,
            fetch_url TEXT NOT NULL,
            kind TEXT NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1, -- 0 once the server answered 410 Gone
            etag TEXT,
            last_modified TEXT,
            last_status INTEGER,
            last_error TEXT,
            last_fetched TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            next_fetch TEXT,
            created TEXT NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE articles (
            id TEXT PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            guid TEXT,
            url TEXT,
            title TEXT NOT NULL,
            summary_html TEXT NOT NULL,
            summary_text TEXT NOT NULL,
            author TEXT,
            published TEXT,
            first_seen TEXT NOT NULL,
            updated TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            regions TEXT NOT NULL DEFAULT '[]',
            themes TEXT NOT NULL DEFAULT '[]',
            story TEXT
        )"""
    )
    db.execute("CREATE INDEX articles_url ON articles(url)")
    db.execute("CREATE INDEX articles_source ON articles(source_id)")
    db.execute("CREATE INDEX articles_first_seen ON articles(first_seen)")
    # External-content FTS5 index kept in step by triggers, so a search never sees stale text.
    db.execute(
        "CREATE VIRTUAL TABLE articles_fts USING fts5(title, summary_text, content='articles',"
        " content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')"
    )
    db.execute(
        "CREATE TRIGGER articles_ai AFTER INSERT ON articles BEGIN"
        " INSERT INTO articles_fts (rowid, title, summary_text)"
        " VALUES (new.rowid, new.title, new.summary_text); END"
    )
    db.execute(
        "CREATE TRIGGER articles_ad AFTER DELETE ON articles BEGIN"
        " INSERT INTO articles_fts (articles_fts, rowid, title, summary_text)"
        " VALUES ('delete', old.rowid, old.title, old.summary_text); END"
    )
    db.execute(
        "CREATE TRIGGER articles_au AFTER UPDATE OF title, summary_text ON articles BEGIN"
        " INSERT INTO articles_fts (articles_fts, rowid, title, summary_text)"
        " VALUES ('delete', old.rowid, old.title, old.summary_text);"
        " INSERT INTO articles_fts (rowid, title, summary_text)"
        " VALUES (new.rowid, new.title, new.summary_text); END"
    )


def _grouping(db: sqlite_utils.Database) -> None:
    # places / theme_matches: the evidence behind regions and themes; grouped = 0 marks
    # articles whose text has not been classified since it last changed.
    db.execute("ALTER TABLE articles ADD COLUMN places TEXT NOT NULL DEFAULT '[]'")
    db.execute("ALTER TABLE articles ADD COLUMN theme_matches TEXT NOT NULL DEFAULT '{}'")
    db.execute("ALTER TABLE articles ADD COLUMN grouped INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX articles_grouped ON articles(grouped) WHERE grouped = 0")
    db.execute("CREATE INDEX articles_story ON articles(story)")
    db.execute(
        """
        CREATE TABLE stories (
            id TEXT PRIMARY KEY,
            label TEXT NOT NULL,
            articles INTEGER NOT NULL,
            first_seen TEXT NOT NULL,
            updated TEXT NOT NULL
        )"""
    )


def _recent_index(db: sqlite_utils.Database) -> None:
    # Lists are newest first by this expression; indexing it lets "the newest 50 of a
    # region" stop after 50 rows instead of sorting every article.
    db.execute("CREATE INDEX articles_recent ON articles(coalesce(published, first_seen) DESC)")


def _mail(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE subscribers (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced')),
            regions TEXT NOT NULL DEFAULT '[]',
            themes TEXT NOT NULL DEFAULT '[]',
            created TEXT NOT NULL,
            confirmed TEXT,
            unsubscribed TEXT,
            bounces INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute(
        """
        CREATE TABLE digests (
            id TEXT PRIMARY KEY,
            created TEXT NOT NULL,
            until TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('sending', 'done'))
        )"""
    )
    # The delivery ledger: one row per (digest, subscriber), written before the SMTP
    # transaction (pending) and right after it (sent or failed).
    db.execute(
        """
        CREATE TABLE deliveries (
            digest_id TEXT NOT NULL REFERENCES digests(id),
            subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
            since TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            message_id TEXT,
            reply TEXT,
            updated TEXT NOT NULL,
            PRIMARY KEY (digest_id, subscriber_id)
        )"""
    )
    db.execute("CREATE INDEX deliveries_pending ON deliveries(status) WHERE status = 'pending'")
    db.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _leases(db: sqlite_utils.Database) -> None:
    # A lease lets one of several `digest run` processes on a database do a job (send the
    # digest); it expires, so a crashed holder does not block the others for ever.
    db.execute("CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires TEXT NOT NULL)")


def _web_links_only(db: sqlite_utils.Database) -> None:
    # Earlier versions stored any scheme (javascript:, data:, file:); only web links are kept.
    db.execute(
        "UPDATE articles SET url = NULL WHERE url IS NOT NULL"
        " AND lower(substr(url, 1, 7)) != 'http://' AND lower(substr(url, 1, 8)) != 'https://'"
    )


def _subscriber_identity(db: sqlite_utils.Database) -> None:
    # AUTOINCREMENT: from now on a removed subscriber's id is never given to anyone else (ids
    # removed before this migration cannot be known; tokens are bound anyway). pending_since:
    # when the current sign-up began; confirmation links are bound to it. signups: the web
    # form's requests, handled after the answer (the same answer for every address).
    # Rebuilt as SQLite's ALTER TABLE procedure says, with foreign keys off (see migrate).
    db.execute(
        """
        CREATE TABLE subscribers_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced')),
            regions TEXT NOT NULL DEFAULT '[]',
            themes TEXT NOT NULL DEFAULT '[]',
            created TEXT NOT NULL,
            confirmed TEXT,
            unsubscribed TEXT,
            bounces INTEGER NOT NULL DEFAULT 0,
            pending_since TEXT
        )"""
    )
    db.execute(
        "INSERT INTO subscribers_new (id, email, status, regions, themes, created, confirmed, unsubscribed,"
        " bounces) SELECT id, email, status, regions, themes, created, confirmed, unsubscribed, bounces"
        " FROM subscribers"
    )
    db.execute("UPDATE subscribers_new SET pending_since = created WHERE status = 'pending'")
    db.execute("DROP TABLE subscribers")
    db.execute("ALTER TABLE subscribers_new RENAME TO subscribers")
    db.execute(
        """
        CREATE TABLE signups (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            email TEXT NOT NULL,
            regions TEXT NOT NULL DEFAULT '[]',
            themes TEXT NOT NULL DEFAULT '[]',
            created TEXT NOT NULL,
            subscriber_id INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_try TEXT NOT NULL,
            last_error TEXT
        )"""
    )
    db.execute("CREATE INDEX signups_due ON signups(next_try)")
    # Links made before tokens were bound stay good for unsubscribing the people who had them.
    db.execute(
        "INSERT OR REPLACE INTO settings (key, value) VALUES ('tokens_bound_since', ?)", [to_iso(utcnow())]
    )


def _plausible_dates(db: sqlite_utils.Database) -> None:
    # Dates no publication can have (year 1, year 9999) were stored as published dates and
    # broke grouping and feed order; they are dropped, as ingestion now drops them.
    latest = to_iso(utcnow() + timedelta(days=1))
    db.execute(
        "UPDATE articles SET published = NULL, grouped = 0 WHERE published < '1990-01-01' OR published > ?",
        [latest],
    )
    db.execute(
        "UPDATE articles SET updated = coalesce(published, first_seen) WHERE updated < '1990-01-01'"
        " OR updated > ?",
        [latest],
    )


def _source_lifecycle(db: sqlite_utils.Database) -> None:
    # removed: when the source left the configuration (its articles stay). id_name: the name
    # its article ids were made with, kept through a rename so ids (and feed entries) stay.
    db.execute("ALTER TABLE sources ADD COLUMN removed TEXT")
    db.execute("ALTER TABLE sources ADD COLUMN id_name TEXT")
    db.execute("UPDATE sources SET id_name = name")


# Append-only: a released migration is never edited, a change is a new entry.
MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("0001_initial", _initial),
    ("0002_grouping", _grouping),
    ("0003_recent_index", _recent_index),
    ("0004_mail", _mail),
    ("0005_leases", _leases),
    ("0006_web_links_only", _web_links_only),
    ("0007_subscriber_identity", _subscriber_identity),
    ("0008_plausible_dates", _plausible_dates),
    ("0009_source_lifecycle", _source_lifecycle),
]


@dataclass(frozen=True)
class SaveCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


class Store:
    """A digest database: open it with :meth:`open`, which applies pending migrations."""

    def __init__(self, db: sqlite_utils.Database, path: Path | None) -> None:
        self.db = db
        self.path = path

    @classmethod
    def open(cls, path: Path | str, *, shared: bool = False) -> Store:
        """Open (creating if needed) the database at ``path`` and bring its schema up to date.
        ``shared``: the connection may be used from several threads (the caller serialises)."""
        location = Path(path)
        if str(path) != ":memory:":
            if not location.parent.is_dir():
                raise StoreError(f"{location}: cannot open database: folder {location.parent} does not exist")
            _owner_only(location)
        try:
            conn = sqlite3.connect(
                str(location),
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=not shared,
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            store = cls(sqlite_utils.Database(conn), None if str(path) == ":memory:" else location)
            store.migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{location}: cannot open database: {exc}") from None
        return store

    def backup(self, target: Path) -> None:
        """A consistent copy of the database at ``target`` (SQLite online backup: writers
        may keep writing meanwhile)."""
        if target.exists():
            raise StoreError(f"{target}: already exists; choose a new file for the backup")
        try:
            _owner_only(target)
            copy = sqlite3.connect(str(target))
            with copy:
                self.db.conn.backup(copy)
            copy.close()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{target}: backup failed: {exc}") from None

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction (BEGIN IMMEDIATE, so writers queue instead of failing)."""
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if not _ENVIRONMENTAL.search(str(exc)):
                raise  # a bug in a query, not a problem with the file: let it show
            raise StoreError(f"{self.path or ':memory:'}: {exc}") from None

    # --- schema --------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the migrations this database has not seen; return their names."""
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS migrations"
            " (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)"
        )
        done = {row[0] for row in self.db.execute("SELECT id FROM migrations").fetchall()}
        applied: list[str] = []
        pending = [(n, m) for n, m in enumerate(MIGRATIONS, start=1) if n not in done]
        if not pending:
            return applied
        # Rebuilding a table that others reference needs foreign keys off (it cannot change
        # inside a transaction); each migration is checked for broken references before commit.
        self.db.execute("PRAGMA foreign_keys = OFF")
        try:
            for number, (name, step) in pending:
                with self.transaction() as conn:
                    if conn.execute("SELECT 1 FROM migrations WHERE id = ?", [number]).fetchone():
                        continue  # another process applied it meanwhile
                    step(self.db)
                    broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StoreError(f"migration {name} would break references: {broken[:3]}")
                    conn.execute(
                        "INSERT INTO migrations (id, name, applied) VALUES (?, ?, ?)",
                        (number, name, to_iso(utcnow())),
                    )
                applied.append(name)
        finally:
            self.db.execute("PRAGMA foreign_keys = ON")
        return applied

    def applied_migrations(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT name FROM migrations ORDER BY id")]

    # --- sources -------------------------------------------------------------------------

    def sync_sources(self, sources: Iterable[SourceSettings]) -> None:
        """Make the sources table match the configuration; a changed URL resets fetch state."""
        now = to_iso(utcnow())
        with self.transaction() as conn:
            for source in sources:
                row = conn.execute("SELECT url, kind FROM sources WHERE name = ?", (source.name,)).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO sources (name, url, fetch_url, kind, created, id_name)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (source.name, source.url, source.url, source.kind, now, source.name),
                    )
                elif row[0] != source.url or row[1] != source.kind:
                    conn.execute(
                        "UPDATE sources SET url = ?, fetch_url = ?, kind = ?, enabled = 1, etag = NULL,"
                        " last_modified = NULL, consecutive_failures = 0, next_fetch = NULL,"
                        " last_error = NULL WHERE name = ?",
                        (source.url, source.url, source.kind, source.name),
                    )

    def retire_sources(self, configured: Iterable[str]) -> None:
        """Mark sources no longer in the configuration as removed (their articles stay), and
        those back in it as present."""
        names = list(configured)
        marks = ",".join("?" * len(names)) or "''"
        with self.transaction() as conn:
            conn.execute(
                "UPDATE sources SET removed = ?, next_fetch = NULL"
                f" WHERE removed IS NULL AND name NOT IN ({marks})",
                [to_iso(utcnow()), *names],
            )
            conn.execute(f"UPDATE sources SET removed = NULL WHERE name IN ({marks})", names)

    def rename_source(self, old: str, new: str) -> None:
        """Give a source a new name, keeping its articles and their ids. A source already
        called ``new`` may exist only if it has no articles yet (a config edited first)."""
        with self.transaction() as conn:
            self._source_id(conn, old)
            clash = conn.execute(
                "SELECT s.id, (SELECT count(*) FROM articles a WHERE a.source_id = s.id) FROM sources s"
                " WHERE s.name = ?",
                [new],
            ).fetchone()
            if clash is not None and clash[1]:
                raise StoreError(
                    f"a source called {new!r} already has {clash[1]} articles; choose another name"
                )
            if clash is not None:
                conn.execute("DELETE FROM sources WHERE id = ?", [clash[0]])
            conn.execute("UPDATE sources SET name = ?, removed = NULL WHERE name = ?", (new, old))

    def source_state(self, name: str) -> SourceState:
        row = self._one("SELECT * FROM sources WHERE name = ?", (name,))
        if row is None:
            raise StoreError(f"no source named {name!r} in the database")
        return SourceState(
            name=row["name"],
            id_name=row["id_name"] or row["name"],
            url=row["fetch_url"],
            kind=row["kind"],
            enabled=bool(row["enabled"]),
            etag=row["etag"],
            last_modified=row["last_modified"],
            last_status=row["last_status"],
            last_error=row["last_error"],
            last_fetched=_dt(row["last_fetched"]),
            consecutive_failures=row["consecutive_failures"],
            next_fetch=_dt(row["next_fetch"]),
        )

    def record_fetch(
        self,
        name: str,
        *,
        status: int | None,
        error: str | None,
        etag: str | None = None,
        last_modified: str | None = None,
        fetch_url: str | None = None,
        next_fetch: datetime | None = None,
        disable: bool = False,
        keep_validators: bool = False,
    ) -> None:
        """Remember how a fetch went: validators for the next conditional GET, failures, when to retry."""
        sets = ["last_status = ?", "last_error = ?", "last_fetched = ?", "next_fetch = ?"]
        args: list[Any] = [
            status,
            redact.text(error) if error else None,  # shown by `digest status` and /healthz
            to_iso(utcnow()),
            to_iso(next_fetch) if next_fetch else None,
        ]
        sets.append(
            "consecutive_failures = consecutive_failures + 1" if error else "consecutive_failures = 0"
        )
        if not keep_validators:
            sets += ["etag = ?", "last_modified = ?"]
            args += [etag, last_modified]
        if fetch_url:
            sets.append("fetch_url = ?")
            args.append(fetch_url)
        if disable:
            sets.append("enabled = 0")
        elif not error:
            sets.append("enabled = 1")
        with self.transaction() as conn:
            conn.execute(f"UPDATE sources SET {', '.join(sets)} WHERE name = ?", (*args, name))

    def source_urls(self) -> dict[str, str]:
        """Source name → the URL it is fetched from now."""
        return dict(self.db.execute("SELECT name, fetch_url FROM sources").fetchall())

    def source_rows(self) -> list[dict[str, Any]]:
        """Every source with its fetch state and article count."""
        return list(
            self.db.query(
                "SELECT s.*, (SELECT count(*) FROM articles a WHERE a.source_id = s.id) AS articles"
                " FROM sources s ORDER BY s.name"
            )
        )

    # --- articles ------------------------------------------------------------------------

    def save_articles(self, source: str, articles: Sequence[Article], *, now: datetime) -> SaveCounts:
        """Insert new articles and update changed ones in one transaction; ``first_seen`` of an
        existing article never changes, an update is dated ``now``. An article whose URL is
        already stored (from any source) is the same article."""
        new = updated = unchanged = 0
        with self.transaction() as conn:
            source_id = self._source_id(conn, source)
            by_id = self._existing(conn, "id", [a.id for a in articles])
            by_url = self._existing(conn, "url", [a.url for a in articles if a.url])
            seen: set[str] = set()
            inserts: list[tuple[Any, ...]] = []
            for article in articles:
                row = by_id.get(article.id) or (by_url.get(article.url) if article.url else None)
                key = row["id"] if row else article.id
                if key in seen:
                    continue
                seen.add(key)
                if row is None:
                    inserts.append(_article_values(article, source_id))
                    if article.url:
                        by_url[article.url] = {
                            "id": article.id,
                            "content_hash": article.content_hash,
                            "source_id": source_id,
                        }
                    new += 1
                elif row["content_hash"] == article.content_hash or row["source_id"] != source_id:
                    # The same link from another source is that source's article: the first
                    # source to store it keeps it, or the row would flip between them.
                    unchanged += 1
                else:
                    conn.execute(
                        f"UPDATE articles SET {', '.join(f'{c} = ?' for c in _CONTENT_COLUMNS)},"
                        " updated = ?, content_hash = ?, grouped = 0 WHERE id = ?",
                        (*_content_values(article), to_iso(now), article.content_hash, key),
                    )
                    updated += 1
            conn.executemany(
                f"INSERT INTO articles (id, source_id, {', '.join(_CONTENT_COLUMNS)},"
                " first_seen, updated, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                inserts,
            )
        return SaveCounts(new, updated, unchanged)

    def articles(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        region: str | None = None,
        theme: str | None = None,
        source: str | None = None,
        limit: int | None = None,
    ) -> list[Article]:
        """Stored articles, newest first (by published date, else first seen; ties in the
        order they were stored). ``since`` and ``until`` select by ``first_seen``, the time
        digest first stored them: ``since <= first_seen < until``, so consecutive windows
        never share or skip an article."""
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        if since is not None:
            where.append("a.first_seen >= ?")
            args.append(to_iso(since))
        if until is not None:
            where.append("a.first_seen < ?")
            args.append(to_iso(until))
        if region is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(a.regions) WHERE value = ?)")
            args.append(region)
        if theme is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(a.themes) WHERE value = ?)")
            args.append(theme)
        if source is not None:
            where.append("s.name = ?")
            args.append(source)
        sql = (
            f"{_ARTICLE_SELECT} WHERE {' AND '.join(where)}"
            " ORDER BY coalesce(a.published, a.first_seen) DESC, a.rowid ASC"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_article(row) for row in self.db.query(sql, args)]

    def search(self, query: str, *, limit: int = 20) -> list[Article]:
        """Full-text search over titles and text, best match first."""
        sql = (
            "SELECT a.*, s.name AS source FROM articles_fts f"
            " JOIN articles a ON a.rowid = f.rowid JOIN sources s ON s.id = a.source_id"
            " WHERE articles_fts MATCH ? ORDER BY rank LIMIT ?"
        )
        try:
            return [_article(row) for row in self.db.query(sql, [query, limit])]
        except sqlite3.OperationalError as exc:
            raise StoreError(f"search {query!r}: {exc}") from None

    def article(self, article_id: str) -> Article | None:
        """One article by id."""
        row = self._one(f"{_ARTICLE_SELECT} WHERE a.id = ?", [article_id])
        return _article(row) if row else None

    def data_version(self) -> int:
        """A number that changes whenever another connection commits (PRAGMA data_version)."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def count_articles(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM articles").fetchone()[0])

    # --- grouping ------------------------------------------------------------------------

    def ungrouped(self) -> list[dict[str, Any]]:
        """Articles whose text has not been classified since it last changed."""
        return list(
            self.db.query(
                "SELECT a.id, s.name AS source, a.title, a.summary_text, a.first_seen FROM articles a"
                " JOIN sources s ON s.id = a.source_id WHERE a.grouped = 0"
            )
        )

    def mark_ungrouped(self) -> None:
        """Have every article classified again (after a vocabulary change)."""
        with self.transaction() as conn:
            conn.execute("UPDATE articles SET grouped = 0")

    def save_evidence(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Store (places JSON, theme matches JSON, article id) and mark the articles grouped."""
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE articles SET places = ?, theme_matches = ?, grouped = 1 WHERE id = ?", rows
            )

    def source_frequencies(self, source: str) -> tuple[int, dict[str, int], dict[str, int]]:
        """For one source: its article count, and in how many of its articles each place
        (by key) and each theme is found."""
        source_id = self._source_id(self.db.conn, source)
        total = self.db.execute("SELECT count(*) FROM articles WHERE source_id = ?", [source_id]).fetchone()[
            0
        ]
        places = dict(
            self.db.execute(
                "SELECT p.value ->> 'key', count(DISTINCT a.id) FROM articles a, json_each(a.places) p"
                " WHERE a.source_id = ? GROUP BY 1",
                [source_id],
            ).fetchall()
        )
        themes = dict(
            self.db.execute(
                "SELECT t.key, count(*) FROM articles a, json_each(a.theme_matches) t"
                " WHERE a.source_id = ? GROUP BY 1",
                [source_id],
            ).fetchall()
        )
        return int(total), places, themes

    def evidence(self, source: str, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Stored places and theme matches of a source's articles (all, or those in ``ids``)."""
        sql = (
            "SELECT a.id, a.places, a.theme_matches FROM articles a JOIN sources s ON s.id = a.source_id"
            " WHERE s.name = ?"
        )
        if ids is None:
            return list(self.db.query(sql, [source]))
        found: list[dict[str, Any]] = []
        for chunk, marks in _in_chunks(ids):
            found.extend(self.db.query(f"{sql} AND a.id IN ({marks})", [source, *chunk]))
        return found

    def set_groups(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Store (regions JSON, themes JSON, article id)."""
        with self.transaction() as conn:
            conn.executemany("UPDATE articles SET regions = ?, themes = ? WHERE id = ?", rows)

    def story_inputs(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """What story clustering reads, for articles first seen at or after ``since``."""
        sql = (
            "SELECT a.id, s.name AS source, a.title, a.summary_text, a.published, a.first_seen, a.places"
            " FROM articles a JOIN sources s ON s.id = a.source_id"
        )
        args: list[Any] = []
        if since is not None:
            sql += " WHERE a.first_seen >= ?"
            args.append(to_iso(since))
        return list(self.db.query(sql + " ORDER BY a.first_seen, a.id", args))

    def save_stories(
        self, article_ids: Sequence[str], stories: Iterable[tuple[str, str, Sequence[str]]]
    ) -> None:
        """Replace the stories of ``article_ids`` with ``stories`` (id, label, member ids)."""
        now = to_iso(utcnow())
        with self.transaction() as conn:
            for chunk, marks in _in_chunks(article_ids):
                conn.execute(f"UPDATE articles SET story = NULL WHERE id IN ({marks})", chunk)
            for story_id, label, members in stories:
                marks = ",".join("?" * len(members))
                conn.executemany(
                    "UPDATE articles SET story = ? WHERE id = ?", [(story_id, m) for m in members]
                )
                first = conn.execute(
                    f"SELECT min(first_seen) FROM articles WHERE id IN ({marks})", list(members)
                ).fetchone()[0]
                conn.execute(
                    "INSERT INTO stories (id, label, articles, first_seen, updated) VALUES (?, ?, 0, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET label = excluded.label, updated = excluded.updated",
                    (story_id, label, first, now),
                )
            # Counts from the articles themselves, so stories split or merged elsewhere stay right.
            conn.execute(
                "UPDATE stories SET articles = (SELECT count(*) FROM articles a WHERE a.story = stories.id)"
            )
            conn.execute("DELETE FROM stories WHERE articles < 2")
            conn.execute(
                "UPDATE articles SET story = NULL WHERE story IS NOT NULL"
                " AND story NOT IN (SELECT id FROM stories)"
            )

    def group_counts(self, since: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
        """Regions, themes and stories with their article counts (first seen at or after ``since``)."""
        where, args = ("WHERE a.first_seen >= ?", [to_iso(since)]) if since else ("", [])
        regions = [
            {"slug": slug, "articles": n, "primary": p}
            for slug, n, p in self.db.execute(
                "SELECT r.value, count(*), sum(r.key = 0) FROM articles a, json_each(a.regions) r"
                f" {where} GROUP BY 1 ORDER BY 2 DESC, 1",
                args,
            )
        ]
        themes = [
            {"slug": slug, "articles": n}
            for slug, n in self.db.execute(
                f"SELECT t.value, count(*) FROM articles a, json_each(a.themes) t {where}"
                " GROUP BY 1 ORDER BY 2 DESC, 1",
                args,
            )
        ]
        stories = [
            {"id": sid, "label": label, "articles": n, "members": json.loads(members)}
            for sid, label, n, members in self.db.execute(
                "SELECT st.id, st.label, count(*), json_group_array(a.id) FROM stories st"
                f" JOIN articles a ON a.story = st.id {where} GROUP BY st.id HAVING count(*) >= 2"
                " ORDER BY 3 DESC, st.first_seen DESC",
                args,
            )
        ]
        return {"regions": regions, "themes": themes, "stories": stories}

    # --- settings kept in the database --------------------------------------------------------

    def setting(self, key: str, default: Callable[[], str]) -> str:
        """A value kept in the database, created by ``default()`` on first use."""
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        if row:
            return str(row[0])
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (key, default()))
            return str(conn.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()[0])

    def get_setting(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        return str(row[0]) if row else None

    def put_setting(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take (or renew) the lease ``name`` for ``seconds``; False when another holder has it."""
        now = utcnow()
        with self.transaction() as conn:
            row = conn.execute("SELECT holder, expires FROM leases WHERE name = ?", [name]).fetchone()
            if row is not None and row[0] != holder and from_iso(row[1]) > now:
                return False
            expires = to_iso(now + timedelta(seconds=seconds))
            conn.execute(
                "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires",
                (name, holder, expires),
            )
            return True

    def release_lease(self, name: str, holder: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    # --- subscribers ---------------------------------------------------------------------------

    def subscriber(
        self, *, email: str | None = None, subscriber_id: int | None = None
    ) -> dict[str, Any] | None:
        if email is not None:
            return self._one("SELECT * FROM subscribers WHERE email = ?", [email])
        return self._one("SELECT * FROM subscribers WHERE id = ?", [subscriber_id])

    def subscribers(self, status: str | None = None) -> list[dict[str, Any]]:
        if status is None:
            return list(self.db.query("SELECT * FROM subscribers ORDER BY email"))
        return list(self.db.query("SELECT * FROM subscribers WHERE status = ? ORDER BY id", [status]))

    def upsert_subscribers(self, rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Insert or update subscribers by email in one transaction; (added, updated)."""
        added = updated = 0
        with self.transaction() as conn:
            for row in rows:
                known = conn.execute("SELECT id FROM subscribers WHERE email = ?", [row["email"]]).fetchone()
                columns = [c for c in row if c != "email"]
                if known is None:
                    names = ", ".join(["email", *columns])
                    marks = ", ".join("?" * (len(columns) + 1))
                    conn.execute(
                        f"INSERT INTO subscribers ({names}) VALUES ({marks})",
                        [row["email"], *[row[c] for c in columns]],
                    )
                    added += 1
                elif changing := [c for c in columns if c != "created"]:
                    # created never changes: the subscriber's link tokens are bound to it.
                    sets = ", ".join(f"{c} = ?" for c in changing)
                    conn.execute(
                        f"UPDATE subscribers SET {sets} WHERE id = ?", [*[row[c] for c in changing], known[0]]
                    )
                    updated += 1
        return added, updated

    def update_subscriber(self, subscriber_id: int, **values: Any) -> None:
        sets = ", ".join(f"{column} = ?" for column in values)
        with self.transaction() as conn:
            conn.execute(f"UPDATE subscribers SET {sets} WHERE id = ?", [*values.values(), subscriber_id])

    def delete_subscriber(self, email: str) -> bool:
        with self.transaction() as conn:
            return conn.execute("DELETE FROM subscribers WHERE email = ?", [email]).rowcount > 0

    # --- sign-ups from the web form ----------------------------------------------------------

    def enqueue_signup(
        self, email: str, regions: Sequence[str], themes: Sequence[str], *, now: datetime
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO signups (email, regions, themes, created, next_try) VALUES (?, ?, ?, ?, ?)",
                (email, json.dumps(list(regions)), json.dumps(list(themes)), to_iso(now), to_iso(now)),
            )

    def claim_signups(self, now: datetime, *, until: datetime, limit: int) -> list[dict[str, Any]]:
        """Sign-ups due at ``now``, held until ``until`` so no other worker takes them meanwhile."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT id, email, regions, themes, subscriber_id, attempts FROM signups"
                " WHERE next_try <= ? ORDER BY id LIMIT ?",
                (to_iso(now), limit),
            ).fetchall()
            for chunk, marks in _in_chunks([row[0] for row in rows]):
                conn.execute(
                    f"UPDATE signups SET next_try = ? WHERE id IN ({marks})", [to_iso(until), *chunk]
                )
        return [
            {
                "id": row[0],
                "email": row[1],
                "regions": json.loads(row[2]),
                "themes": json.loads(row[3]),
                "subscriber_id": row[4],
                "attempts": row[5],
            }
            for row in rows
        ]

    def signup_for(self, signup_id: int, subscriber_id: int) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE signups SET subscriber_id = ? WHERE id = ?", (subscriber_id, signup_id))

    def retry_signup(self, signup_id: int, when: datetime, error: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE signups SET attempts = attempts + 1, next_try = ?, last_error = ? WHERE id = ?",
                (to_iso(when), error, signup_id),
            )

    def postpone_signups(self, now: datetime, until: datetime) -> None:
        """Every sign-up due at ``now`` waits until ``until`` (the mail server is down)."""
        with self.transaction() as conn:
            conn.execute("UPDATE signups SET next_try = ? WHERE next_try <= ?", (to_iso(until), to_iso(now)))

    def finish_signup(self, signup_id: int) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM signups WHERE id = ?", (signup_id,))

    def signups(self) -> list[dict[str, Any]]:
        """Every queued sign-up (for status and tests)."""
        return list(self.db.query("SELECT * FROM signups ORDER BY id"))

    # --- digests and the delivery ledger ------------------------------------------------------

    def last_delivered(self) -> dict[int, str]:
        """Subscriber id → the cut-off time of the last digest they were sent."""
        return dict(
            self.db.execute(
                "SELECT l.subscriber_id, max(d.until) FROM deliveries l JOIN digests d ON d.id = l.digest_id"
                " WHERE l.status = 'sent' GROUP BY l.subscriber_id"
            ).fetchall()
        )

    def subscribers_with_pending(self) -> set[int]:
        """Subscribers with a delivery still pending (deferred by the server, or unsent)."""
        return {
            int(row[0])
            for row in self.db.execute(
                "SELECT DISTINCT subscriber_id FROM deliveries WHERE status = 'pending'"
            )
        }

    def create_digest(self, digest_id: str, until: datetime, deliveries: Iterable[tuple[int, str]]) -> None:
        """A digest and its pending ledger rows (subscriber id, since), in one transaction."""
        now = to_iso(utcnow())
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO digests (id, created, until, status) VALUES (?, ?, ?, 'sending')",
                (digest_id, now, to_iso(until)),
            )
            conn.executemany(
                "INSERT INTO deliveries (digest_id, subscriber_id, since, status, updated)"
                " VALUES (?, ?, ?, 'pending', ?)",
                [(digest_id, sid, since, now) for sid, since in deliveries],
            )

    def digest(self, digest_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM digests WHERE id = ?", [digest_id])

    def digests(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT d.*, sum(l.status = 'sent') AS sent, sum(l.status = 'failed') AS failed,"
                " sum(l.status = 'pending') AS pending"
                " FROM digests d LEFT JOIN deliveries l ON l.digest_id = d.id"
                " GROUP BY d.id ORDER BY d.created DESC LIMIT ?",
                [limit],
            )
        )

    def unfinished_digests(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM digests WHERE status = 'sending' ORDER BY created"))

    def pending_deliveries(self, digest_id: str) -> list[dict[str, Any]]:
        """Ledger rows still to send, with what the message needs of the subscriber."""
        return list(
            self.db.query(
                "SELECT l.subscriber_id, l.since, l.attempts, s.email, s.created, s.regions, s.themes,"
                " s.status AS subscriber_status"
                " FROM deliveries l JOIN subscribers s ON s.id = l.subscriber_id"
                " WHERE l.digest_id = ? AND l.status = 'pending' ORDER BY l.subscriber_id",
                [digest_id],
            )
        )

    def record_delivery(
        self,
        digest_id: str,
        subscriber_id: int,
        status: str,
        *,
        message_id: str | None = None,
        reply: str | None = None,
    ) -> None:
        """Write one delivery's outcome (its own short transaction: it must survive a crash)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE deliveries SET status = ?, message_id = coalesce(?, message_id), reply = ?,"
                " attempts = attempts + 1, updated = ? WHERE digest_id = ? AND subscriber_id = ?",
                (status, message_id, reply, to_iso(utcnow()), digest_id, subscriber_id),
            )
            if status == "failed" and reply and reply[:1] == "5":
                conn.execute("UPDATE subscribers SET bounces = bounces + 1 WHERE id = ?", (subscriber_id,))
            elif status == "sent":
                conn.execute("UPDATE subscribers SET bounces = 0 WHERE id = ?", (subscriber_id,))

    def finish_digest(self, digest_id: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE digests SET status = 'done' WHERE id = ?"
                " AND NOT EXISTS (SELECT 1 FROM deliveries WHERE digest_id = ? AND status = 'pending')",
                (digest_id, digest_id),
            )

    def delivery_counts(self, digest_id: str) -> dict[str, int]:
        return dict(
            self.db.execute(
                "SELECT status, count(*) FROM deliveries WHERE digest_id = ? GROUP BY status", [digest_id]
            ).fetchall()
        )

    # --- helpers -------------------------------------------------------------------------

    def _one(self, sql: str, args: Sequence[Any]) -> dict[str, Any] | None:
        return next(iter(self.db.query(sql, args)), None)

    @staticmethod
    def _source_id(conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT id FROM sources WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"no source named {name!r} in the database")
        return int(row[0])

    @staticmethod
    def _existing(
        conn: sqlite3.Connection, column: str, keys: Sequence[str | None]
    ) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(k for k in keys if k))
        for chunk, marks in _in_chunks(unique):
            for id_, url, content_hash, source_id in conn.execute(
                f"SELECT id, url, content_hash, source_id FROM articles WHERE {column} IN ({marks})", chunk
            ):
                found[id_ if column == "id" else url] = {
                    "id": id_,
                    "content_hash": content_hash,
                    "source_id": source_id,
                }
        return found


def _owner_only(path: Path) -> None:
    """Make the database file (created empty if new) readable by its owner only; SQLite gives
    the WAL and shared-memory files the database's mode. The file holds the token secret."""
    try:
        if not path.exists():
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        for existing in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
            if (
                existing.exists()
                and existing.stat().st_mode & 0o077
                and existing.stat().st_uid == os.getuid()
            ):
                existing.chmod(0o600)
    except OSError as exc:
        raise StoreError(f"{path}: cannot open database: {exc.strerror or exc}") from None


_CONTENT_COLUMNS = ("guid", "url", "title", "summary_html", "summary_text", "author", "published")


def _content_values(article: Article) -> tuple[Any, ...]:
    """The values of :data:`_CONTENT_COLUMNS`, in that order."""
    published = to_iso(article.published) if article.published else None
    return (
        article.guid,
        article.url,
        article.title,
        article.summary_html,
        article.summary_text,
        article.author,
        published,
    )


def _in_chunks(values: Sequence[Any], size: int = 500) -> Iterator[tuple[list[Any], str]]:
    """Values in slices small enough for one ``IN (...)``, each with its placeholders."""
    for start in range(0, len(values), size):
        chunk = list(values[start : start + size])
        yield chunk, ",".join("?" * len(chunk))


def _article_values(article: Article, source_id: int) -> tuple[Any, ...]:
    return (
        article.id,
        source_id,
        *_content_values(article),
        to_iso(article.first_seen),
        to_iso(article.updated),
        article.content_hash,
    )


def _dt(value: str | None) -> datetime | None:
    return from_iso(value) if value else None


def _article(row: dict[str, Any]) -> Article:
    return Article(
        id=row["id"],
        source=row["source"],
        title=row["title"],
        url=row["url"],
        guid=row["guid"],
        summary_html=row["summary_html"],
        summary_text=row["summary_text"],
        author=row["author"],
        published=_dt(row["published"]),
        first_seen=from_iso(row["first_seen"]),
        updated=from_iso(row["updated"]),
        content_hash=row["content_hash"],
        regions=tuple(json.loads(row["regions"] or "[]")),
        themes=tuple(json.loads(row["themes"] or "[]")),
        story=row["story"],
        places=tuple(json.loads(row["places"] or "[]")),
        theme_matches=json.loads(row["theme_matches"] or "{}"),
    )
