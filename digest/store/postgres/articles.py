"""Articles on PostgreSQL: the shared statements (``digest/store/articles.py``) over this
layout (text in the article's row), and full-text search over a ``tsvector`` made here from
:func:`digest.common.query.index_tokens` (title tokens weigh more), with a ``tsquery`` made
from the same tokens: PostgreSQL's own parser reads neither."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from digest.common.errors import SearchTimeout
from digest.common.models import Article
from digest.common.query import Query
from digest.store.articles import SEARCH_SECONDS, ArticlesArea, search_tokens, stored_html
from digest.store.dialect import Tx
from digest.store.postgres.base import PgBase, by_columns
from digest.store.postgres.search import search_vector_of, tsquery

# Every column an Article is made of (not the search vector, which no list needs).
_COLUMNS = (
    "a.id, a.guid, a.url, a.title, a.summary_html, a.summary_text, a.author, a.published, a.first_seen,"
    " a.updated, a.content_hash, a.regions, a.themes, a.story, a.places, a.theme_matches, s.name AS source"
)
_CONTENT_COLUMNS = ("guid", "url", "title", "author", "published", "summary_html", "summary_text")
_TIMES = frozenset({"published", "first_seen", "updated"})  # the others are text


class PgArticlesArea(ArticlesArea, PgBase):
    _columns, _from = _COLUMNS, "articles a JOIN sources s ON s.id = a.source_id"
    _order = "a.seq"

    def _matching(self, query: Query, where: list[str], args: list[Any], limit: int) -> list[Any]:
        # Titles weigh more in the rank; the server stops the query past the time allowed.
        match, terms = tsquery(query)
        conditions = " AND ".join(where)
        # The oldest of the newest candidates bounds what is ranked (see search_candidates).
        newest = (
            f"SELECT a.seq FROM articles a, (SELECT {match} AS q) tq WHERE a.search @@ tq.q"
            f" AND {conditions} ORDER BY a.seq DESC LIMIT ?"
        )
        sql = (
            f"SELECT {_COLUMNS}, ts_rank(a.search, tq.q) AS rank FROM articles a"
            f" JOIN sources s ON s.id = a.source_id, (SELECT {match} AS q) tq"
            f" WHERE a.search @@ tq.q AND {conditions}"
            f" AND a.seq >= coalesce((SELECT min(c.seq) FROM ({newest}) c), 0)"
            " ORDER BY rank DESC, a.seq LIMIT ?"
        )
        candidates = max(self.search_candidates, limit)
        try:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute(f"SET LOCAL statement_timeout = {int(SEARCH_SECONDS * 1000)}")
                return conn.execute(sql, [*terms, *args, *terms, *args, candidates, limit]).fetchall()
        except psycopg.errors.QueryCanceled as exc:
            raise SearchTimeout(f"search {query.text!r}: took too long") from exc

    def _insert(self, tx: Tx, source_id: int, articles: list[Article]) -> None:
        # A statement a batch (see ``by_columns``), stored in the order given.
        columns = ("id", *_CONTENT_COLUMNS, "first_seen", "updated", "content_hash", "search")
        arrays = ", ".join("%b::timestamptz[]" if c in _TIMES else "%b::text[]" for c in columns)
        sql = (
            f"INSERT INTO articles (source_id, {', '.join(columns)})"
            f" SELECT %b, {', '.join(f'v.{c}' for c in columns[:-1])}, v.search::tsvector"
            f" FROM unnest({arrays})"
            f" WITH ORDINALITY AS v({', '.join(columns)}, n) ORDER BY v.n"
        )
        rows = [
            (a.id, *_content_values(a), a.first_seen, a.updated, a.content_hash,
             search_vector_of(search_tokens(a)))
            for a in articles
        ]  # fmt: skip
        by_columns(tx, sql, rows, source_id)

    def _update(self, tx: Tx, key: str, article: Article, now: datetime) -> None:
        tx.execute(
            f"UPDATE articles SET {', '.join(f'{c} = ?' for c in _CONTENT_COLUMNS)},"
            " updated = ?, content_hash = ?, grouped = FALSE, search = ?::tsvector WHERE id = ?",
            (*_content_values(article), now, article.content_hash,
             search_vector_of(search_tokens(article)), key),
        )  # fmt: skip


def _content_values(article: Article) -> tuple[Any, ...]:
    """The values of :data:`_CONTENT_COLUMNS`, in that order."""
    return (article.guid, article.url, article.title, article.author, article.published,
            stored_html(article), article.summary_text)  # fmt: skip
