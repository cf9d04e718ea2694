"""Articles: saving a pull's articles (new, updated, unchanged), listing, searching; what
the rules dropped. One set of statements for both backends but the layout, the writes of
the text and its search index, and search itself; and SQLite's own (PostgreSQL's:
``postgres/articles.py``)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar

from digest.common.errors import SearchTimeout
from digest.common.models import Article
from digest.common.query import Query, Term, index_text
from digest.common.sanitize import paragraphs_html
from digest.store.base import Row, SqliteBase, record_of, when
from digest.store.dialect import Area, Tx
from digest.store.records import DroppedItem, Headline, SaveCounts

_COLUMNS = "a.*, t.summary_html, t.summary_text, s.name AS source, e.places, e.theme_matches"
_JOINS = (
    "JOIN article_texts t ON t.article_id = a.id JOIN sources s ON s.id = a.source_id"
    " LEFT JOIN article_evidence e ON e.article_id = a.id"
)
_CONTENT_COLUMNS = ("guid", "url", "title", "author", "published")
# The search index is contentless: it is told each version of the text it is to forget.
_INDEX = "INSERT INTO articles_fts (rowid, title, summary_text)"
_UNINDEX = "INSERT INTO articles_fts (articles_fts, rowid, title, summary_text)"
_INDEXED = "FROM articles a JOIN article_texts t ON t.article_id = a.id"
# What the index is given: the one tokenizer's tokens (digest.common.query), never the text itself.
_TOKENS = "search_tokens(a.title), search_tokens(t.summary_text)"


SEARCH_SECONDS = 2.0


def seen_in(since: datetime | None, until: datetime | None) -> tuple[list[str], list[Any]]:
    """``since <= first_seen < until`` (either end open when None) as WHERE terms, with
    their arguments."""
    where, args = ["1 = 1"], []
    for bound, op in ((since, ">="), (until, "<")):
        if bound is not None:
            where.append(f"a.first_seen {op} ?")
            args.append(bound)
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


class ArticlesArea(Area):
    """Articles, in the statements both backends share; each backend's class says how its
    layout is read (``_columns``, ``_from``, ``_order``) and written (``_insert``, ``_update``), and
    searches its own way."""

    _columns: ClassVar[str]  # every column an Article is made of, ``a`` the article, ``s`` its source
    _from: ClassVar[str]  # the tables they come from
    _order: ClassVar[str]  # storage order of articles
    # How many of a search's matches are ranked: the newest ones (in the window asked for).
    # A search's cost then follows the page it fills, not how many of a large site's
    # articles match a common word (issue 30).
    search_candidates: ClassVar[int] = 2000

    def save_articles(self, source: str, articles: Sequence[Article], *, now: datetime) -> SaveCounts:
        """Insert new articles and update changed ones in one transaction; ``first_seen`` of an
        existing article never changes, an update is dated ``now``. An article whose URL this
        source already stored is that article; another source's row is never touched."""
        new: list[Article] = []
        updated = unchanged = 0
        with self._articles_write() as tx:
            source_id = self._source_id(tx, source)
            by_id = self._existing(tx, "id", [a.id for a in articles])
            # A link is the same article within its source only: another's never claims it.
            by_url = self._existing(tx, "url", [a.url for a in articles if a.url], source_id)
            seen: set[str] = set()
            for article in articles:
                row = by_id.get(article.id) or (by_url.get(article.url) if article.url else None)
                key = row["id"] if row else article.id
                if key in seen:
                    continue
                seen.add(key)
                if row is None:
                    new.append(article)
                    if article.url:
                        by_url[article.url] = {"id": article.id, "content_hash": article.content_hash,
                                               "source_id": source_id}  # fmt: skip
                elif row["content_hash"] == article.content_hash or row["source_id"] != source_id:
                    # The same link from another source is that source's article: the first
                    # source to store it keeps it, or the row would flip between them.
                    unchanged += 1
                else:
                    self._update(tx, key, article, now)
                    updated += 1
            if new:
                self._insert(tx, source_id, new)
            if new or updated:
                self._changed(tx)
        return SaveCounts(len(new), updated, unchanged)

    def articles(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        region: str | None = None,
        theme: str | None = None,
        source: str | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> list[Article]:
        """Stored articles, newest first (by published date, else first seen; ties in the
        order they were stored). ``since`` and ``until`` select by ``first_seen``, the time
        digest first stored them: ``since <= first_seen < until``, so consecutive windows
        never share or skip an article. ``after``: the page after that article."""
        where, args = seen_in(since, until)
        if source is not None:
            where.append("s.name = ?")
            args.append(source)
        rows = self._listing(self._columns, self._from, where, args, region, theme, limit, after)
        return [article_of(row) for row in rows]

    def search(
        self, query: Query, *, limit: int = 20, since: datetime | None = None, until: datetime | None = None
    ) -> list[Article]:
        """Articles whose title or text match ``query`` (first seen in ``[since, until)``
        when given), best match first among the newest ``search_candidates`` matches. At
        most ``SEARCH_SECONDS`` of work: longer is SearchTimeout, never a stuck worker."""
        where, args = seen_in(since, until)
        return [article_of(row) for row in self._matching(query, where, args, limit)]

    def article(self, article_id: str) -> Article | None:
        """One article by id."""
        row = self._row(f"SELECT {self._columns} FROM {self._from} WHERE a.id = ?", [article_id])
        return article_of(row) if row else None

    def headlines(
        self,
        *,
        limit: int | None,
        region: str | None = None,
        theme: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Headline]:
        """The newest articles' titles and groups, as :meth:`articles` lists them, no text read."""
        where, args = seen_in(since, until)
        rows = self._listing(
            "a.id, a.title, s.name AS source, a.published, a.first_seen, a.regions, a.themes",
            "articles a JOIN sources s ON s.id = a.source_id",
            where,
            args,
            region,
            theme,
            limit,
        )
        return [record_of(Headline, row) for row in rows]

    def _listing(
        self,
        columns: str,
        tables: str,
        where: list[str],
        args: list[Any],
        region: str | None,
        theme: str | None,
        limit: int | None,
        after: str | None = None,
    ) -> list[Row]:
        """Articles newest first (ties in the order stored), of a region and a theme when
        given: then read through ``article_groups``, that group's own rows in list order
        (the first group given drives; any other is a test of each row); ``after`` an
        article's id, those after it."""
        at, seq = "coalesce(a.published, a.first_seen)", self._order
        order = f"{at} DESC, {seq} ASC"
        groups = [(kind, slug) for kind, slug in (("region", region), ("theme", theme)) if slug is not None]
        if groups:
            (kind, slug), *others = groups
            # CROSS JOIN: SQLite then reads the group's rows first, in the order asked for.
            tables = f"article_groups g CROSS JOIN {tables}"
            where = ["g.kind = ? AND g.slug = ?", f"{self._order} = g.seq", *where]
            args = [kind, slug, *args]
            for kind, slug in others:
                where.append(
                    "EXISTS (SELECT 1 FROM article_groups h WHERE h.kind = ? AND h.slug = ?"
                    " AND h.at = g.at AND h.seq = g.seq)"
                )
                args += [kind, slug]
            order = "g.at DESC, g.seq ASC"
            at, seq = "g.at", "g.seq"
        if after is not None:  # keyset: strictly after that article's place in the order
            # (``at <= its at`` alone is what an index seeks to; the rest sorts out the ties)
            mark_at = "(SELECT coalesce(m.published, m.first_seen) FROM articles m WHERE m.id = ?)"
            mark_seq = f"(SELECT {self._order.replace('a.', 'm.')} FROM articles m WHERE m.id = ?)"
            where = [*where, f"{at} <= {mark_at}", f"({at} < {mark_at} OR {seq} > {mark_seq})"]
            args = [*args, after, after, after]
        sql = f"SELECT {columns} FROM {tables} WHERE {' AND '.join(where)} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            args = [*args, limit]
        return self._rows(sql, args)

    def count_articles(self) -> int:
        # Kept by the database's triggers as articles come and go (see the schema).
        return int(self._value("SELECT coalesce(max(articles), 0) FROM group_totals WHERE kind = 'all'"))

    def content_hashes(self, article_ids: Sequence[str]) -> dict[str, str]:
        """The content hash of each of these articles that is stored."""
        return {key: row["content_hash"] for key, row in self._existing(None, "id", article_ids).items()}

    def owned_ids(self, source: str, article_ids: Sequence[str]) -> set[str]:
        """Which of these ids ``source`` stored: as an article, or as an item its rules dropped."""
        found: set[str] = set()
        ids = list(dict.fromkeys(article_ids))
        # One statement a slice (one snapshot of both tables), each table tested on its column.
        slices = zip(
            self.dialect.in_list("a.id", ids), self.dialect.in_list("d.article_id", ids), strict=True
        )
        for (stored, args), (dropped, _) in slices:
            found.update(
                row["id"]
                for row in self._rows(
                    "SELECT a.id FROM articles a JOIN sources s ON s.id = a.source_id"
                    f" WHERE s.name = ? AND {stored} UNION SELECT d.article_id FROM dropped d"
                    f" JOIN sources s ON s.id = d.source_id WHERE s.name = ? AND {dropped}",
                    [source, *args, source, *args],
                )
            )
        return found

    # --- items the rules dropped ------------------------------------------------------------

    def remembered_drops(self, article_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Of these ids, those dropped before: id → (rule, content hash judged)."""
        found: dict[str, tuple[str, str]] = {}
        for inside, args in self.dialect.in_list("article_id", list(dict.fromkeys(article_ids))):
            rows = self._rows(f"SELECT article_id, rule, content_hash FROM dropped WHERE {inside}", args)
            found.update({row["article_id"]: (row["rule"], row["content_hash"]) for row in rows})
        return found

    def save_dropped(self, items: Sequence[DroppedItem]) -> None:
        """Remember items dropped at the door (never stored as articles), replacing what was
        remembered of them."""
        with self._write() as tx:
            for item in items:
                tx.execute(
                    f"INSERT INTO {DROPPED_INTO} VALUES (?, ?, ?, ?, ?, ?, ?) {_REDROPPED}",
                    (item.article_id, self._source_id(tx, item.source), item.title, item.url, item.rule,
                     item.content_hash, item.dropped),
                )  # fmt: skip

    def drop_articles(self, drops: Sequence[tuple[str, str]], *, now: datetime) -> int:
        """Move stored articles the rules dropped once grouped (id, rule) out of the articles,
        into what is remembered (replacing what was remembered of them); how many were moved."""
        moved = 0
        with self._articles_write() as tx:
            for article_id, rule in drops:
                tx.execute(
                    f"INSERT INTO {DROPPED_INTO}"
                    " SELECT id, source_id, title, url, ?, content_hash, ? FROM articles WHERE id = ?"
                    f" {_REDROPPED}",
                    (rule, now, article_id),
                )
                moved += tx.execute("DELETE FROM articles WHERE id = ?", (article_id,)).rowcount
            if moved:
                self._changed(tx)
        return moved

    def page_validators(self, urls: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        """The ETag and Last-Modified each of these article pages was last fetched with."""
        found: dict[str, tuple[str | None, str | None]] = {}
        for inside, args in self.dialect.in_list("url", list(dict.fromkeys(urls))):
            rows = self._rows(f"SELECT url, etag, last_modified FROM pages WHERE {inside}", args)
            found.update({row["url"]: (row["etag"], row["last_modified"]) for row in rows})
        return found

    def save_page_validators(
        self, pages: Sequence[tuple[str, str | None, str | None]], *, now: datetime
    ) -> None:
        """Remember the validators each article page was fetched with ``now``."""
        with self._write() as tx:
            tx.executemany(
                "INSERT INTO pages (url, etag, last_modified, fetched) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (url) DO UPDATE SET etag = excluded.etag,"
                " last_modified = excluded.last_modified, fetched = excluded.fetched",
                [(url, etag, modified, now) for url, etag, modified in pages],
            )

    def forget_drops(self, article_ids: Sequence[str]) -> None:
        """Forget these drops (the rules, as they are now, keep the items)."""
        with self._write() as tx:
            for inside, args in self.dialect.in_list("article_id", list(article_ids)):
                tx.execute(f"DELETE FROM dropped WHERE {inside}", args)

    def dropped_items(self, *, limit: int = 100) -> list[DroppedItem]:
        """What the rules dropped, the latest first."""
        rows = self._rows(
            "SELECT d.*, s.name AS source FROM dropped d JOIN sources s ON s.id = d.source_id"
            " ORDER BY d.dropped DESC, d.article_id LIMIT ?",
            [limit],
        )
        return [dropped_of(row) for row in rows]

    def _existing(
        self, tx: Tx | None, column: str, keys: Sequence[str | None], source_id: int | None = None
    ) -> dict[str, dict[str, Any]]:
        """Stored articles whose ``column`` is one of ``keys`` (of one source's, if given), by
        that column; read in ``tx`` if given."""
        found: dict[str, dict[str, Any]] = {}
        if not any(keys):
            return found  # (PostgreSQL would ask with an empty array)
        mine = "" if source_id is None else " AND source_id = ?"
        for inside, args in self.dialect.in_list(column, list(dict.fromkeys(k for k in keys if k))):
            sql = f"SELECT id, url, content_hash, source_id FROM articles WHERE {inside}{mine}"
            args = args if source_id is None else [*args, source_id]
            rows = tx.execute(sql, args).fetchall() if tx is not None else self._rows(sql, args)
            found.update({row[column]: dict(row) for row in rows})
        return found

    def _matching(self, query: Query, where: list[str], args: list[Any], limit: int) -> list[Any]:
        """The rows of up to ``limit`` articles matching ``query`` and ``where`` (with
        ``args``), best match first; SearchTimeout past ``SEARCH_SECONDS``."""
        raise NotImplementedError

    def _insert(self, tx: Tx, source_id: int, articles: list[Article]) -> None:
        """Store new articles, text and search index included."""
        raise NotImplementedError

    def _update(self, tx: Tx, key: str, article: Article, now: datetime) -> None:
        """A changed version of stored article ``key``: its row, its text and its index entry."""
        raise NotImplementedError


DROPPED_INTO = "dropped (article_id, source_id, title, url, rule, content_hash, dropped)"
# An item dropped again is remembered as this last drop says.
_REDROPPED = (
    "ON CONFLICT (article_id) DO UPDATE SET source_id = excluded.source_id, title = excluded.title,"
    " url = excluded.url, rule = excluded.rule, content_hash = excluded.content_hash,"
    " dropped = excluded.dropped"
)


class SqliteArticlesArea(ArticlesArea, SqliteBase):
    """SQLite's articles: text in ``article_texts``, searched through the FTS5 index
    ``articles_fts`` (contentless: told each version of the text it is to forget)."""

    _columns, _from = _COLUMNS, f"articles a {_JOINS}"
    _order = "a.rowid"

    def _matching(self, query: Query, where: list[str], args: list[Any], limit: int) -> list[Any]:
        terms = " AND ".join(where)
        # FTS5 walks its matches newest first and seeks to a rowid: the oldest candidate's
        # rowid bounds what is ranked.
        newest = (
            "SELECT f.rowid AS r FROM articles_fts f JOIN articles a ON a.rowid = f.rowid"
            f" WHERE articles_fts MATCH ? AND {terms} ORDER BY f.rowid DESC LIMIT ?"
        )
        sql = (
            f"SELECT {_COLUMNS} FROM articles_fts f JOIN articles a ON a.rowid = f.rowid {_JOINS}"
            f" WHERE articles_fts MATCH ? AND {terms}"
            f" AND f.rowid >= coalesce((SELECT min(r) FROM ({newest})), 0) ORDER BY rank, f.rowid LIMIT ?"
        )
        matched = fts5(query)
        args = [*args, matched, *args, max(self.search_candidates, limit)]
        # Past the deadline, the progress handler interrupts the query.
        deadline = time.monotonic() + SEARCH_SECONDS
        self.conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        try:
            return self._rows(sql, [matched, *args, limit])
        except sqlite3.OperationalError as exc:
            if time.monotonic() > deadline:
                raise SearchTimeout(f"search {query.text!r}: took too long") from exc
            raise
        finally:
            self.conn.set_progress_handler(None, 0)

    def _insert(self, tx: Tx, source_id: int, articles: list[Article]) -> None:
        # Rowids only grow (none is ever given explicitly), so the new rows are those above
        # the largest before; the search index takes them in one statement.
        last = tx.execute("SELECT coalesce(max(rowid), 0) AS last FROM articles").fetchone()["last"]
        tx.executemany(
            f"INSERT INTO articles (id, source_id, {', '.join(_CONTENT_COLUMNS)},"
            " first_seen, updated, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (a.id, source_id, *_content_values(a), a.first_seen, a.updated, a.content_hash)
                for a in articles
            ],
        )
        tx.executemany(
            "INSERT INTO article_texts (article_id, summary_html, summary_text) VALUES (?, ?, ?)",
            [(a.id, stored_html(a), a.summary_text) for a in articles],
        )
        rowids = dict(tx.execute("SELECT id, rowid FROM articles WHERE rowid > ?", [last]).fetchall())
        tx.executemany(f"{_INDEX} VALUES (?, ?, ?)", [(rowids[a.id], *search_tokens(a)) for a in articles])

    def _update(self, tx: Tx, key: str, article: Article, now: datetime) -> None:
        tx.execute(f"{_UNINDEX} SELECT 'delete', a.rowid, {_TOKENS} {_INDEXED} WHERE a.id = ?", [key])
        tx.execute(
            f"UPDATE articles SET {', '.join(f'{c} = ?' for c in _CONTENT_COLUMNS)},"
            " updated = ?, content_hash = ?, grouped = 0 WHERE id = ?",
            (*_content_values(article), now, article.content_hash, key),
        )
        tx.execute(
            "UPDATE article_texts SET summary_html = ?, summary_text = ? WHERE article_id = ?",
            (stored_html(article), article.summary_text, key),
        )
        tx.execute(f"{_INDEX} SELECT rowid, ?, ? FROM articles WHERE id = ?", [*search_tokens(article), key])


def search_tokens(article: Article) -> tuple[str, str]:
    """What the search index is given of an article's title and text: the one tokenizer's
    tokens, worked out with the article's normalisation (if of this title and text), or now.
    (A contentless index must be told exactly what it was given, to forget it.)"""
    given = article.search_tokens
    if given is not None and given.title == article.title and given.text == article.summary_text:
        return given.title_tokens, given.text_tokens
    return index_text(article.title), index_text(article.summary_text)


def dropped_of(row: Row) -> DroppedItem:
    return DroppedItem(
        row["article_id"], row["source"], row["title"], row["url"], row["rule"], row["content_hash"],
        when(row["dropped"]),
    )  # fmt: skip


def _content_values(article: Article) -> tuple[Any, ...]:
    """The values of :data:`_CONTENT_COLUMNS`, in that order."""
    return (article.guid, article.url, article.title, article.author, article.published)


def stored_html(article: Article) -> str | None:
    """An article's HTML as stored: None when it is only its text's paragraphs (the text is
    then stored once; :func:`article_of` writes the HTML back), as it is.
    The check is exact, so what is read back is what was stored, byte for byte."""
    html = article.summary_html
    return None if html and html == paragraphs_html(article.summary_text) else html


def article_of(row: Row) -> Article:
    found = record_of(Article, row)
    if row["summary_html"] is None:
        return replace(found, summary_html=paragraphs_html(found.summary_text))
    return found
