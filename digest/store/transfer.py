"""Moving a whole SQLite database out and in (``digest db copy``): its rows in the plain
form of ``tables.py``, read in one transaction (a consistent snapshot) and written in one
(a copy fails whole or lands whole)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from digest.common.dates import optional_iso
from digest.common.errors import StoreError
from digest.store.base import SqliteBase, stored_time
from digest.store.tables import DATA_TABLES, OWN_SETTINGS, TABLES, Row, columns, kinds

# What each plain table is read from, where SQLite keeps it differently.
_SELECT = {
    "articles": (
        "SELECT a.id, a.source_id, a.guid, a.url, a.title, t.summary_html, t.summary_text, a.author,"
        " a.published, a.first_seen, a.updated, a.content_hash, a.regions, a.themes, a.story, e.places,"
        " e.theme_matches, a.grouped FROM articles a JOIN article_texts t ON t.article_id = a.id"
        " LEFT JOIN article_evidence e ON e.article_id = a.id ORDER BY a.rowid"
    ),
    # (subscriber_events' own is not moved: nothing noted is)
    "sequences": "SELECT name, seq + 1 AS next FROM sqlite_sequence WHERE name IN ('subscribers', 'signups')"
    " ORDER BY rowid",
}
_AUTOINCREMENT = ("subscribers", "signups")  # the tables SQLite keeps a sequence for, moved


class TransferArea(SqliteBase):
    def is_empty(self) -> bool:
        """No sources, articles, subscribers, digests or sign-ups, and no settings but those
        every new database has."""
        for table in DATA_TABLES:
            if self._value(f"SELECT 1 FROM {table} LIMIT 1") is not None:
                return False
        marks = ",".join("?" * len(OWN_SETTINGS))
        return self._value(f"SELECT 1 FROM settings WHERE key NOT IN ({marks}) LIMIT 1", OWN_SETTINGS) is None

    def dump(self) -> Iterator[tuple[str, Iterator[Row]]]:
        """Every table's rows, in load order, from one read transaction."""
        self.conn.execute("BEGIN")
        try:
            for table in TABLES:
                yield table, self._dump(table)
        finally:
            self.conn.execute("COMMIT")

    def _dump(self, table: str) -> Iterator[Row]:
        try:
            yield from self._rows_of(table)
        except sqlite3.Error as exc:  # met while the copy reads: the guard does not see it
            raise StoreError(f"{self.where}: reading {table}: {exc}") from exc

    def _rows_of(self, table: str) -> Iterator[Row]:
        sql = _SELECT.get(table, f"SELECT {', '.join(columns(table))} FROM {table} ORDER BY 1")
        times, blobs, flags = kinds(table, "time"), kinds(table, "json"), kinds(table, "bool")
        for row in self.conn.execute(sql):
            found: dict[str, Any] = dict(zip(row.keys(), tuple(row), strict=True))
            for name in times:
                # Subscribers imported by hand may carry loose dates; read as the store reads them.
                found[name] = stored_time(found[name]) if found[name] else None
            for name in blobs:
                found[name] = None if found[name] is None else json.loads(found[name])
            for name in flags:
                found[name] = bool(found[name])
            yield found

    def load(self, tables: Iterable[tuple[str, Iterable[Row]]]) -> None:
        """Write every table's rows into this database, which must be empty, in one
        transaction."""
        with self._write() as conn:
            if not self.is_empty():
                raise StoreError(f"{self.where}: not empty; copy into a new, empty database")
            for table, rows in tables:
                if table == "articles":
                    self._load_articles(rows)
                elif table == "sequences":
                    self._load_sequences(rows)
                elif table == "settings":
                    conn.execute("DELETE FROM settings")  # the source's, exactly (tokens_bound_since too)
                    conn.executemany(
                        "INSERT INTO settings (key, value) VALUES (?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        [(row["key"], row["value"]) for row in rows],
                    )
                else:
                    names = columns(table)
                    conn.executemany(
                        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                        (_stored(table, row) for row in rows),
                    )
            conn.execute("DELETE FROM subscriber_events")  # copied, not changed: nothing to say

    def _load_articles(self, rows: Iterable[Row]) -> None:
        conn = self.conn
        main = ("id", "source_id", "guid", "url", "title", "author", "published", "first_seen", "updated",
                "content_hash", "regions", "themes", "story", "grouped")  # fmt: skip
        for row in rows:
            values = _stored("articles", row)
            conn.execute(
                f"INSERT INTO articles ({', '.join(main)}) VALUES ({', '.join('?' * len(main))})",
                [values[columns("articles").index(name)] for name in main],
            )
            conn.execute(
                "INSERT INTO article_texts (article_id, summary_html, summary_text) VALUES (?, ?, ?)",
                (row["id"], row["summary_html"], row["summary_text"]),
            )
            if row["places"] is not None:
                conn.execute(
                    "INSERT INTO article_evidence (article_id, places, theme_matches) VALUES (?, ?, ?)",
                    (row["id"], json.dumps(row["places"], ensure_ascii=False),
                     json.dumps(row["theme_matches"] or {})),
                )  # fmt: skip
        conn.execute(
            "INSERT INTO articles_fts (rowid, title, summary_text)"
            " SELECT a.rowid, search_tokens(a.title), search_tokens(t.summary_text)"
            " FROM articles a JOIN article_texts t ON t.article_id = a.id"
        )

    def _load_sequences(self, rows: Iterable[Row]) -> None:
        for row in rows:
            if row["name"] not in _AUTOINCREMENT:
                continue
            # AUTOINCREMENT tables: the next id is one above the sequence row (absent: max id).
            self.conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", [row["name"]])
            self.conn.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [row["name"], int(row["next"]) - 1]
            )


def _stored(table: str, row: Row) -> list[Any]:
    """A plain row as SQLite keeps it: times as ISO text, JSON as text, flags as 0/1."""
    values: list[Any] = []
    for name, kind in TABLES[table]:
        value = row[name]
        if value is not None and kind == "time":
            value = optional_iso(value)
        elif value is not None and kind == "json":
            value = json.dumps(value, ensure_ascii=False)
        elif kind == "bool":
            value = int(bool(value))
        values.append(value)
    return values
