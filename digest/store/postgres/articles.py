"""Articles on PostgreSQL: saving a pull's articles, listing, and full-text search over a
``tsvector`` made here from :func:`digest.common.query.index_tokens` (title tokens weigh more), with
a ``tsquery`` made from the same tokens: PostgreSQL's own parser reads neither."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from digest.common.errors import StoreError
from digest.common.models import Article
from digest.common.query import Query
from digest.store.articles import DROPPED_INTO, SEARCH_SECONDS, article_of, dropped_of, seen_in
from digest.store.postgres.base import Conn, PgBase
from digest.store.postgres.search import search_vector, tsquery
from digest.store.records import DroppedItem, SaveCounts

# Every column an Article is made of (not the search vector, which no list needs).
_COLUMNS = (
    "a.id, a.guid, a.url, a.title, a.summary_html, a.summary_text, a.author, a.published, a.first_seen,"
    " a.updated, a.content_hash, a.regions, a.themes, a.story, a.places, a.theme_matches, s.name AS source"
)
ARTICLE_SELECT = f"SELECT {_COLUMNS} FROM articles a JOIN sources s ON s.id = a.source_id"
_CONTENT_COLUMNS = ("guid", "url", "title", "author", "published", "summary_html", "summary_text")


class PgArticlesArea(PgBase):
    def save_articles(self, source: str, articles: Sequence[Article], *, now: datetime) -> SaveCounts:
        """As the SQLite store's; one worker at a time (see ``_articles_write``)."""
        new = updated = unchanged = 0
        with self._articles_write() as conn:
            source_id = self._source_id(conn, source)
            by_id = _existing(conn, "id", [a.id for a in articles])
            by_url = _existing(conn, "url", [a.url for a in articles if a.url], source_id)
            seen: set[str] = set()
            inserts: list[tuple[Any, ...]] = []
            for article in articles:
                row = by_id.get(article.id) or (by_url.get(article.url) if article.url else None)
                key = row["id"] if row else article.id
                if key in seen:
                    continue
                seen.add(key)
                if row is None:
                    inserts.append(
                        (article.id, source_id, *_content_values(article), article.first_seen,
                         article.updated, article.content_hash,
                         search_vector(article.title, article.summary_text))
                    )  # fmt: skip
                    if article.url:
                        by_url[article.url] = {"id": article.id, "content_hash": article.content_hash,
                                               "source_id": source_id}  # fmt: skip
                    new += 1
                elif row["content_hash"] == article.content_hash or row["source_id"] != source_id:
                    unchanged += 1
                else:
                    conn.execute(
                        f"UPDATE articles SET {', '.join(f'{c} = %s' for c in _CONTENT_COLUMNS)},"
                        " updated = %s, content_hash = %s, grouped = FALSE, search = %s::tsvector"
                        " WHERE id = %s",
                        (
                            *_content_values(article),
                            now,
                            article.content_hash,
                            search_vector(article.title, article.summary_text),
                            key,
                        ),
                    )
                    updated += 1
            if inserts:
                with conn.cursor() as cursor:
                    cursor.executemany(
                        f"INSERT INTO articles (id, source_id, {', '.join(_CONTENT_COLUMNS)},"
                        " first_seen, updated, content_hash, search) VALUES (%s, %s, %s, %s, %s, %s, %s,"
                        " %s, %s, %s, %s, %s, %s::tsvector)",
                        inserts,
                    )
            if inserts or updated:
                self._changed(conn)
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
        where, args = seen_in(since, until, "%s", lambda moment: moment)
        if region is not None:
            where.append("a.regions ? %s")
            args.append(region)
        if theme is not None:
            where.append("a.themes ? %s")
            args.append(theme)
        if source is not None:
            where.append("s.name = %s")
            args.append(source)
        sql = (
            f"{ARTICLE_SELECT} WHERE {' AND '.join(where)}"
            " ORDER BY coalesce(a.published, a.first_seen) DESC, a.seq ASC"
        )
        if limit is not None:
            sql += " LIMIT %s"
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
        """Articles matching ``query``, best match first (titles weigh more); at most
        ``SEARCH_SECONDS`` of the server's time."""
        match, terms = tsquery(query)
        where, args = seen_in(since, until, "%s", lambda moment: moment)
        where, args = ["a.search @@ tq.q", *where], [*terms, *args]
        sql = (
            f"SELECT {_COLUMNS}, ts_rank(a.search, tq.q) AS rank FROM articles a"
            f" JOIN sources s ON s.id = a.source_id, (SELECT {match} AS q) tq"
            f" WHERE {' AND '.join(where)} ORDER BY rank DESC, a.seq LIMIT %s"
        )
        try:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute(f"SET LOCAL statement_timeout = {int(SEARCH_SECONDS * 1000)}")
                rows = conn.execute(sql, [*args, limit]).fetchall()
        except psycopg.errors.QueryCanceled as exc:
            raise StoreError(f"search {query.text!r}: took too long") from exc
        return [article_of(row) for row in rows]

    def article(self, article_id: str) -> Article | None:
        row = self._row(f"{ARTICLE_SELECT} WHERE a.id = %s", [article_id])
        return article_of(row) if row else None

    def count_articles(self) -> int:
        return int(self._value("SELECT count(*) FROM articles"))

    def content_hashes(self, article_ids: Sequence[str]) -> dict[str, str]:
        with self.pool.connection() as conn:
            return {key: row["content_hash"] for key, row in _existing(conn, "id", article_ids).items()}

    def owned_ids(self, source: str, article_ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(article_ids))
        rows = self._rows(
            "SELECT a.id FROM articles a JOIN sources s ON s.id = a.source_id"
            " WHERE s.name = %s AND a.id = ANY(%s)"
            " UNION SELECT d.article_id FROM dropped d JOIN sources s ON s.id = d.source_id"
            " WHERE s.name = %s AND d.article_id = ANY(%s)",
            [source, ids, source, ids],
        )
        return {str(next(iter(row.values()))) for row in rows}

    # --- items the rules dropped ------------------------------------------------------------

    def remembered_drops(self, article_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        rows = self._rows(
            "SELECT article_id, rule, content_hash FROM dropped WHERE article_id = ANY(%s)",
            [list(dict.fromkeys(article_ids))],
        )
        return {row["article_id"]: (row["rule"], row["content_hash"]) for row in rows}

    def save_dropped(self, items: Sequence[DroppedItem]) -> None:
        with self._write() as conn:
            for item in items:
                conn.execute(
                    f"INSERT INTO {DROPPED_INTO}"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (article_id) DO UPDATE SET"
                    " source_id = EXCLUDED.source_id, title = EXCLUDED.title, url = EXCLUDED.url,"
                    " rule = EXCLUDED.rule, content_hash = EXCLUDED.content_hash, dropped = EXCLUDED.dropped",
                    (item.article_id, self._source_id(conn, item.source), item.title, item.url, item.rule,
                     item.content_hash, item.dropped),
                )  # fmt: skip

    def drop_articles(self, drops: Sequence[tuple[str, str]], *, now: datetime) -> int:
        moved = 0
        with self._articles_write() as conn:
            for article_id, rule in drops:
                conn.execute(
                    f"INSERT INTO {DROPPED_INTO}"
                    " SELECT id, source_id, title, url, %s, content_hash, %s FROM articles WHERE id = %s"
                    " ON CONFLICT (article_id) DO UPDATE SET rule = EXCLUDED.rule,"
                    " dropped = EXCLUDED.dropped, content_hash = EXCLUDED.content_hash",
                    (rule, now, article_id),
                )
                moved += conn.execute("DELETE FROM articles WHERE id = %s", (article_id,)).rowcount
            if moved:
                self._changed(conn)
        return moved

    def page_validators(self, urls: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        rows = self._rows(
            "SELECT url, etag, last_modified FROM pages WHERE url = ANY(%s)", [list(dict.fromkeys(urls))]
        )
        return {row["url"]: (row["etag"], row["last_modified"]) for row in rows}

    def save_page_validators(
        self, pages: Sequence[tuple[str, str | None, str | None]], *, now: datetime
    ) -> None:
        with self._write() as conn:
            for url, etag, modified in pages:
                conn.execute(
                    "INSERT INTO pages (url, etag, last_modified, fetched) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (url) DO UPDATE SET etag = EXCLUDED.etag,"
                    " last_modified = EXCLUDED.last_modified, fetched = EXCLUDED.fetched",
                    (url, etag, modified, now),
                )

    def forget_drops(self, article_ids: Sequence[str]) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM dropped WHERE article_id = ANY(%s)", [list(article_ids)])

    def dropped_items(self, *, limit: int = 100) -> list[DroppedItem]:
        rows = self._rows(
            "SELECT d.*, s.name AS source FROM dropped d JOIN sources s ON s.id = d.source_id"
            " ORDER BY d.dropped DESC, d.article_id LIMIT %s",
            [limit],
        )
        return [dropped_of(row) for row in rows]


def _existing(
    conn: Conn, column: str, keys: Sequence[str | None], source_id: int | None = None
) -> dict[str, dict[str, Any]]:
    unique = list(dict.fromkeys(k for k in keys if k))
    if not unique:
        return {}
    mine = "" if source_id is None else " AND source_id = %s"
    return {
        row[column]: row
        for row in conn.execute(
            f"SELECT id, url, content_hash, source_id FROM articles WHERE {column} = ANY(%s){mine}",
            [unique] if source_id is None else [unique, source_id],
        )
    }


def _content_values(article: Article) -> tuple[Any, ...]:
    """The values of :data:`_CONTENT_COLUMNS`, in that order."""
    return (article.guid, article.url, article.title, article.author, article.published,
            article.summary_html, article.summary_text)  # fmt: skip
