"""Moving a whole PostgreSQL database out and in (``digest db copy``): rows in the plain
form of ``tables.py``, read from one REPEATABLE READ snapshot and written with COPY in one
transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from psycopg import IsolationLevel

from digest.common.errors import StoreError
from digest.store.base import one_line
from digest.store.postgres.base import Conn, PgBase
from digest.store.postgres.search import refresh_search
from digest.store.tables import DATA_TABLES, OWN_SETTINGS, SEQUENCED, TABLES, Row, columns, kinds

_ORDER = {"articles": "seq", "deliveries": "digest_id, subscriber_id"}


class PgTransferArea(PgBase):
    def is_empty(self) -> bool:
        with self.pool.connection() as conn:
            return _empty(conn)

    def dump(self) -> Iterator[tuple[str, Iterator[Row]]]:
        with self.pool.connection() as conn:
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            try:
                with conn.transaction():
                    for table in TABLES:
                        yield table, _guarded(self.where, table, _dump(conn, table))
            finally:
                conn.isolation_level = None

    def load(self, tables: Iterable[tuple[str, Iterable[Row]]]) -> None:
        with self._write() as conn:
            # Nobody writes here while the copy checks and fills it.
            conn.execute(f"LOCK TABLE {', '.join(DATA_TABLES)}, settings, stories IN EXCLUSIVE MODE")
            if not _empty(conn):
                raise StoreError(f"{self.where}: not empty; copy into a new, empty database")
            sequences: dict[str, int] = {}
            for table, rows in tables:
                if table == "sequences":
                    sequences.update((row["name"], int(row["next"])) for row in rows)
                    continue
                if table == "settings":
                    conn.execute("DELETE FROM settings")
                names = columns(table)
                blobs = kinds(table, "json")
                with (
                    conn.cursor() as cursor,
                    cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy,
                ):
                    for row in rows:
                        copy.write_row(
                            [json.dumps(row[n], ensure_ascii=False) if n in blobs and row[n] is not None
                             else row[n] for n in names]
                        )  # fmt: skip
            refresh_search(conn)  # the search vectors, made as saving makes them
            conn.execute("DELETE FROM subscriber_events")  # copied, not changed: nothing to say
            for table in SEQUENCED:
                # The next id: past every copied one, and past the source's own counter.
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" greatest(?, (SELECT coalesce(max(id), 0) + 1 FROM {table})), false)",
                    [sequences.get(table, 1)],
                )
            self._changed(conn)


def _guarded(where: str, table: str, rows: Iterator[Row]) -> Iterator[Row]:
    try:
        yield from rows
    except psycopg.Error as exc:  # met while the copy reads: the guard does not see it
        raise StoreError(f"{where}: reading {table}: {one_line(str(exc))}") from exc


def _empty(conn: Conn) -> bool:
    for table in DATA_TABLES:
        if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
            return False
    found = conn.execute("SELECT 1 FROM settings WHERE NOT (key = ANY(?)) LIMIT 1", [list(OWN_SETTINGS)])
    return found.fetchone() is None


def _dump(conn: Conn, table: str) -> Iterator[Row]:
    if table == "sequences":
        for name in SEQUENCED:
            # The sequence's next value, without taking it.
            row = conn.execute(
                f"SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS next"
                f" FROM {_sequence(conn, name)}"
            ).fetchone()
            assert row is not None
            yield {"name": name, "next": int(row["next"])}
        return
    order = _ORDER.get(table, "1")
    with conn.cursor(name=f"dump_{table}") as cursor:  # server-side: rows arrive in batches
        cursor.itersize = 2000
        cursor.execute(f"SELECT {', '.join(columns(table))} FROM {table} ORDER BY {order}")
        for row in cursor:
            found: dict[str, Any] = dict(row)
            yield found


def _sequence(conn: Conn, table: str) -> str:
    row = conn.execute("SELECT pg_get_serial_sequence(?, 'id') AS name", [table]).fetchone()
    assert row is not None and row["name"]
    return str(row["name"])
