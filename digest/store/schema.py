"""The SQLite schema: its migrations, one sqlite-utils ``Migrations`` set named "digest",
append-only (a released step never changes what it does; a change is a new entry).

Each step is given a ``sqlite_utils.Database`` over the store's own connection and runs in a
write transaction of its own with foreign keys off (the runner, ``migrations.py``, checks the
references before it commits). Tables are created by their released SQL; a column is added
with ``add_column``; a table loses columns by ``transform()`` (SQLite's 12-step ALTER TABLE),
what it would drop put back (``_rebuild``); the one rebuild ``transform()`` cannot do
without changing the schema stays written out (``_subscriber_identity``). A step that stamps
or compares times asks ``now()``: the store's clock while the runner runs.

Through commit b1fc283 the same steps were hand-run SQL; rewritten on sqlite-utils they give
the same schema (a database made by that code, tests/data, and a new one compare equal).
sqlite_utils is imported only when the set is built (``migration_set``), never by importing
this module: opening an up-to-date database does not need it."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from digest.common.dates import Clock, to_iso, utcnow

if TYPE_CHECKING:
    from sqlite_utils import Database, Migrations

Step = Callable[["Database"], None]

SET_NAME = "digest"  # the set's name in sqlite-utils' _sqlite_migrations table

# Per thread: steps run in the thread of the store that runs them (threading is loaded
# already; contextvars would be one more import for every process that opens a store).
_RUNNING = threading.local()


@contextmanager
def clock_of(clock: Clock) -> Iterator[None]:
    """Steps run meanwhile in this thread read ``clock`` (a store's) for ``now()``."""
    before = getattr(_RUNNING, "clock", None)
    _RUNNING.clock = clock
    try:
        yield
    finally:
        _RUNNING.clock = before


def now() -> datetime:
    """Now, for a step: by the clock of the store that runs it (the system's otherwise)."""
    clock: Clock = getattr(_RUNNING, "clock", None) or utcnow
    return clock()


def _initial(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE sources (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            url TEXT NOT NULL,
            fetch_url TEXT NOT NULL,
            kind TEXT NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1, -- 0 once the server answered 410 Gone
            etag TEXT,
            last_modified TEXT,
            last_status INTEGER,
            last_error TEXT,
            last_fetched TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            next_fetch TEXT,
            created TEXT NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE articles (
            id TEXT PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            guid TEXT,
            url TEXT,
            title TEXT NOT NULL,
            summary_html TEXT NOT NULL,
            summary_text TEXT NOT NULL,
            author TEXT,
            published TEXT,
            first_seen TEXT NOT NULL,
            updated TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            regions TEXT NOT NULL DEFAULT '[]',
            themes TEXT NOT NULL DEFAULT '[]',
            story TEXT
        )"""
    )
    db.execute("CREATE INDEX articles_url ON articles(url)")
    db.execute("CREATE INDEX articles_source ON articles(source_id)")
    db.execute("CREATE INDEX articles_first_seen ON articles(first_seen)")
    # External-content FTS5 index kept in step by triggers, so a search never sees stale text
    # (contentless, kept by save_articles, since 0010).
    db.execute(
        "CREATE VIRTUAL TABLE articles_fts USING fts5(title, summary_text, content='articles',"
        " content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')"
    )
    db.execute(
        "CREATE TRIGGER articles_ai AFTER INSERT ON articles BEGIN"
        " INSERT INTO articles_fts (rowid, title, summary_text)"
        " VALUES (new.rowid, new.title, new.summary_text); END"
    )
    db.execute(
        "CREATE TRIGGER articles_ad AFTER DELETE ON articles BEGIN"
        " INSERT INTO articles_fts (articles_fts, rowid, title, summary_text)"
        " VALUES ('delete', old.rowid, old.title, old.summary_text); END"
    )
    db.execute(
        "CREATE TRIGGER articles_au AFTER UPDATE OF title, summary_text ON articles BEGIN"
        " INSERT INTO articles_fts (articles_fts, rowid, title, summary_text)"
        " VALUES ('delete', old.rowid, old.title, old.summary_text);"
        " INSERT INTO articles_fts (rowid, title, summary_text)"
        " VALUES (new.rowid, new.title, new.summary_text); END"
    )


def _grouping(db: Database) -> None:
    # places / theme_matches: the evidence behind regions and themes; grouped = 0 marks
    # articles whose text has not been classified since it last changed.
    articles = db.table("articles")
    articles.add_column("places", str, not_null_default="[]")
    articles.add_column("theme_matches", str, not_null_default="{}")
    articles.add_column("grouped", int, not_null_default=0)
    db.execute("CREATE INDEX articles_grouped ON articles(grouped) WHERE grouped = 0")
    db.execute("CREATE INDEX articles_story ON articles(story)")
    db.execute(
        """
        CREATE TABLE stories (
            id TEXT PRIMARY KEY,
            label TEXT NOT NULL,
            articles INTEGER NOT NULL,
            first_seen TEXT NOT NULL,
            updated TEXT NOT NULL
        )"""
    )


def _recent_index(db: Database) -> None:
    # Lists are newest first by this expression; indexing it lets "the newest 50 of a
    # region" stop after 50 rows instead of sorting every article.
    db.execute("CREATE INDEX articles_recent ON articles(coalesce(published, first_seen) DESC)")


def _mail(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE subscribers (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced')),
            regions TEXT NOT NULL DEFAULT '[]',
            themes TEXT NOT NULL DEFAULT '[]',
            created TEXT NOT NULL,
            confirmed TEXT,
            unsubscribed TEXT,
            bounces INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute(
        """
        CREATE TABLE digests (
            id TEXT PRIMARY KEY,
            created TEXT NOT NULL,
            until TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('sending', 'done'))
        )"""
    )
    # The delivery ledger: one row per (digest, subscriber), written before the SMTP
    # transaction (pending) and right after it (sent or failed).
    db.execute(
        """
        CREATE TABLE deliveries (
            digest_id TEXT NOT NULL REFERENCES digests(id),
            subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
            since TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            message_id TEXT,
            reply TEXT,
            updated TEXT NOT NULL,
            PRIMARY KEY (digest_id, subscriber_id)
        )"""
    )
    db.execute("CREATE INDEX deliveries_pending ON deliveries(status) WHERE status = 'pending'")
    db.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _leases(db: Database) -> None:
    # A lease lets one of several `digest run` processes on a database do a job (send the
    # digest); it expires, so a crashed holder does not block the others for ever.
    db.execute("CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires TEXT NOT NULL)")


def _web_links_only(db: Database) -> None:
    # Earlier versions stored any scheme (javascript:, data:, file:); only web links are kept.
    db.execute(
        "UPDATE articles SET url = NULL WHERE url IS NOT NULL"
        " AND lower(substr(url, 1, 7)) != 'http://' AND lower(substr(url, 1, 8)) != 'https://'"
    )


def _subscriber_identity(db: Database) -> None:
    # AUTOINCREMENT: from now on a removed subscriber's id is never given to anyone else (ids
    # removed before this migration cannot be known; tokens are bound anyway). pending_since:
    # when the current sign-up began; confirmation links are bound to it. signups: the web
    # form's requests, handled after the answer (the same answer for every address).
    # Rebuilt by hand as SQLite's ALTER TABLE procedure says (foreign keys are off), not by
    # transform(): it cannot add AUTOINCREMENT (it only keeps one), and it would turn email's
    # COLLATE NOCASE into a UNIQUE (email COLLATE NOCASE) of a BINARY column, so looking an
    # address up in another case would find no one.
    db.execute(
        """
        CREATE TABLE subscribers_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced')),
            regions TEXT NOT NULL DEFAULT '[]',
            themes TEXT NOT NULL DEFAULT '[]',
            created TEXT NOT NULL,
            confirmed TEXT,
            unsubscribed TEXT,
            bounces INTEGER NOT NULL DEFAULT 0,
            pending_since TEXT
        )"""
    )
    db.execute(
        "INSERT INTO subscribers_new (id, email, status, regions, themes, created, confirmed, unsubscribed,"
        " bounces) SELECT id, email, status, regions, themes, created, confirmed, unsubscribed, bounces"
        " FROM subscribers"
    )
    db.execute("UPDATE subscribers_new SET pending_since = created WHERE status = 'pending'")
    db.execute("DROP TABLE subscribers")
    db.execute("ALTER TABLE subscribers_new RENAME TO subscribers")
    db.execute(
        """
        CREATE TABLE signups (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            email TEXT NOT NULL,
            regions TEXT NOT NULL DEFAULT '[]',
            themes TEXT NOT NULL DEFAULT '[]',
            created TEXT NOT NULL,
            subscriber_id INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_try TEXT NOT NULL,
            last_error TEXT
        )"""
    )
    db.execute("CREATE INDEX signups_due ON signups(next_try)")
    # Links made before tokens were bound stay good for unsubscribing the people who had them.
    db.execute(
        "INSERT OR REPLACE INTO settings (key, value) VALUES ('tokens_bound_since', ?)", [to_iso(now())]
    )


def _plausible_dates(db: Database) -> None:
    # Dates no publication can have (year 1, year 9999) were stored as published dates and
    # broke grouping and feed order; they are dropped, as ingestion now drops them.
    latest = to_iso(now() + timedelta(days=1))
    db.execute(
        "UPDATE articles SET published = NULL, grouped = 0 WHERE published < '1990-01-01' OR published > ?",
        [latest],
    )
    db.execute(
        "UPDATE articles SET updated = coalesce(published, first_seen) WHERE updated < '1990-01-01'"
        " OR updated > ?",
        [latest],
    )


def _source_lifecycle(db: Database) -> None:
    # removed: when the source left the configuration (its articles stay). id_name: the name
    # its article ids were made with, kept through a rename so ids (and feed entries) stay.
    sources = db.table("sources")
    sources.add_column("removed", str)
    sources.add_column("id_name", str)
    db.execute("UPDATE sources SET id_name = name")


def _article_texts(db: Database) -> None:
    # SQLite rewrites a whole row on any update, and an article row carried two long texts:
    # writing an article's regions or story cost as much as writing the article. The texts
    # move to their own table, so the grouping writes after every pull touch short rows.
    # The search index becomes contentless (it keeps no copy of the text, it points at
    # article rowids) and is kept by save_articles, a whole batch in one statement, instead
    # of a trigger per row; only a delete, which nothing in digest does, is left to a trigger.
    # Its text columns go by a rebuild of the table (article rowids kept: the index names them).
    db.execute(
        """
        CREATE TABLE article_texts (
            article_id TEXT PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
            summary_html TEXT NOT NULL,
            summary_text TEXT NOT NULL
        )"""
    )
    db.execute(
        "INSERT INTO article_texts (article_id, summary_html, summary_text)"
        " SELECT id, summary_html, summary_text FROM articles"
    )
    for trigger in ("articles_ai", "articles_ad", "articles_au"):
        db.execute(f"DROP TRIGGER {trigger}")
    db.execute("DROP TABLE articles_fts")
    _rebuild(db, "articles", drop={"summary_html", "summary_text"})
    db.execute(
        "CREATE VIRTUAL TABLE articles_fts USING fts5(title, summary_text, content='',"
        " tokenize='unicode61 remove_diacritics 2')"
    )
    db.execute(
        "INSERT INTO articles_fts (rowid, title, summary_text) SELECT a.rowid, a.title, t.summary_text"
        " FROM articles a JOIN article_texts t ON t.article_id = a.id"
    )
    db.execute(
        "CREATE TRIGGER articles_bd BEFORE DELETE ON articles BEGIN"
        " INSERT INTO articles_fts (articles_fts, rowid, title, summary_text)"
        " SELECT 'delete', old.rowid, old.title, t.summary_text FROM article_texts t"
        " WHERE t.article_id = old.id; END"
    )


def _article_evidence(db: Database) -> None:
    # The same reasoning for the evidence behind regions and themes (a kilobyte or two of
    # places per article): in its own table, a story or a region written after a pull
    # rewrites a short row. An article never classified has no row here.
    db.execute(
        """
        CREATE TABLE article_evidence (
            article_id TEXT PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
            places TEXT NOT NULL,
            theme_matches TEXT NOT NULL
        )"""
    )
    db.execute(
        "INSERT INTO article_evidence (article_id, places, theme_matches)"
        " SELECT id, places, theme_matches FROM articles WHERE places != '[]' OR theme_matches != '{}'"
    )
    _rebuild(db, "articles", drop={"places", "theme_matches"})


def _claims(db: Database) -> None:
    # Several processes on one database share the work: a source is pulled, and a delivery
    # sent, by the process that claimed it, until the claim ends or expires (its holder died).
    for table in ("sources", "deliveries"):
        db.table(table).add_column("claimed_by", str)
        db.table(table).add_column("claimed_until", str)


def _rate_hits(db: Database) -> None:
    # The subscribe form's rate limits, in the database so they hold across the processes
    # that serve it. Keys are hashes: no address or client is written down for this.
    db.execute("CREATE TABLE rate_hits (key TEXT NOT NULL, at TEXT NOT NULL)")
    db.execute("CREATE INDEX rate_hits_key ON rate_hits(key, at)")
    db.execute("CREATE INDEX rate_hits_at ON rate_hits(at)")


def _pending_order(db: Database) -> None:
    # Deliveries are claimed in batches in subscriber order: an index of the pending ones
    # only, so each claim starts at the first unsent row instead of stepping over every row
    # already sent (which made a 20,000-message digest's claims quadratic).
    db.execute(
        "CREATE INDEX deliveries_pending_order ON deliveries(digest_id, subscriber_id)"
        " WHERE status = 'pending'"
    )


def _rhythms(db: Database) -> None:
    # Each subscriber's own rhythm (NULL cadence: the site's digest_cron), their search
    # topics, and when their next digest falls due, indexed so a tick finds who is due
    # without reading everyone. A delivery names the period it closes: one per subscriber.
    for table in ("subscribers", "signups"):
        for column, kind in (("cadence", str), ("timezone", str), ("hour", int), ("weekday", int)):
            db.table(table).add_column(column, kind)
        db.table(table).add_column("topics", str, not_null_default="[]")
    db.table("subscribers").add_column("next_due", str)
    db.execute("CREATE INDEX subscribers_due ON subscribers(status, next_due)")
    db.execute("CREATE INDEX subscribers_rhythm ON subscribers(cadence, next_due)")
    db.table("deliveries").add_column("period", str)
    db.execute("CREATE UNIQUE INDEX deliveries_period ON deliveries(subscriber_id, period)")


def _feedback(db: Database) -> None:
    # What came back about a delivery after it was handed over (a bounce, a complaint), so
    # soft bounces count per digest and a repeat changes nothing; why a subscriber was moved
    # to bounced or unsubscribed; deliveries found again by Message-ID (provider webhooks).
    # add_column cannot give a column a CHECK: that one is added by its SQL.
    db.execute(
        "ALTER TABLE deliveries ADD COLUMN feedback TEXT CHECK (feedback IN ('soft', 'hard', 'complaint'))"
    )
    db.table("deliveries").add_column("feedback_detail", str)
    db.table("deliveries").add_column("feedback_at", str)
    db.table("subscribers").add_column("status_reason", str)
    db.execute("CREATE INDEX deliveries_message ON deliveries(message_id) WHERE message_id IS NOT NULL")


def _dropped(db: Database) -> None:
    # Items a source's rules dropped: never stored as articles, remembered by id (with the
    # rule and the content they were judged on) so a re-pull does not judge them again.
    db.execute(
        """
        CREATE TABLE dropped (
            article_id TEXT PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            title TEXT NOT NULL,
            url TEXT,
            rule TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            dropped TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX dropped_recent ON dropped(dropped)")


def _pages(db: Database) -> None:
    # Validators of the article pages full_text sources fetched: a changed item's page is
    # asked for again conditionally (304: its text is the one already stored).
    db.execute(
        "CREATE TABLE pages (url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, fetched TEXT NOT NULL)"
    )


def _search_tokens(db: Database) -> None:
    # One tokenizer for both stores (digest.common.query.index_tokens): the index is given tokens,
    # which FTS5 only splits on spaces; what it held was read by FTS5's own unicode61.
    db.execute("DROP TRIGGER articles_bd")
    db.execute("DROP TABLE articles_fts")
    db.execute(
        "CREATE VIRTUAL TABLE articles_fts USING fts5(title, summary_text, content='', tokenize='ascii')"
    )
    db.execute(
        "INSERT INTO articles_fts (rowid, title, summary_text)"
        " SELECT a.rowid, search_tokens(a.title), search_tokens(t.summary_text)"
        " FROM articles a JOIN article_texts t ON t.article_id = a.id"
    )
    db.execute(
        "CREATE TRIGGER articles_bd BEFORE DELETE ON articles BEGIN"
        " INSERT INTO articles_fts (articles_fts, rowid, title, summary_text)"
        " SELECT 'delete', old.rowid, search_tokens(old.title), search_tokens(t.summary_text)"
        " FROM article_texts t WHERE t.article_id = old.id; END"
    )


def _rebuild(db: Database, name: str, *, drop: set[str]) -> None:
    """Rebuild table ``name`` without the columns ``drop`` by ``transform()``, putting back
    what it does not carry over: the table's triggers (dropped with the old table), its
    indexes as they were written (it will not recreate a partial or expression index once a
    column goes) and its integer defaults (it would write ``DEFAULT '0'``, text). A column's
    COLLATE it would lose too: such a table is refused (rebuild it by hand)."""
    from sqlite_utils.db import quote_identifier

    table = db.table(name)
    if re.search(r"\bCOLLATE\b", table.schema, re.IGNORECASE):
        raise ValueError(f"{name}: transform() would lose a column's COLLATE; rebuild it by hand")
    defaults = {
        column.name: int(column.default_value)
        for column in table.columns
        if isinstance(column.default_value, str) and re.fullmatch(r"-?\d+", column.default_value)
    }
    kept = db.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger')"
        " AND sql IS NOT NULL ORDER BY type, rowid",
        [name],
    ).fetchall()
    with db.atomic():
        for kind, item, _ in kept:
            db.execute(f"DROP {kind.upper()} {quote_identifier(item)}")
        table.transform(drop=drop, defaults=defaults)
        for _, _, sql in kept:
            db.execute(sql)


def _paragraphs_once(db: Database) -> None:
    # Most summaries are nothing but paragraphs of text, and their HTML said it again (half
    # an article's bytes): such HTML is kept as NULL, made again from the text when read
    # (digest.store.articles.stored_html). The column may then be NULL: the table is made
    # anew, what is there already copied in that form. Triggers naming the table go first
    # (a rename checks them) and come back as they were.
    from digest.common.sanitize import paragraphs_html

    db.conn.create_function("paragraphs_html", 1, paragraphs_html, deterministic=True)
    naming = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND sql LIKE '%article_texts%'"
    ).fetchall()
    for name, _ in naming:
        db.execute(f'DROP TRIGGER "{name}"')
    db.execute(
        """
        CREATE TABLE article_texts_new (
            article_id TEXT PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
            summary_html TEXT,
            summary_text TEXT NOT NULL
        )"""
    )
    db.execute(
        "INSERT INTO article_texts_new (article_id, summary_html, summary_text) SELECT article_id,"
        " CASE WHEN summary_html != '' AND summary_html = paragraphs_html(summary_text) THEN NULL"
        " ELSE summary_html END, summary_text FROM article_texts ORDER BY rowid"
    )
    db.execute("DROP TABLE article_texts")
    db.execute("ALTER TABLE article_texts_new RENAME TO article_texts")
    for _, sql in naming:
        db.execute(sql)


def _changes(db: Database) -> None:
    # What the web's caches watch, as on PostgreSQL: bumped by every write pages or feeds
    # show (``_changed``), not by bookkeeping (rate-limit hits, leases, claims), which
    # moved SQLite's data_version and emptied the caches at every search.
    db.execute("CREATE TABLE changes (id INTEGER PRIMARY KEY CHECK (id = 1), counter INTEGER NOT NULL)")
    db.execute("INSERT INTO changes (id, counter) VALUES (1, 0)")


def _group_totals(db: Database) -> None:
    # How many articles there are, and in each region (with how many have it first) and
    # theme, kept by triggers as articles are stored, classified and removed: the home
    # page and every page's footer read a few rows, not the whole articles table (issue 30).
    db.execute(
        "CREATE TABLE group_totals (kind TEXT NOT NULL, slug TEXT NOT NULL, articles INTEGER NOT NULL,"
        " lead INTEGER NOT NULL, PRIMARY KEY (kind, slug)) WITHOUT ROWID"
    )
    db.execute("INSERT INTO group_totals SELECT 'all', '', count(*), 0 FROM articles")
    db.execute(
        "INSERT INTO group_totals SELECT 'region', r.value, count(*), sum(r.key = 0)"
        " FROM articles a, json_each(a.regions) r GROUP BY r.value"
    )
    db.execute(
        "INSERT INTO group_totals SELECT 'theme', t.value, count(*), 0"
        " FROM articles a, json_each(a.themes) t GROUP BY t.value"
    )
    counted = {
        "NEW": (
            "INSERT INTO group_totals (kind, slug, articles, lead)"
            " SELECT 'region', value, 1, key = 0 FROM json_each(NEW.regions) WHERE true"
            " ON CONFLICT (kind, slug) DO UPDATE SET articles = articles + 1, lead = lead + excluded.lead;"
            " INSERT INTO group_totals (kind, slug, articles, lead)"
            " SELECT 'theme', value, 1, 0 FROM json_each(NEW.themes) WHERE true"
            " ON CONFLICT (kind, slug) DO UPDATE SET articles = articles + 1;"
        ),
        "OLD": (
            "UPDATE group_totals SET articles = articles - 1,"
            " lead = lead - (slug IS json_extract(OLD.regions, '$[0]'))"
            " WHERE kind = 'region' AND slug IN (SELECT value FROM json_each(OLD.regions));"
            " UPDATE group_totals SET articles = articles - 1"
            " WHERE kind = 'theme' AND slug IN (SELECT value FROM json_each(OLD.themes));"
        ),
    }
    db.execute(
        "CREATE TRIGGER group_totals_ai AFTER INSERT ON articles BEGIN"
        " INSERT INTO group_totals (kind, slug, articles, lead) VALUES ('all', '', 1, 0)"
        f" ON CONFLICT (kind, slug) DO UPDATE SET articles = articles + 1; {counted['NEW']} END"
    )
    db.execute(
        "CREATE TRIGGER group_totals_ad AFTER DELETE ON articles BEGIN"
        f" UPDATE group_totals SET articles = articles - 1 WHERE kind = 'all'; {counted['OLD']} END"
    )
    db.execute(
        "CREATE TRIGGER group_totals_au AFTER UPDATE OF regions, themes ON articles"
        f" WHEN OLD.regions IS NOT NEW.regions OR OLD.themes IS NOT NEW.themes"
        f" BEGIN {counted['OLD']} {counted['NEW']} END"
    )


def _article_groups(db: Database) -> None:
    # Each article under each of its regions and themes, in list order (newest first, then
    # as stored), kept by triggers: "the newest 50 of Oceania" walks that region's own rows
    # instead of every article newest first until 50 match, which a rare region never does
    # (issue 30). ``seq`` is the article's rowid, as the search index's is.
    db.execute(
        "CREATE TABLE article_groups (kind TEXT NOT NULL, slug TEXT NOT NULL, at TEXT NOT NULL,"
        " seq INTEGER NOT NULL, PRIMARY KEY (kind, slug, at DESC, seq)) WITHOUT ROWID"
    )

    def rows(kind: str, side: str, column: str, tables: str = "") -> str:
        return (
            f"SELECT '{kind}', value, coalesce({side}.published, {side}.first_seen), {side}.rowid"
            f" FROM {tables}json_each({side}.{column}) WHERE true"
        )

    def gone(kind: str, column: str) -> str:
        return (
            f"DELETE FROM article_groups WHERE kind = '{kind}'"
            f" AND slug IN (SELECT value FROM json_each(OLD.{column}))"
            " AND at = coalesce(OLD.published, OLD.first_seen) AND seq = OLD.rowid;"
        )

    filed = "".join(
        f" INSERT OR IGNORE INTO article_groups {rows(kind, 'NEW', column)};"
        for kind, column in (("region", "regions"), ("theme", "themes"))
    )
    unfiled = gone("region", "regions") + " " + gone("theme", "themes")
    for kind, column in (("region", "regions"), ("theme", "themes")):
        db.execute(f"INSERT OR IGNORE INTO article_groups {rows(kind, 'a', column, 'articles a, ')}")
    db.execute(f"CREATE TRIGGER article_groups_ai AFTER INSERT ON articles BEGIN{filed} END")
    db.execute(f"CREATE TRIGGER article_groups_ad AFTER DELETE ON articles BEGIN {unfiled} END")
    db.execute(
        "CREATE TRIGGER article_groups_au AFTER UPDATE OF regions, themes, published, first_seen"
        " ON articles WHEN OLD.regions IS NOT NEW.regions OR OLD.themes IS NOT NEW.themes"
        " OR OLD.published IS NOT NEW.published OR OLD.first_seen IS NOT NEW.first_seen"
        f" BEGIN {unfiled}{filed} END"
    )


def _source_frequencies(db: Database) -> None:
    # In how many of a source's classified articles each place and theme is found, and how
    # many there are: what a source's IDF weights are made of, kept by triggers as articles
    # are classified, changed and removed. Each pull read them by going through every
    # classified article's evidence, most of a pull's time on a large site (issue 30).
    # ``kind``: 'all' (key '': the articles), 'place' (a place's key), 'theme' (a slug).
    db.execute(
        "CREATE TABLE source_frequencies (source_id INTEGER NOT NULL, kind TEXT NOT NULL,"
        " key TEXT NOT NULL, articles INTEGER NOT NULL, PRIMARY KEY (source_id, kind, key)) WITHOUT ROWID"
    )

    def counted(source: str, evidence: str, sign: str, tables: str = "") -> str:
        # An article counts a place once however often its evidence lists it.
        return (
            f" INSERT INTO source_frequencies SELECT {source}, 'place', k, {sign} FROM (SELECT DISTINCT"
            f" value ->> 'key' AS k FROM {tables}json_each({evidence}.places)) WHERE true"
            " ON CONFLICT DO UPDATE SET articles = articles + excluded.articles;"
            f" INSERT INTO source_frequencies SELECT {source}, 'theme', key, {sign}"
            f" FROM {tables}json_each({evidence}.theme_matches) WHERE true"
            " ON CONFLICT DO UPDATE SET articles = articles + excluded.articles;"
        )

    def total(source: str, sign: str) -> str:
        return (
            f" INSERT INTO source_frequencies VALUES ({source}, 'all', '', {sign})"
            " ON CONFLICT DO UPDATE SET articles = articles + excluded.articles;"
        )

    def article_evidence(side: str, sign: str) -> str:
        # The article's own evidence row, if it has one, counted in or out.
        row = f"(SELECT places, theme_matches FROM article_evidence WHERE article_id = {side}.id) e, "
        return counted(f"{side}.source_id", "e", sign, row)

    owner = "(SELECT source_id FROM articles WHERE id = {}.article_id)"
    classified = "(SELECT grouped FROM articles WHERE id = {}.article_id) = 1"

    db.execute(
        "CREATE TRIGGER source_frequencies_ai AFTER INSERT ON articles WHEN NEW.grouped = 1"
        f" BEGIN{total('NEW.source_id', '1')} END"
    )
    db.execute(
        "CREATE TRIGGER source_frequencies_au AFTER UPDATE OF grouped ON articles"
        " WHEN OLD.grouped IS NOT NEW.grouped BEGIN"
        f"{total('NEW.source_id', 'iif(NEW.grouped = 1, 1, -1)')}"
        f"{article_evidence('NEW', 'iif(NEW.grouped = 1, 1, -1)')} END"
    )
    # Before: the evidence is still there (the delete takes it along).
    db.execute(
        "CREATE TRIGGER source_frequencies_bd BEFORE DELETE ON articles WHEN OLD.grouped = 1"
        f" BEGIN{total('OLD.source_id', '-1')}{article_evidence('OLD', '-1')} END"
    )
    db.execute(
        "CREATE TRIGGER source_frequencies_eai AFTER INSERT ON article_evidence"
        f" WHEN {classified.format('NEW')} BEGIN{counted(owner.format('NEW'), 'NEW', '1')} END"
    )
    db.execute(
        "CREATE TRIGGER source_frequencies_eau AFTER UPDATE ON article_evidence"
        f" WHEN {classified.format('NEW')} BEGIN{counted(owner.format('OLD'), 'OLD', '-1')}"
        f"{counted(owner.format('NEW'), 'NEW', '1')} END"
    )
    db.execute(
        "CREATE TRIGGER source_frequencies_ead AFTER DELETE ON article_evidence"
        f" WHEN {classified.format('OLD')} BEGIN{counted(owner.format('OLD'), 'OLD', '-1')} END"
    )
    db.execute(
        "INSERT INTO source_frequencies SELECT source_id, 'all', '', count(*) FROM articles"
        " WHERE grouped = 1 GROUP BY source_id"
    )
    db.execute(
        "INSERT INTO source_frequencies SELECT a.source_id, 'place', p.k, count(*) FROM articles a,"
        " (SELECT DISTINCT e.article_id, j.value ->> 'key' AS k"
        " FROM article_evidence e, json_each(e.places) j) p"
        " WHERE p.article_id = a.id AND a.grouped = 1 GROUP BY 1, 3"
    )
    db.execute(
        "INSERT INTO source_frequencies SELECT a.source_id, 'theme', m.key, count(*) FROM articles a"
        " JOIN article_evidence e ON e.article_id = a.id, json_each(e.theme_matches) m"
        " WHERE a.grouped = 1 GROUP BY 1, 3"
    )


def _story_index(db: Database) -> None:
    # What a pull's story clustering reads instead of the text of every article in the
    # story window (issue 30): each article's words and specific places, its most telling
    # words with their weights (found by the words of new articles), and in how many
    # articles each word is. Filled as articles are grouped; the first grouping after this
    # step fills it from the window, as grouping did at every pull before.
    db.execute(
        "CREATE TABLE story_words (article_id TEXT PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,"
        " at TEXT NOT NULL, words TEXT NOT NULL, entities TEXT NOT NULL, centrality REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE story_keys (key TEXT NOT NULL, at TEXT NOT NULL, article_id TEXT NOT NULL"
        " REFERENCES articles(id) ON DELETE CASCADE, weight REAL NOT NULL,"
        " PRIMARY KEY (key, at, article_id)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX story_keys_article ON story_keys(article_id)")
    db.execute(
        "CREATE TABLE story_frequencies (word TEXT PRIMARY KEY, articles INTEGER NOT NULL) WITHOUT ROWID"
    )


def _operators(db: Database) -> None:
    # Issue 31. Sources an operator adds at run time live here, not in the config: their
    # options (the [[sources]] keys they were given, as JSON) mark them, NULL for a source of
    # the config; paused: since when the operator paused one. API tokens are kept as hashes
    # (a revoked one stays listed; a name is unique among those not revoked). Outgoing
    # webhooks: the endpoints added through the API (those of the config stay there), and
    # the durable queue of events to deliver, one row per event and endpoint, its id the
    # webhook-id every retry repeats.
    sources = db.table("sources")
    sources.add_column("options", str)
    sources.add_column("paused", str)
    # "The newest 50 of a source" (the API's ?source=) walks that source's own articles,
    # not every article newest first until 50 of it turn up (73 ms at 100,000; 4 ms so).
    db.execute(
        "CREATE INDEX articles_source_recent ON articles(source_id, coalesce(published, first_seen) DESC)"
    )
    db.execute(
        "CREATE TABLE api_tokens (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " scope TEXT NOT NULL CHECK (scope IN ('read', 'write')), hash TEXT NOT NULL UNIQUE,"
        " created TEXT NOT NULL, last_used TEXT, revoked TEXT)"
    )
    db.execute("CREATE UNIQUE INDEX api_tokens_name ON api_tokens(name) WHERE revoked IS NULL")
    db.execute(
        "CREATE TABLE webhooks (id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE,"
        " events TEXT NOT NULL DEFAULT '[]', secret TEXT NOT NULL, created TEXT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE webhook_events (id TEXT PRIMARY KEY, url TEXT NOT NULL, type TEXT NOT NULL,"
        " payload TEXT NOT NULL, created TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " next_attempt TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending'"
        " CHECK (status IN ('pending', 'delivered', 'failed')), last_error TEXT, done TEXT,"
        " claimed_by TEXT, claimed_until TEXT)"
    )
    db.execute("CREATE INDEX webhook_events_due ON webhook_events(next_attempt) WHERE status = 'pending'")
    db.execute("CREATE INDEX webhook_events_created ON webhook_events(created)")
    # Every change of a subscriber's status, kept by triggers whatever made it (a reader's
    # click, a bounce, the operator), for the webhooks to say; read, queued as events, then
    # forgotten. Time: the change's own stamp where the row has one (confirmed, unsubscribed),
    # else SQLite's clock. A subscriber deleted takes theirs along.
    db.execute(
        "CREATE TABLE subscriber_events (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " subscriber_id INTEGER NOT NULL, email TEXT NOT NULL, status TEXT NOT NULL, reason TEXT,"
        " at TEXT NOT NULL)"
    )
    noted = (
        "INSERT INTO subscriber_events (subscriber_id, email, status, reason, at) VALUES (NEW.id, NEW.email,"
        " NEW.status, NEW.status_reason, coalesce(CASE NEW.status WHEN 'active' THEN NEW.confirmed"
        " WHEN 'unsubscribed' THEN NEW.unsubscribed END, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));"
    )
    db.execute(
        "CREATE TRIGGER subscriber_events_ai AFTER INSERT ON subscribers WHEN NEW.status != 'pending'"
        f" BEGIN {noted} END"
    )
    db.execute(
        "CREATE TRIGGER subscriber_events_au AFTER UPDATE OF status ON subscribers"
        f" WHEN OLD.status IS NOT NEW.status AND NEW.status != 'pending' BEGIN {noted} END"
    )
    db.execute(
        "CREATE TRIGGER subscriber_events_ad AFTER DELETE ON subscribers"
        " BEGIN DELETE FROM subscriber_events WHERE subscriber_id = OLD.id; END"
    )


def _console(db: Database) -> None:
    # Issue 32. The operators' console: accounts (an argon2id hash of each password), the
    # sessions they log in to (kept by the hash of the cookie's secret, with the form token
    # of each; absolute expiry here, idle expiry from when last seen), and the audit log of
    # every change made there (the actor by name: the log outlives the account).
    db.execute(
        "CREATE TABLE admins (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, hash TEXT NOT NULL,"
        " created TEXT NOT NULL, changed TEXT NOT NULL, last_login TEXT)"
    )
    db.execute(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, admin_id INTEGER NOT NULL REFERENCES admins(id)"
        " ON DELETE CASCADE, csrf TEXT NOT NULL, created TEXT NOT NULL, seen TEXT NOT NULL,"
        " expires TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX sessions_admin ON sessions(admin_id)")
    db.execute(
        "CREATE TABLE audit (id INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,"
        " action TEXT NOT NULL, target TEXT, detail TEXT)"
    )
    db.execute("CREATE INDEX audit_at ON audit(at)")


# Append-only: a released step is never changed in effect, a change is a new entry.
MIGRATIONS: list[tuple[str, Step]] = [
    ("0001_initial", _initial),
    ("0002_grouping", _grouping),
    ("0003_recent_index", _recent_index),
    ("0004_mail", _mail),
    ("0005_leases", _leases),
    ("0006_web_links_only", _web_links_only),
    ("0007_subscriber_identity", _subscriber_identity),
    ("0008_plausible_dates", _plausible_dates),
    ("0009_source_lifecycle", _source_lifecycle),
    ("0010_article_texts", _article_texts),
    ("0011_article_evidence", _article_evidence),
    ("0012_claims", _claims),
    ("0013_rate_hits", _rate_hits),
    ("0014_pending_order", _pending_order),
    ("0015_rhythms", _rhythms),
    ("0016_feedback", _feedback),
    ("0017_dropped", _dropped),
    ("0018_pages", _pages),
    ("0019_search_tokens", _search_tokens),
    ("0020_changes", _changes),
    ("0021_group_totals", _group_totals),
    ("0022_article_groups", _article_groups),
    ("0023_source_frequencies", _source_frequencies),
    ("0024_story_index", _story_index),
    ("0025_paragraphs_once", _paragraphs_once),
    ("0026_operators", _operators),
    ("0027_console", _console),
]


def migration_set(steps: Sequence[tuple[str, Step]] = MIGRATIONS) -> Migrations:
    """The steps, in order, as the sqlite-utils ``Migrations`` set "digest" (the runner gives
    a test's shorter list to make a database of an earlier release)."""
    from sqlite_utils import Migrations

    migrations = Migrations(SET_NAME)
    for name, step in steps:
        migrations(name=name)(step)
    return migrations
