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
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from digest.common.dates import EARLIEST, Clock, from_iso, parse_date, to_iso, utcnow
from digest.common.errors import StoreError
from digest.common.query import index_text
from digest.store.dialect import SQLITE, Area, Tx, newer_schema
from digest.store.schema import MIGRATIONS

BUSY_TIMEOUT_MS = 10_000
# A time given to SQLite is stored as the one ISO text every stored time has, so statements
# shared with PostgreSQL pass datetimes as they are (the default adapter is deprecated).
sqlite3.register_adapter(datetime, to_iso)
T = TypeVar("T", bound=type)
R = TypeVar("R")


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


class SqliteBase(Area):
    """A connection to one digest database, and the helpers the areas use."""

    dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection, path: Path | None, clock: Clock = utcnow) -> None:
        self.conn = conn
        self.path = path
        self._clock = clock
        # The store's clock in SQL (the dialect's ``now`` and ``later``), as PostgreSQL's
        # statements read the server's: claims and leases are then one statement on both.
        # The functions hold the clock, not the store: the connection would otherwise keep
        # its store alive, and a store dropped unclosed (a finished thread's) never closes.
        conn.create_function("store_now", 0, lambda: to_iso(clock()))
        conn.create_function("store_later", 1, lambda seconds: to_iso(clock() + timedelta(seconds=seconds)))

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
                _write_ahead(conn, busy / 1000)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"{location}: cannot open database: {exc}") from exc
        return conn

    def close(self) -> None:
        self.conn.close()

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
        # Up to date: steps 1 to N recorded in migrations, and sqlite-utils' record made (the
        # second SELECT reads nothing: naming the table fails the statement without it). One
        # plain query at every open; the runner, and sqlite_utils, load only when it says no.
        # A step past ours: a newer release's database, refused before anything is written.
        try:
            done, last = self.conn.execute(
                "SELECT (SELECT count(*) FROM migrations WHERE id BETWEEN 1 AND ?), max(id) FROM migrations"
                " UNION ALL SELECT 0, 0 FROM _sqlite_migrations WHERE 0",
                [len(MIGRATIONS)],
            ).fetchone()
        except sqlite3.OperationalError:
            done = last = None  # no such table: a new database, or one of a release before sqlite-utils
        if last is not None and last > len(MIGRATIONS):
            name = self._value("SELECT name FROM migrations WHERE id = ?", [last])
            raise newer_schema(last, str(name))  # SqliteStore.open says where
        if done == len(MIGRATIONS):
            return []
        from digest.store.migrations import apply_pending

        return apply_pending(self.conn, MIGRATIONS, self.now)

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
        """A number that changes whenever a write that pages or feeds show is committed (the
        ``changes`` counter, as on PostgreSQL; not SQLite's data_version, which every commit
        moves, a rate-limit hit's too)."""
        return int(self.conn.execute("SELECT counter FROM changes WHERE id = 1").fetchone()[0])

    def _changed(self, tx: Tx) -> None:
        """Count a change pages and feeds show (in the writer's transaction)."""
        tx.execute("UPDATE changes SET counter = counter + 1 WHERE id = 1")

    # --- helpers -------------------------------------------------------------------------

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, args).fetchall()

    def _row(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row


def _write_ahead(conn: sqlite3.Connection, seconds: float) -> None:
    """Put the database in WAL mode. While another connection switches a new file, SQLite
    answers "locked" at once, without the busy wait: processes opening a new database
    together try again until the busy timeout, as any other write would wait."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


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


@functools.cache
def _converters(cls: type) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    """How each field of dataclass ``cls`` is read from a stored row, by its type."""
    found: list[tuple[str, Callable[[Any], Any]]] = []
    for name, kind in typing.get_type_hints(cls).items():
        shown = str(kind)
        if kind is datetime:
            found.append((name, when))
        elif kind == datetime | None:
            found.append((name, dt))
        elif kind is bool:
            found.append((name, bool))
        elif shown.startswith("tuple["):
            found.append((name, lambda v: tuple(decoded(v) or ())))
        elif shown.startswith(("dict[", "collections.abc.Mapping[")):
            found.append((name, lambda v: decoded(v) or {}))
        else:
            found.append((name, _same))
    return tuple(found)


def _same(value: Any) -> Any:
    return value


def record_of(cls: Callable[..., R], row: Row, **given: Any) -> R:
    """The record ``cls`` (a dataclass) made of ``row``'s columns of its fields' names, each
    read as its type says (times, JSON lists and objects, flags); ``given`` fields as they
    are, and fields the row lacks left to their defaults."""
    columns = row.keys()
    fields = _converters(cls)
    values = {name: read(row[name]) for name, read in fields if name not in given and name in columns}
    return cls(**values, **given)


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
