"""Articles: saving a pull's articles (new, updated, unchanged), listing, searching."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from digest.common.dates import to_iso
from digest.common.errors import StoreError
from digest.common.models import Article
from digest.common.query import Query, Term, index_text
from digest.store.base import Row, SqliteBase, decoded, dt, in_chunks, when
from digest.store.records import DroppedItem, SaveCounts

_COLUMNS = "a.*, t.summary_html, t.summary_text, s.name AS source, e.places, e.theme_matches"
_JOINS = (
    "JOIN article_texts t ON t.article_id = a.id JOIN sources s ON s.id = a.source_id"
    " LEFT JOIN article_evidence e ON e.article_id = a.id"
)
ARTICLE_SELECT = f"SELECT {_COLUMNS} FROM articles a {_JOINS}"
_CONTENT_COLUMNS = ("guid", "url", "title", "author", "published")
# The search index is contentless: it is told each version of the text it is to forget.
_INDEX = "INSERT INTO articles_fts (rowid, title, summary_text)"
_UNINDEX = "INSERT INTO articles_fts (articles_fts, rowid, title, summary_text)"
_INDEXED = "FROM articles a JOIN article_texts t ON t.article_id = a.id"
# What the index is given: the one tokenizer's tokens (digest.common.query), never the text itself.
_TOKENS = "search_tokens(a.title), search_tokens(t.summary_text)"


SEARCH_SECONDS = 2.0


def seen_in(
    since: datetime | None, until: datetime | None, mark: str, value: Callable[[datetime], Any]
) -> tuple[list[str], list[Any]]:
    """``since <= first_seen < until`` (either end open when None) as WHERE terms, with
    ``mark`` for a parameter, and their arguments made by ``value``."""
    where, args = ["1 = 1"], []
    for bound, op in ((since, ">="), (until, "<")):
        if bound is not None:
            where.append(f"a.first_seen {op} {mark}")
            args.append(value(bound))
    return where, args


def fts5(query: Query) -> str:
    """A parsed query as an FTS5 expression: every term a quoted string of plain words, so
    nothing a reader typed is read as FTS5 syntax."""

    def term(t: Term) -> str:
        return '"' + index_text(" ".join(t.words)) + '"'

    wanted = " AND ".join("(" + " OR ".join(term(t) for t in choice) + ")" for choice in query.all_of)
    if query.none_of:
        wanted = f"({wanted}) NOT ({' OR '.join(term(t) for t in query.none_of)})"
    return wanted


class ArticlesArea(SqliteBase):
    def save_articles(self, source: str, articles: Sequence[Article], *, now: datetime) -> SaveCounts:
        """Insert new articles and update changed ones in one transaction; ``first_seen`` of an
        existing article never changes, an update is dated ``now``. An article whose URL this
        source already stored is that article; another source's row is never touched."""
        new = updated = unchanged = 0
        with self._write() as conn:
            source_id = self._source_id(conn, source)
            by_id = _existing(conn, "id", [a.id for a in articles])
            # A link is the same article within its source only: another's never claims it.
            by_url = _existing(conn, "url", [a.url for a in articles if a.url], source_id)
            seen: set[str] = set()
            inserts: list[tuple[Any, ...]] = []
            texts: list[tuple[str, str, str]] = []
            for article in articles:
                row = by_id.get(article.id) or (by_url.get(article.url) if article.url else None)
                key = row["id"] if row else article.id
                if key in seen:
                    continue
                seen.add(key)
                if row is None:
                    inserts.append(_article_values(article, source_id))
                    texts.append((article.id, article.summary_html, article.summary_text))
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
                    _update(conn, key, article, now)
                    updated += 1
            if inserts:
                # Rowids only grow (none is ever given explicitly), so the new rows are those
                # above the largest before; the search index takes them in one statement.
                last = conn.execute("SELECT coalesce(max(rowid), 0) FROM articles").fetchone()[0]
                conn.executemany(
                    f"INSERT INTO articles (id, source_id, {', '.join(_CONTENT_COLUMNS)},"
                    " first_seen, updated, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    inserts,
                )
                conn.executemany(
                    "INSERT INTO article_texts (article_id, summary_html, summary_text) VALUES (?, ?, ?)",
                    texts,
                )
                conn.execute(
                    f"{_INDEX} SELECT a.rowid, {_TOKENS} {_INDEXED} WHERE a.rowid > ?",
                    [last],
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
        where, args = seen_in(since, until, "?", to_iso)
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
            f"{ARTICLE_SELECT} WHERE {' AND '.join(where)}"
            " ORDER BY coalesce(a.published, a.first_seen) DESC, a.rowid ASC"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [article_of(row) for row in self._rows(sql, args)]

    def search(
        self,
        query: Query,
        *,
        limit: int = 20,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Article]:
        """Articles whose title or text match ``query`` (first seen in ``[since, until)``
        when given), best match first. At most ``SEARCH_SECONDS`` of work: longer is a
        StoreError, never a stuck worker."""
        where, args = seen_in(since, until, "?", to_iso)
        where, args = ["articles_fts MATCH ?", *where], [fts5(query), *args]
        sql = (
            f"SELECT {_COLUMNS} FROM articles_fts f JOIN articles a ON a.rowid = f.rowid {_JOINS}"
            f" WHERE {' AND '.join(where)} ORDER BY rank LIMIT ?"
        )
        deadline = time.monotonic() + SEARCH_SECONDS
        self.conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        try:
            return [article_of(row) for row in self._rows(sql, [*args, limit])]
        except sqlite3.OperationalError as exc:
            raise StoreError(f"search {query.text!r}: {exc}") from exc
        finally:
            self.conn.set_progress_handler(None, 0)

    def article(self, article_id: str) -> Article | None:
        """One article by id."""
        row = self._row(f"{ARTICLE_SELECT} WHERE a.id = ?", [article_id])
        return article_of(row) if row else None

    def count_articles(self) -> int:
        return int(self._value("SELECT count(*) FROM articles"))

    def content_hashes(self, article_ids: Sequence[str]) -> dict[str, str]:
        """The content hash of each of these articles that is stored."""
        return {key: row["content_hash"] for key, row in _existing(self.conn, "id", article_ids).items()}

    def owned_ids(self, source: str, article_ids: Sequence[str]) -> set[str]:
        """Which of these ids ``source`` stored: as an article, or as an item its rules dropped."""
        found: set[str] = set()
        for chunk, marks in in_chunks(list(dict.fromkeys(article_ids))):
            found.update(
                row[0]
                for row in self._rows(
                    f"SELECT a.id FROM articles a JOIN sources s ON s.id = a.source_id"
                    f" WHERE s.name = ? AND a.id IN ({marks})"
                    f" UNION SELECT d.article_id FROM dropped d JOIN sources s ON s.id = d.source_id"
                    f" WHERE s.name = ? AND d.article_id IN ({marks})",
                    [source, *chunk, source, *chunk],
                )
            )
        return found

    # --- items the rules dropped ------------------------------------------------------------

    def remembered_drops(self, article_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Of these ids, those dropped before: id → (rule, content hash judged)."""
        found: dict[str, tuple[str, str]] = {}
        for chunk, marks in in_chunks(list(dict.fromkeys(article_ids))):
            rows = self._rows(
                f"SELECT article_id, rule, content_hash FROM dropped WHERE article_id IN ({marks})", chunk
            )
            found.update({row[0]: (row[1], row[2]) for row in rows})
        return found

    def save_dropped(self, items: Sequence[DroppedItem]) -> None:
        """Remember items dropped at the door (never stored as articles), replacing what was
        remembered of them."""
        with self._write() as conn:
            for item in items:
                conn.execute(
                    f"INSERT OR REPLACE INTO {DROPPED_INTO}"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (item.article_id, self._source_id(conn, item.source), item.title, item.url, item.rule,
                     item.content_hash, to_iso(item.dropped)),
                )  # fmt: skip

    def drop_articles(self, drops: Sequence[tuple[str, str]], *, now: datetime) -> int:
        """Move stored articles the rules dropped once grouped (id, rule) out of the articles,
        into what is remembered; how many were moved."""
        moved = 0
        with self._write() as conn:
            for article_id, rule in drops:
                conn.execute(
                    f"INSERT OR REPLACE INTO {DROPPED_INTO}"
                    " SELECT id, source_id, title, url, ?, content_hash, ? FROM articles WHERE id = ?",
                    (rule, to_iso(now), article_id),
                )
                moved += conn.execute("DELETE FROM articles WHERE id = ?", (article_id,)).rowcount
        return moved

    def page_validators(self, urls: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        """The ETag and Last-Modified each of these article pages was last fetched with."""
        found: dict[str, tuple[str | None, str | None]] = {}
        for chunk, marks in in_chunks(list(dict.fromkeys(urls))):
            rows = self._rows(f"SELECT url, etag, last_modified FROM pages WHERE url IN ({marks})", chunk)
            found.update({row[0]: (row[1], row[2]) for row in rows})
        return found

    def save_page_validators(
        self, pages: Sequence[tuple[str, str | None, str | None]], *, now: datetime
    ) -> None:
        with self._write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO pages (url, etag, last_modified, fetched) VALUES (?, ?, ?, ?)",
                [(url, etag, modified, to_iso(now)) for url, etag, modified in pages],
            )

    def forget_drops(self, article_ids: Sequence[str]) -> None:
        """Forget these drops (the rules, as they are now, keep the items)."""
        with self._write() as conn:
            for chunk, marks in in_chunks(list(article_ids)):
                conn.execute(f"DELETE FROM dropped WHERE article_id IN ({marks})", chunk)

    def dropped_items(self, *, limit: int = 100) -> list[DroppedItem]:
        """What the rules dropped, the latest first."""
        rows = self._rows(
            "SELECT d.*, s.name AS source FROM dropped d JOIN sources s ON s.id = d.source_id"
            " ORDER BY d.dropped DESC, d.article_id LIMIT ?",
            [limit],
        )
        return [dropped_of(row) for row in rows]


DROPPED_INTO = "dropped (article_id, source_id, title, url, rule, content_hash, dropped)"


def dropped_of(row: Row) -> DroppedItem:
    return DroppedItem(
        row["article_id"], row["source"], row["title"], row["url"], row["rule"], row["content_hash"],
        when(row["dropped"]),
    )  # fmt: skip


def _existing(
    conn: sqlite3.Connection, column: str, keys: Sequence[str | None], source_id: int | None = None
) -> dict[str, dict[str, Any]]:
    """Stored articles whose ``column`` is one of ``keys`` (of one source's, if given)."""
    found: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(k for k in keys if k))
    mine = "" if source_id is None else f" AND source_id = {int(source_id)}"
    for chunk, marks in in_chunks(unique):
        for id_, url, content_hash, source_id_ in conn.execute(
            f"SELECT id, url, content_hash, source_id FROM articles WHERE {column} IN ({marks}){mine}", chunk
        ):
            found[id_ if column == "id" else url] = {
                "id": id_,
                "content_hash": content_hash,
                "source_id": source_id_,
            }
    return found


def _content_values(article: Article) -> tuple[Any, ...]:
    """The values of :data:`_CONTENT_COLUMNS`, in that order."""
    published = to_iso(article.published) if article.published else None
    return (article.guid, article.url, article.title, article.author, published)


def _update(conn: sqlite3.Connection, key: str, article: Article, now: datetime) -> None:
    """A changed version of stored article ``key``: its row, its text and its index entry."""
    conn.execute(
        f"{_UNINDEX} SELECT 'delete', a.rowid, {_TOKENS} {_INDEXED} WHERE a.id = ?",
        [key],
    )
    conn.execute(
        f"UPDATE articles SET {', '.join(f'{c} = ?' for c in _CONTENT_COLUMNS)},"
        " updated = ?, content_hash = ?, grouped = 0 WHERE id = ?",
        (*_content_values(article), to_iso(now), article.content_hash, key),
    )
    conn.execute(
        "UPDATE article_texts SET summary_html = ?, summary_text = ? WHERE article_id = ?",
        (article.summary_html, article.summary_text, key),
    )
    conn.execute(
        f"{_INDEX} SELECT a.rowid, {_TOKENS} {_INDEXED} WHERE a.id = ?",
        [key],
    )


def _article_values(article: Article, source_id: int) -> tuple[Any, ...]:
    return (
        article.id,
        source_id,
        *_content_values(article),
        to_iso(article.first_seen),
        to_iso(article.updated),
        article.content_hash,
    )


def article_of(row: Row) -> Article:
    return Article(
        id=row["id"],
        source=row["source"],
        title=row["title"],
        url=row["url"],
        guid=row["guid"],
        summary_html=row["summary_html"],
        summary_text=row["summary_text"],
        author=row["author"],
        published=dt(row["published"]),
        first_seen=when(row["first_seen"]),
        updated=when(row["updated"]),
        content_hash=row["content_hash"],
        regions=tuple(decoded(row["regions"] or "[]")),
        themes=tuple(decoded(row["themes"] or "[]")),
        story=row["story"],
        places=tuple(decoded(row["places"] or "[]")),
        theme_matches=decoded(row["theme_matches"] or "{}"),
    )
