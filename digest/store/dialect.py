"""What the two backends' SQL shares, and the small object that says what differs.

An area's queries are written once, in the form both backends read: ``?`` for a parameter
(PostgreSQL's cursors make it ``%s``: ``postgres/base.py``), ``TRUE``/``FALSE``,
``ON CONFLICT``, ``RETURNING``, ``count(*) FILTER (WHERE ...)``; rows
read by column name; times, flags and JSON text passed as Python values (SQLite stores a
time as the one ISO text of :func:`digest.common.dates.to_iso`, by an adapter ``base.py``
registers; stored JSON is read back through ``base.decoded``). What the grammar cannot
share is asked of :class:`Dialect`: IN lists, byte-wise order, the JSON parameter mark,
matching addresses, row locks, the clock in SQL, flags as partial indexes name them, JSON
array membership. What truly differs (claiming with ``SKIP LOCKED``, ``unnest``, search,
advisory locks, ``COPY``, the layout of an article's text and evidence) stays in each
backend's area classes, which extend the shared ones.

:class:`Area` is what an area's shared methods may use of a store: a transaction, reading
helpers, the store's clock, and ``_changed`` (the counter the web's caches watch, on both
backends: bookkeeping writes do not move it)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol, Self

from digest.common.errors import StoreError


class Cursor(Protocol):
    """What a statement gives back, on either driver."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """One transaction's connection, on either driver (rows read by column name)."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, args: Any, /) -> Any: ...


@dataclass(frozen=True)
class Dialect:
    """What differs between the backends' SQL in the statements they share; SQLite's, the
    embedded default, unless given."""

    name: str
    bytewise: str = ""  # appended to ORDER BY a text column: byte order, as SQLite sorts
    chunk: int | None = 500  # IN lists: SQLite binds values in slices; PostgreSQL one array
    json_mark: str = "?"  # a parameter given as JSON text for a JSON column
    # Addresses compare without regard to case: SQLite's column is NOCASE, PostgreSQL's is
    # compared and sorted by lower() (ASCII folded, then bytes, as NOCASE does).
    address: str = "email = ?"
    address_order: str = "email"
    for_update: str = ""  # locks rows read for a write (SQLite's writers are one at a time)
    skip_locked: str = ""  # the same, passing over rows another transaction holds (claims)
    # The clock claims and leases are written by, in SQL: the server's on PostgreSQL (workers'
    # clocks may disagree), the store's on SQLite (functions ``base.SqliteBase`` registers).
    now: str = "store_now()"
    later: str = "store_later(?)"  # now plus the seconds given as its one parameter
    false: str = "0"  # as a flag's partial index says it (SQLite's index only matches "= 0")
    day: str = "substr({}, 1, 10)"  # a stored time's UTC date, YYYY-MM-DD (SQLite keeps UTC ISO text)

    def in_list(
        self, column: str, values: Sequence[Any], *, negate: bool = False
    ) -> Iterator[tuple[str, list[Any]]]:
        """``column IN (values)`` (``NOT IN`` when ``negate``) as (SQL, arguments), in as
        many slices as the driver needs. Only the first slice of a negated test is whole;
        negation is for short lists (names of sources in a configuration)."""
        values = list(values)
        if self.chunk is None:
            yield (f"NOT ({column} = ANY(?))" if negate else f"{column} = ANY(?)"), [values]
            return
        if negate:
            marks = ",".join("?" * len(values)) or "''"  # NOT IN () is not SQL
            yield f"{column} NOT IN ({marks})", values
            return
        for start in range(0, len(values), self.chunk):
            part = values[start : start + self.chunk]
            yield f"{column} IN ({','.join('?' * len(part))})", part


SQLITE = Dialect("sqlite")
POSTGRES = Dialect(
    "postgres",
    bytewise=' COLLATE "C"',
    chunk=None,
    json_mark="?::jsonb",
    address="lower(email) = lower(?)",
    address_order='lower(email) COLLATE "C", email COLLATE "C"',
    for_update=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    now="now()",
    later="now() + make_interval(secs => ?)",
    false="FALSE",
    day="to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
)


class Area:
    """The base every shared area class writes against; a backend's base implements it."""

    dialect: ClassVar[Dialect]

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> datetime:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Tx]:
        """One short write transaction: committed when the block ends, rolled back if it raises."""
        raise NotImplementedError

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def _row(self, sql: str, args: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def _value(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = self._row(sql, args)
        return None if row is None else row[next(iter(row.keys()))]

    def _returning(self, sql: str, args: Sequence[Any]) -> list[Any]:
        """The rows a write's RETURNING gives, in a transaction of its own."""
        with self._write() as tx:
            return tx.execute(sql, args).fetchall()

    def _articles_write(self) -> AbstractContextManager[Tx]:
        """A transaction that writes articles (PostgreSQL's take turns: see its base)."""
        return self._write()

    def _changed(self, tx: Tx) -> None:
        """Count a change pages and feeds show, in ``tx`` (each backend's base does)."""
        raise NotImplementedError

    def _known_source(self, name: str) -> int:
        """The id of the source called ``name``; StoreError if there is none."""
        return _id_of(self._row(_SOURCE_ID, (name,)), name)

    @staticmethod
    def _source_id(tx: Tx, name: str) -> int:
        """The same, read in the transaction ``tx``."""
        return _id_of(tx.execute(_SOURCE_ID, (name,)).fetchone(), name)


_SOURCE_ID = "SELECT id FROM sources WHERE name = ?"


def newer_schema(number: int, name: str, where: str | None = None) -> StoreError:
    """The error for a database whose schema has a step this release does not know: written
    to by it, the newer release's data could be damaged. ``where``: the database, for a
    caller that does not say it itself."""
    text = (
        f"made by a newer release of digest (its schema has step {number}, {name}, unknown to this"
        " one): upgrade digest, or open a backup made before"
    )
    return StoreError(f"{where}: cannot open database: {text}" if where else text)


def no_source(name: str) -> StoreError:
    """The error for a source name the database does not hold."""
    return StoreError(f"no source named {name!r} in the database")


def _id_of(row: Any, name: str) -> int:
    if row is None:
        raise no_source(name)
    return int(row["id"])
