"""What every area of the PostgreSQL store shares: a psycopg 3 connection pool, one
transaction per store call, migrations under an advisory lock, and the same rule as the
SQLite store: no psycopg error leaves a public method (StoreError instead, naming the
server and database, never the password)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import psycopg
from psycopg.abc import Params, Query
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from digest.common import redact
from digest.common.dates import Clock, utcnow
from digest.common.errors import StoreError
from digest.store.base import one_line
from digest.store.dialect import POSTGRES, Area, Tx, newer_schema
from digest.store.postgres.schema import MIGRATIONS, apply

# pg_advisory_xact_lock keys: any constants, the same in every worker.
MIGRATION_LOCK = 0x6469676573  # "diges"
ARTICLES_LOCK = 0x6469676574
LOCK_TIMEOUT_MS = 10_000


@lru_cache(maxsize=1024)
def pg_sql(sql: str) -> str:
    """A statement in the shared form (``?`` for a parameter) in psycopg's: ``%s``, with a
    literal ``%`` doubled. One without ``?`` is taken as psycopg's own already."""
    return sql.replace("%", "%%").replace("?", "%s") if "?" in sql else sql


def _qmark(query: Any, params: object) -> Any:
    # Without parameters psycopg sends the text as it is: nothing to translate.
    return pg_sql(query) if isinstance(query, str) and params is not None else query


class QmarkCursor(psycopg.Cursor[dict[str, Any]]):
    """A cursor that takes the shared statements' ``?`` parameters."""

    def execute(self, query: Query, params: Params | None = None, **options: Any) -> Self:
        return super().execute(_qmark(query, params), params, **options)

    def executemany(self, query: Query, params_seq: Iterable[Params], **options: Any) -> None:
        super().executemany(_qmark(query, params_seq), params_seq, **options)


class QmarkServerCursor(psycopg.ServerCursor[dict[str, Any]]):
    """A server-side (named) cursor that takes ``?`` parameters."""

    def execute(self, query: Query, params: Params | None = None, **options: Any) -> Self:
        return super().execute(_qmark(query, params), params, **options)


class QmarkConnection(psycopg.Connection[dict[str, Any]]):
    """A connection whose cursors take ``?`` parameters (see :mod:`digest.store.dialect`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = QmarkCursor
        self.server_cursor_factory = QmarkServerCursor

    def executemany(self, query: Query, params_seq: Iterable[Params]) -> None:
        """One statement over many rows, as ``sqlite3.Connection.executemany``."""
        with self.cursor() as cursor:
            cursor.executemany(query, params_seq)


Conn = QmarkConnection


def connect_args(url: str, password: str | None, *, readonly: bool, timeout: float | None) -> dict[str, Any]:
    """The settings of every connection: UTC times, how long to wait for a lock, read-only.
    A password digest gives (DIGEST_DATABASE_PASSWORD) goes only to a server that proves it
    knows it without reading it (SCRAM), unless the URL says otherwise (``require_auth``)."""
    wait = LOCK_TIMEOUT_MS if timeout is None else int(timeout * 1000)
    options = f"-c timezone=UTC -c lock_timeout={wait}"
    if readonly:
        options += " -c default_transaction_read_only=on"
    found: dict[str, Any] = {
        "row_factory": dict_row,
        "options": options,
        "application_name": "digest",
        "connect_timeout": 10,
    }
    if password:
        found["password"] = password
        if "require_auth" not in dict(parse_qsl(urlsplit(url).query)):
            found["require_auth"] = "scram-sha-256"
    return found


# Rows written by one statement of arrays (unnest): each statement runs the articles'
# tracking trigger once, and its arrays are built in memory (2,000 articles at once took
# 100 MB more). Those statements use psycopg's own ``%b``: arrays of text sent in binary
# take a seventh of the time they take as text (no escaping).
ROWS_A_STATEMENT = 500


def by_columns(tx: Tx, sql: str, rows: Sequence[tuple[Any, ...]], *first: Any) -> None:
    """Run ``sql`` once for each ``ROWS_A_STATEMENT`` of ``rows``, in order, given ``first``
    and then each column of those rows as an array."""
    for start in range(0, len(rows), ROWS_A_STATEMENT):
        batch = rows[start : start + ROWS_A_STATEMENT]
        tx.execute(sql, [*first, *(list(column) for column in zip(*batch, strict=True))])


class PgBase(Area):
    """A pool of connections to one digest database, and the helpers the areas use."""

    dialect = POSTGRES

    def __init__(self, pool: ConnectionPool[Conn], where: str, clock: Clock = utcnow) -> None:
        self.pool = pool
        self.where = where
        self._clock = clock

    def now(self) -> datetime:
        """Now, by this store's clock: every time it writes unasked but those workers
        coordinate by (claims, leases, the ledger: the server's ``now()``, see
        ``ledger_now``), and the default moment of whoever is given the store."""
        return self._clock()

    @classmethod
    def connect(cls, url: str, kwargs: dict[str, Any], size: int = 4) -> ConnectionPool[Conn]:
        """A pool of ``size`` connections to ``url`` with these settings (``connect_args``).
        One connection is made first, here, so a server that is down, a wrong password or a
        missing database is one clear line now."""
        where = redact.database(url)
        try:
            psycopg.connect(url, **kwargs).close()
        except psycopg.Error as exc:
            raise StoreError(f"{where}: cannot open database: {one_line(str(exc))}") from exc
        pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            connection_class=QmarkConnection,
            kwargs=kwargs,
            min_size=1,
            max_size=size,
            open=False,
            name="digest",
            num_workers=1,
        )
        pool.open(wait=True, timeout=30)
        return pool

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def _write(self) -> Iterator[Conn]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.pool.connection() as conn, conn.transaction():
            yield conn

    # --- schema --------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the migrations this database has not seen; return their names. Workers
        starting at once queue on the advisory lock; each migration is applied once."""
        applied: list[str] = []
        with self._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", [MIGRATION_LOCK])
            conn.execute(
                "CREATE TABLE IF NOT EXISTS migrations"
                " (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TIMESTAMPTZ NOT NULL)"
            )
            known = {row["id"]: row["name"] for row in conn.execute("SELECT id, name FROM migrations")}
            last = max(known, default=0)
            if last > len(MIGRATIONS):  # a newer release's database: nothing written to it
                raise newer_schema(last, known[last], self.where)
            done = set(known)
            for number, (name, statements) in enumerate(MIGRATIONS, start=1):
                if number in done:
                    continue
                apply(conn, statements)
                conn.execute(
                    "INSERT INTO migrations (id, name, applied) VALUES (?, ?, ?)",
                    (number, name, self.now()),
                )
                applied.append(name)
        return applied

    def applied_migrations(self) -> list[str]:
        return [row["name"] for row in self._rows("SELECT name FROM migrations ORDER BY id")]

    def data_version(self) -> int:
        """A number that changes whenever a write that pages or feeds show is committed,
        by any worker (the ``changes`` counter; see the schema)."""
        return int(self._value("SELECT counter FROM changes WHERE id = 1"))

    # --- helpers -------------------------------------------------------------------------

    @contextmanager
    def _articles_write(self) -> Iterator[Conn]:
        """A transaction that writes articles, one at a time across every worker (as SQLite's
        writes are): two pulls cannot both store one link, and writers that touch many
        article rows in different orders cannot deadlock."""
        with self._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", [ARTICLES_LOCK])
            yield conn

    def _changed(self, tx: Tx) -> None:
        """Count a change pages and feeds show; last in its transaction, so the counter row
        is locked only for the moment before the commit."""
        tx.execute("UPDATE changes SET counter = counter + 1 WHERE id = 1")

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def _row(self, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            return conn.execute(sql, args).fetchone()
