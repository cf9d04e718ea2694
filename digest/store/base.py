"""What every area of the SQLite store shares: the connection, short write transactions,
migrations, reading helpers, and the rule that no ``sqlite3`` error leaves the store: every
public method of a store class raises :class:`~digest.common.errors.StoreError` instead (naming
the database, with the SQLite error chained for logs), reads and writes alike."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from digest.common.dates import EARLIEST, Clock, from_iso, parse_date, to_iso, utcnow
from digest.common.errors import StoreError
from digest.common.query import index_text
from digest.store.schema import MIGRATIONS

BUSY_TIMEOUT_MS = 10_000
T = TypeVar("T", bound=type)


def guarded(cls: T) -> T:
    """Wrap every public method of ``cls`` (and of its bases) so that a ``sqlite3.Error``
    becomes a StoreError: a locked, read-only, full or damaged database is one line for the
    user, never a traceback, whichever method met it."""
    return guard_class(cls, sqlite3.Error)


def guard_class(cls: T, errors: type[BaseException] | tuple[type[BaseException], ...]) -> T:
    """Wrap every public method of ``cls`` (and of its bases) so that ``errors`` (a driver's
    own exceptions) leave it as StoreError naming the database (``self.where``)."""
    for klass in cls.__mro__:
        for name, member in vars(klass).items():
            if name.startswith("_") or not callable(member) or isinstance(member, classmethod | staticmethod):
                continue
            if getattr(cls, name) is not member or getattr(member, "__guarded__", False):
                continue
            setattr(cls, name, _guard(member, errors))
    return cls


def _guard(
    method: Callable[..., Any], errors: type[BaseException] | tuple[type[BaseException], ...]
) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except errors as exc:
            raise StoreError(f"{self.where}: {one_line(str(exc))}") from exc

    call.__guarded__ = True  # type: ignore[attr-defined]
    return call


def _search_tokens(text: str | None) -> str:
    return index_text(text or "")


def one_line(message: str) -> str:
    """A driver's message on one line (PostgreSQL's carry DETAIL and HINT lines)."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


class Row(Protocol):
    """A stored row by column name: ``sqlite3.Row`` or a psycopg ``dict_row``."""

    def __getitem__(self, key: str, /) -> Any: ...
    def keys(self) -> Any: ...


class SqliteBase:
    """A connection to one digest database, and the helpers the areas use."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None, clock: Clock = utcnow) -> None:
        self.conn = conn
        self.path = path
        self._clock = clock

    def now(self) -> datetime:
        """Now, by this store's clock: every time it writes unasked, and the default moment
        of whoever is given the store."""
        return self._clock()

    @property
    def where(self) -> str:
        return str(self.path) if self.path else ":memory:"

    @classmethod
    def connect(
        cls, path: Path | str, *, shared: bool = False, readonly: bool = False, timeout: float | None = None
    ) -> sqlite3.Connection:
        """A configured connection (WAL, foreign keys) to the database at ``path``, created
        readable by its owner only. ``shared``: usable from several threads (the caller
        serialises); ``readonly``: opened read-only."""
        location = Path(path)
        memory = str(path) == ":memory:"
        if not memory:
            if not location.parent.is_dir():
                raise StoreError(f"{location}: cannot open database: folder {location.parent} does not exist")
            if not readonly:
                owner_only(location)
        busy = BUSY_TIMEOUT_MS if timeout is None else int(timeout * 1000)
        try:
            target = f"{location.resolve().as_uri()}?mode=ro" if readonly else str(location)
            conn = sqlite3.connect(
                target, timeout=busy / 1000, isolation_level=None, check_same_thread=not shared, uri=readonly
            )
            conn.row_factory = sqlite3.Row
            # The one tokenizer, for what the search index is given (see digest.common.query).
            conn.create_function("search_tokens", 1, _search_tokens, deterministic=True)
            conn.execute(f"PRAGMA busy_timeout = {busy}")
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"{location}: cannot open database: {exc}") from exc
        return conn

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction (BEGIN IMMEDIATE, so writers queue instead of failing)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # --- schema --------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the migrations this database has not seen; return their names."""
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS migrations"
            " (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)"
        )
        done = {row[0] for row in self.conn.execute("SELECT id FROM migrations")}
        applied: list[str] = []
        pending = [(n, m) for n, m in enumerate(MIGRATIONS, start=1) if n not in done]
        if not pending:
            return applied
        # Rebuilding a table that others reference needs foreign keys off (it cannot change
        # inside a transaction); each migration is checked for broken references before commit.
        self.conn.execute("PRAGMA foreign_keys = OFF")
        try:
            for number, (name, step) in pending:
                with self._write() as conn:
                    if conn.execute("SELECT 1 FROM migrations WHERE id = ?", [number]).fetchone():
                        continue  # another process applied it meanwhile
                    step(conn, self.now())
                    broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StoreError(f"migration {name} would break references: {list(broken[:3])}")
                    conn.execute(
                        "INSERT INTO migrations (id, name, applied) VALUES (?, ?, ?)",
                        (number, name, to_iso(self.now())),
                    )
                applied.append(name)
        finally:
            self.conn.execute("PRAGMA foreign_keys = ON")
        return applied

    def applied_migrations(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT name FROM migrations ORDER BY id")]

    def backup(self, target: Path) -> None:
        """A consistent copy of the database at ``target`` (SQLite online backup: writers
        may keep writing meanwhile)."""
        if target.exists():
            raise StoreError(f"{target}: already exists; choose a new file for the backup")
        try:
            owner_only(target)
            copy = sqlite3.connect(str(target))
            with copy:
                self.conn.backup(copy)
            copy.close()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{target}: backup failed: {exc}") from exc

    def data_version(self) -> int:
        """A number that changes whenever another connection commits (PRAGMA data_version)."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # --- helpers -------------------------------------------------------------------------

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, args).fetchall()

    def _row(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row

    def _value(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, args).fetchone()
        return None if row is None else row[0]

    @staticmethod
    def _source_id(conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT id FROM sources WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"no source named {name!r} in the database")
        return int(row[0])


def in_chunks(values: Sequence[Any], size: int = 500) -> Iterator[tuple[list[Any], str]]:
    """Values in slices small enough for one ``IN (...)``, each with its placeholders."""
    for start in range(0, len(values), size):
        chunk = list(values[start : start + size])
        yield chunk, ",".join("?" * len(chunk))


def when(value: str | datetime) -> datetime:
    """A stored time: ISO text (SQLite) or a ``timestamptz`` (PostgreSQL), in UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return from_iso(value)


def dt(value: str | datetime | None) -> datetime | None:
    return when(value) if value else None


def decoded(value: Any) -> Any:
    """A stored JSON value: text (SQLite) or already decoded (PostgreSQL's jsonb)."""
    if value == "[]":
        return []  # most lists (regions, themes, topics) are empty: no parser for them
    return json.loads(value) if isinstance(value, str | bytes) else value


def stored_time(value: str | datetime | None) -> datetime:
    """A stored time; one written by hand into an earlier import still reads as a date."""
    if not value:
        return EARLIEST
    if isinstance(value, datetime):
        return when(value)
    try:
        return from_iso(value)
    except ValueError:
        return parse_date(value) or EARLIEST


def iso(value: datetime | None) -> str | None:
    return to_iso(value) if value is not None else None


def owner_only(path: Path) -> None:
    """Make the database file (created empty if new) readable by its owner only; SQLite gives
    the WAL and shared-memory files the database's mode. The file holds the token secret."""
    try:
        if not path.exists():
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        for existing in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
            if not existing.exists():
                continue
            found = existing.stat()
            if found.st_mode & 0o077 and found.st_uid == os.getuid():
                existing.chmod(0o600)
    except OSError as exc:
        raise StoreError(f"{path}: cannot open database: {exc.strerror or exc}") from exc
