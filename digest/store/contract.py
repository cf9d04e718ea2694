"""The storage contract: what the rest of digest may ask of a database, one Protocol per area
(as lemon24/reader splits its storage type), and :class:`Store`, all of them at once, which
``open_store`` returns. The SQLite store (``digest/store/*.py``) and the PostgreSQL store
(``digest/store/postgres/``) both implement it and pass the same suite
(``tests/test_store_contract.py``); each method below says what it promises whichever the
backend, and where the two differ in a way a caller can see, says how ("Backends:").

Errors. Every method may raise :class:`~digest.common.errors.StoreError` for trouble with the
database (locked past the store's timeout, read-only, full, damaged, unreachable: one line
naming the database, never a driver's own exception), so no method says so again. On a store
opened read-only, every method that writes raises it; "Raises:" lists only the errors a
method raises on purpose, with their messages. Opening is not part of the contract:
``open_store`` (or a backend's ``open``) opens, creates and migrates.

Times. Times given and returned are aware datetimes (returned in UTC). Two clocks are
named below: "the store's clock" is :meth:`ClockStore.now` (``open_store(clock=...)``,
the system's by default); "the shared clock" is :meth:`LedgerStore.ledger_now`, which is
the store's clock on SQLite and the server's on PostgreSQL, so that workers on several
machines judge claims and leases alike; a method that takes ``now`` or ``at`` uses that
and reads no clock. ``since``/``until`` pairs select ``since <= first_seen < until``.

Records are those of ``records.py`` and ``digest.common.models``; unknown ids and names are
ignored (reads leave them out, writes change nothing) unless a method says otherwise. Every
write is one transaction (but SQLite's ``migrate``): it lands whole or not at all."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from digest.common.models import Article, SourceState
from digest.common.query import Query
from digest.common.rhythms import Rhythm
from digest.store.records import (
    Activity,
    AddedSource,
    AdminRecord,
    ApiToken,
    AuditEntry,
    DeliveryRecord,
    DigestRecord,
    DigestSummary,
    DroppedItem,
    Evidence,
    GroupCounts,
    Groups,
    Headline,
    PendingDelivery,
    QueuedEvent,
    SaveCounts,
    SessionRecord,
    Signup,
    SourceSpec,
    SourceSummary,
    Story,
    StoryEntry,
    StoryHead,
    StoryKey,
    StoryRecord,
    StoryRow,
    StoryWords,
    Subscriber,
    SubscriberChange,
    SubscriberEvent,
    Ungrouped,
    WebhookRecord,
)
from digest.store.tables import Row


class ClockStore(Protocol):
    """The store's clock. Every area extends it, so code given only one area can still
    decide by the moment the store stamps with."""

    def now(self) -> datetime:
        """Now, by the store's clock (``open_store(clock=...)``, the system's by default):
        the time it stamps what it writes unasked, and the moment whoever holds the store
        decides by when no other is given. Works on a closed store too. Raises nothing."""
        ...


class DatabaseStore(ClockStore, Protocol):
    """The database itself: its lifetime, schema, backups and change counter."""

    # Whether each call waits on a network round trip (a server), not only on a local file:
    # code on an event loop then makes its calls from a thread, and overlaps them with I/O.
    networked: bool

    def close(self) -> None:
        """Let go of the database; calling it again does nothing.

        Backends: SQLite closes the store's connection, and every later call but ``now``
        fails. PostgreSQL gives back the store's share of the process's pool for that
        database, closed with the last store using it: until then a closed store goes on
        working."""
        ...

    def __enter__(self) -> Store:
        """The store itself (``with open_store(...) as store:``)."""
        ...

    def __exit__(self, *exc: object) -> None:
        """Close the store (see ``close``); an exception leaving the block goes on."""
        ...

    def migrate(self) -> list[str]:
        """Apply the migrations this database has not seen, in order; their names (empty:
        the schema was up to date). Idempotent, and safe for processes starting at once:
        each migration is applied once. Opening a writable store has already done it.

        Raises: StoreError "migration NAME would break references" (SQLite: that migration
        is rolled back, those before it stay).
        Backends: SQLite applies each migration in a transaction of its own; PostgreSQL
        applies all pending ones in one transaction, under an advisory lock."""
        ...

    def applied_migrations(self) -> list[str]:
        """Names of the migrations applied, in the order they apply. Each backend has its own
        list: the names are not comparable between them."""
        ...

    def backup(self, target: Path) -> None:
        """A copy of the whole database in a new SQLite file at ``target``, readable by its
        owner only, consistent though writers go on meanwhile.

        Raises: StoreError "TARGET: already exists; choose a new file for the backup" when
        ``target`` exists (nothing is written); StoreError when its folder does not exist.
        Backends: SQLite copies the file page by page (leases, claims and rate-limit counts
        too); PostgreSQL copies the tables of ``tables.py`` (as ``dump`` gives them), so
        leases, claims and rate-limit counts are left out."""
        ...

    def data_version(self) -> int:
        """A number that differs from an earlier reading of this store when what pages and
        feeds show may have changed (the web cache's check); compare for equality only.

        Backends: SQLite's moves when another connection commits anything, never for this
        store's own writes. PostgreSQL's moves when any worker, this store included, commits
        a write pages or feeds show (sources synced, retired or renamed, articles saved or
        dropped, groups and stories, ``put_setting``, a digest created, a copy loaded),
        and for nothing else (fetch state, claims, leases, subscribers, the ledger)."""
        ...


class TransferStore(ClockStore, Protocol):
    """A whole database moved out and in (``digest db copy``, PostgreSQL's ``backup``), in
    the plain form of ``tables.py``."""

    def is_empty(self) -> bool:
        """Whether no source, article, dropped item, subscriber, digest, delivery or sign-up
        is stored, and no setting but those every new database writes itself
        (``tables.OWN_SETTINGS``): whether ``load`` would accept it."""
        ...

    def dump(self) -> Iterator[tuple[str, Iterator[Row]]]:
        """Every table of ``tables.TABLES``, in load order, each with its rows as plain values
        (``tables.py`` says the kinds; JSON decoded), read from one consistent snapshot
        that is held until the outer iterator is exhausted or closed: read each table's
        rows before asking for the next table. Claims, leases and rate-limit counts are not
        dumped. Lazy: nothing is read until iterated.

        Raises: StoreError "DATABASE: reading TABLE: ..." for trouble met while rows are
        read (from the inner iterators). Known gap: trouble met as the snapshot begins (a
        closed store, a pool that cannot give a connection) leaves as the driver's own
        exception, not StoreError.
        Backends: the ``sequences`` table lists, on SQLite, the tables that have given out
        an id (subscribers, sign-ups); on PostgreSQL, sources, subscribers and sign-ups
        always. ``load`` takes either."""
        ...

    def load(self, tables: Iterable[tuple[str, Iterable[Row]]]) -> None:
        """Write ``tables`` (as ``dump`` gives them: names of ``tables.TABLES``, in load
        order) into this empty database, in one transaction: ids and times as they are, the
        settings replaced by those given, the search index made, the next ids past those
        copied (removed subscribers' ids are never given again). A refused or failed load
        changes nothing.

        Raises: StoreError "DATABASE: not empty; copy into a new, empty database" unless
        ``is_empty`` (PostgreSQL checks it holding the tables against writers); any
        StoreError the rows' own iterators raise (a ``dump`` of another store)."""
        ...


class SourcesStore(ClockStore, Protocol):
    """Sources: what the configuration names, how each fetch went, who pulls each now."""

    def sync_sources(self, sources: Iterable[SourceSpec]) -> None:
        """Make the stored sources match ``sources`` by name: a new one is added (created by
        the store's clock, its ``id_name`` its name); one whose URL or kind changed gets them
        and a fresh fetch state (fetch URL, validators, failures, next fetch and last error
        reset, enabled). A source added at run time that ``sources`` names becomes the
        configuration's (no options, not paused). Sources not given are left as they are
        (see ``retire_sources``), and so is ``removed``. Idempotent."""
        ...

    def retire_sources(self, configured: Iterable[str]) -> None:
        """Mark every source of the configuration (not added at run time) not named in
        ``configured`` as removed (by the store's clock, once: an already removed source
        keeps its date) with no next fetch, and every named one as present again. Articles
        of removed sources stay. Idempotent."""
        ...

    def rename_source(self, old: str, new: str) -> None:
        """Give the source ``old`` the name ``new``, keeping its articles, their ids (made
        from its unchanged ``id_name``) and its fetch state; it is present again. A source
        already called ``new`` without articles (a configuration edited before the rename)
        is deleted first, with what its rules dropped. ``old`` and ``new`` must differ:
        renaming a source without articles to its own name deletes it (both backends).

        Raises: StoreError "no source named 'OLD' in the database"; StoreError "a source
        called 'NEW' already has N articles; choose another name"."""
        ...

    def add_sources(self, sources: Sequence[AddedSource]) -> None:
        """Add sources at run time, all or none: each kept with its options (given back
        by ``added_sources``), created by the store's clock, its ``id_name`` its name. A
        removed source of the same name (added so, or gone from the configuration) is
        taken up as the new one, with a fresh fetch state, its articles and their ids kept.

        Raises: StoreError "a source called 'NAME' exists already; choose another name"
        (a source not removed has the name; nothing is added)."""
        ...

    def change_source(
        self, name: str, *, options: Mapping[str, Any] | None = None, paused: bool | None = None
    ) -> None:
        """Change a source added at run time: ``options`` replace its options, URL
        (``options["url"]``) and kind (``options.get("kind", "auto")``; a new URL is
        fetched from now on); ``paused`` pauses it (since now, by the store's clock; one
        already paused keeps its date) or resumes it. None: left as it is.

        Raises: StoreError "no source named 'NAME' in the database" (unknown or removed);
        StoreError "source 'NAME' is from the config file; change it there"."""
        ...

    def remove_source(self, name: str) -> None:
        """Mark a source added at run time removed (by the store's clock), with no next
        fetch and no pause; its articles stay.

        Raises: as ``change_source``."""
        ...

    def added_sources(self) -> list[AddedSource]:
        """The sources added at run time and not removed (paused ones too: ``paused`` says
        since when), each with the URL and kind it was added with and its options, by name
        (byte order). Cheap: it counts no article."""
        ...

    def source_state(self, name: str) -> SourceState:
        """What fetching the source ``name`` needs: its fetch URL, validators, enabled flag
        and latest outcome.

        Raises: StoreError "no source named 'NAME' in the database"."""
        ...

    # (Long signatures are written compactly here: the contract is read as a reference.)
    def record_fetch(
        self, name: str, *, status: int | None, error: str | None, etag: str | None = None,
        last_modified: str | None = None, fetch_url: str | None = None,
        next_fetch: datetime | None = None, disable: bool = False, keep_validators: bool = False,
    ) -> None:  # fmt: skip
        """Remember how a fetch of source ``name`` went, fetched now by the store's clock:
        ``status``; ``error`` (redacted; None: a success) adds one to the consecutive
        failures, a success resets them; ``etag`` and ``last_modified`` replace the stored
        validators (None clears one) unless ``keep_validators``; ``fetch_url`` (if given)
        is where to fetch from now on; ``next_fetch`` replaces the next fetch time (None
        clears it). ``disable`` disables the source; otherwise a success enables it and a
        failure leaves it as it was. Ends any claim on the source (whoever held it).
        An unknown name changes nothing."""
        ...

    def claim_source(self, name: str, holder: str, seconds: float) -> bool:
        """Hold source ``name`` for ``holder`` for ``seconds`` (by the shared clock) while it
        pulls it: True when taken (unclaimed, already ``holder``'s, which renews it, or
        another's claim ran out); False, changing nothing, while another holder's claim
        runs, or for an unknown name. ``record_fetch`` ends the claim. Atomic: of two
        holders asking at once, one wins."""
        ...

    def source_urls(self) -> dict[str, str]:
        """Source name → the URL it is fetched from now (the ``fetch_url`` last given to
        ``record_fetch``, else its configured URL), for every source, removed ones too."""
        ...

    def source_summaries(self) -> list[SourceSummary]:
        """Every source, removed ones too, with its fetch state, article count, when its
        newest article was first seen, its URL, fetch URL and kind, and its origin
        ("config", or "store" with its options and pause for one added at run time); by
        name (byte order)."""
        ...


class ArticlesStore(ClockStore, Protocol):
    """Articles (saving a pull's, listing, searching), the items rules dropped, and the
    validators of article pages."""

    def save_articles(self, source: str, articles: Sequence[Article], *, now: datetime) -> SaveCounts:
        """Store a pull of the source named ``source`` (each article's own ``source`` is not
        read), in one transaction; how many were new, updated and unchanged. An article is
        the stored one with its id, else the one of this source with its URL (another
        source's link never matches). New: inserted as given (``first_seen`` and ``updated``
        its own). Stored with another content hash: its content replaced, ``updated`` set to
        ``now``, ``first_seen`` and id kept, and it is to be classified again (regions,
        themes and story stay until then). Same hash, or stored by another source (the first
        source to store it keeps it): unchanged, untouched. An article matching one met
        earlier in the batch is skipped and not counted. The search index follows.

        Raises: StoreError "no source named 'SOURCE' in the database".
        Backends: PostgreSQL saves one batch at a time across every worker, so two workers
        cannot both store one link."""
        ...

    def articles(
        self, *, since: datetime | None = None, until: datetime | None = None, region: str | None = None,
        theme: str | None = None, source: str | None = None, limit: int | None = None,
        after: str | None = None,
    ) -> list[Article]:  # fmt: skip
        """Stored articles, newest first (by published date, else first seen; ties in the
        order they were stored), at most ``limit``. ``since`` and ``until`` select by
        ``first_seen``, the time digest first stored them: ``since <= first_seen < until``,
        so consecutive windows never share or skip an article. ``region`` and ``theme``: with
        that slug anywhere among its regions or themes; ``source``: of the source so named
        (unknown: none). ``after``: only those after the article with that id in this order
        (the next page, whatever was stored since; an id not stored: none)."""
        ...

    def search(
        self, query: Query, *, limit: int = 20, since: datetime | None = None, until: datetime | None = None
    ) -> list[Article]:
        """Up to ``limit`` articles whose title or text match ``query`` (words as the one
        tokenizer of ``digest.common.query`` makes them; first seen in ``[since, until)``
        when given), best match first. At most ``SEARCH_SECONDS`` of work.

        Raises: StoreError "search 'TEXT': ..." when the search takes longer (never a stuck
        worker).
        Backends: both find the same articles; the ranking differs (SQLite: FTS5's bm25;
        PostgreSQL: ``ts_rank`` with titles weighing more), ties in the order stored on
        both (so pages of one search, asked with different limits, agree)."""
        ...

    def article(self, article_id: str) -> Article | None:
        """The stored article with this id; None if there is none (one the rules dropped is
        no longer stored)."""
        ...

    def headlines(
        self,
        *,
        limit: int | None,
        region: str | None = None,
        theme: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Headline]:
        """The newest ``limit`` articles (all: None; of ``region`` or ``theme``, first seen in
        ``[since, until)`` when given) as ``articles()`` orders and selects them, without their
        text (a page of headlines reads a few hundred bytes an article, not its whole text)."""
        ...

    def count_articles(self) -> int:
        """How many articles are stored (what rules dropped is not counted)."""
        ...

    def content_hashes(self, article_ids: Sequence[str]) -> dict[str, str]:
        """Id → content hash, for those of ``article_ids`` stored as articles (by any
        source); the others are left out."""
        ...

    def owned_ids(self, source: str, article_ids: Sequence[str]) -> set[str]:
        """Which of ``article_ids`` the source named ``source`` stored, as an article or as an
        item its rules dropped (an id another source stored is never among them; an unknown
        source owns none)."""
        ...

    def remembered_drops(self, article_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Id → (rule, content hash judged), for those of ``article_ids`` remembered as
        dropped (by any source); the others are left out."""
        ...

    def save_dropped(self, items: Sequence[DroppedItem]) -> None:
        """Remember items a source's rules dropped at the door (never stored as articles),
        each replacing whatever was remembered under its id. An article stored with that id
        is not touched.

        Raises: StoreError "no source named 'SOURCE' in the database" for an item of an
        unknown source (none of ``items`` is then remembered)."""
        ...

    def drop_articles(self, drops: Sequence[tuple[str, str]], *, now: datetime) -> int:
        """Move stored articles the rules drop once grouped, given as (id, rule), out of the
        articles (and the search index) into what is remembered as dropped, dated ``now``,
        keeping their source, title, URL and content hash; how many were moved (an id not
        stored moves nothing).

        Backends: over an id already remembered as dropped, SQLite replaces the whole
        remembered item; PostgreSQL keeps its source, title and URL."""
        ...

    def page_validators(self, urls: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        """URL → (ETag, Last-Modified) each of these article pages was last fetched with, for
        those stored; the others are left out."""
        ...

    def save_page_validators(
        self, pages: Sequence[tuple[str, str | None, str | None]], *, now: datetime
    ) -> None:
        """Remember (URL, ETag, Last-Modified) of fetched article pages, fetched at ``now``,
        each replacing what was stored for its URL."""
        ...

    def forget_drops(self, article_ids: Sequence[str]) -> None:
        """Forget these remembered drops (the rules, as they are now, keep the items); ids
        not remembered are ignored."""
        ...

    def dropped_items(self, *, limit: int = 100) -> list[DroppedItem]:
        """Up to ``limit`` items the rules dropped, the latest dropped first (ties by id)."""
        ...


class GroupingStore(ClockStore, Protocol):
    """Grouping: the evidence classification found, the regions and themes scored from it,
    and stories."""

    def ungrouped(self) -> list[Ungrouped]:
        """Articles whose text has not been classified since it was stored or last changed.

        Backends: SQLite promises no order; PostgreSQL gives the order they were stored."""
        ...

    def mark_ungrouped(self) -> None:
        """Have every article classified again (after a vocabulary change); their regions,
        themes, evidence and stories stay until then. Idempotent."""
        ...

    def source_frequencies(self, source: str) -> tuple[int, dict[str, int], dict[str, int]]:
        """For the classified articles of the source named ``source``: their count, and in how
        many of them each place (by its ``key``) and each theme has evidence.

        Raises: StoreError "no source named 'SOURCE' in the database"."""
        ...

    def evidence(self, source: str) -> list[Evidence]:
        """The stored evidence of each classified article of the source named ``source``
        (an unknown source: none), JSON left encoded.

        Backends: SQLite promises no order; PostgreSQL gives the order they were stored."""
        ...

    def set_groups(self, rows: Iterable[Groups]) -> None:
        """Store each article's regions (primary first) and themes; where ``evidence`` is
        given, it replaces the stored evidence and marks the article classified (without it,
        the article's evidence and classified mark stay). Unknown ids without evidence are
        ignored.

        Backends: an unknown id with evidence is a StoreError on SQLite (a FOREIGN KEY
        constraint; nothing of ``rows`` is written), ignored on PostgreSQL."""
        ...

    def story_inputs(self, since: datetime | None = None, *, classified_only: bool = False) -> list[StoryRow]:
        """What story clustering reads of each article first seen at or after ``since`` (all
        when None), only of those classified since they last changed with
        ``classified_only``; by first seen, then id. ``places`` is empty for an article never
        classified."""
        ...

    def save_stories(self, article_ids: Sequence[str], stories: Iterable[Story]) -> None:
        """Replace the stories of ``article_ids`` with ``stories``: each member joins its
        story, and so does every member of each story it absorbs (saved with its label,
        updated by the store's clock; first seen when its earliest member was, fixed when
        first saved; which story each article is in is read before any moves), then each of
        ``article_ids`` in none leaves its story unless that story is absorbed (it follows
        it), and articles not named keep theirs. Then the count of every story
        an article left or joined is taken from the articles, and such a story left with
        fewer than two is deleted (its article, if any, leaves it).

        Raises: StoreError (a NOT NULL constraint) for a story none of whose members is
        stored."""
        ...

    # --- the story index: what a pull's clustering reads instead of the window's text ------

    def story_index_empty(self) -> bool:
        """Whether no article is in the story index (a new database, one brought up to date
        from before the index, a copy, or one cleared for a regroup)."""
        ...

    def word_frequencies(self, words: Iterable[str]) -> tuple[int, dict[str, int]]:
        """How many articles are indexed, and in how many of them each of ``words`` is
        (words in none left out)."""
        ...

    def story_keys(
        self, keys: Iterable[str], since: datetime, until: datetime, *, per_key: int
    ) -> list[StoryKey]:
        """Of the indexed articles that happened (``at``) in ``[since, until]``, those
        keyed by each of ``keys``: the latest ``per_key`` of each key."""
        ...

    def story_entries(self, article_ids: Iterable[str]) -> list[StoryEntry]:
        """These articles as the index keeps them (ids not indexed left out), in no order."""
        ...

    def story_heads(self, story_ids: Iterable[str]) -> dict[str, StoryHead]:
        """Each of these stories' earliest and most central members (an unknown story left
        out), read in the database: a pull's cost does not grow with the stories it
        extends."""
        ...

    def index_stories(self, entries: Sequence[StoryWords], gained: Mapping[str, float]) -> None:
        """Put ``entries`` in the story index, each replacing what was kept of its article
        (the word counts follow), and add ``gained`` centrality to indexed articles. An
        article not stored is left out; one removed later leaves the index with it (its
        words stay counted: a drift of the few articles rules drop)."""
        ...

    def clear_story_index(self) -> None:
        """Empty the story index (before a regroup rebuilds it)."""
        ...

    def group_totals(self) -> GroupCounts:
        """Regions and themes with their article counts over every stored article, as
        ``group_counts()`` gives them, and no stories: read from totals the database keeps
        as articles are stored, classified and removed, so its cost does not grow with the
        number of articles (the home page's)."""
        ...

    def group_counts(self, since: datetime | None = None) -> GroupCounts:
        """Regions and themes with their article counts (regions with how many have them
        first), most articles first, ties by slug (byte order); stories of at least two
        articles with their count and members, most articles first, ties newest story first.
        Only articles first seen at or after ``since`` count, when given.

        Backends: a story's members are in the order stored on PostgreSQL, in no promised
        order on SQLite."""
        ...


class SettingsStore(ClockStore, Protocol):
    """Settings kept in the database (the token secret, the schedule's state), leases (which
    of several processes does a job) and rate-limit counts."""

    def setting(self, key: str, default: Callable[[], str]) -> str:
        """The value stored under ``key``; on first use, ``default()``'s, stored. The value
        stored first wins: ``default`` may run and its value be dropped when another
        process stores one at the same moment."""
        ...

    def get_setting(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        ...

    def put_setting(self, key: str, value: str, *, shown: bool = True) -> None:
        """Store ``value`` under ``key``, replacing what was there; ``shown``: pages and
        feeds may show it, so it counts as a change (``data_version``), which a mark of
        where some work got to does not."""
        ...

    def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take the lease ``name`` for ``holder`` for ``seconds`` (by the shared clock): True
        when taken (free, run out, or already ``holder``'s: renewed); False, changing
        nothing, while another holder's runs. Atomic: of two holders asking at once, one
        wins."""
        ...

    def release_lease(self, name: str, holder: str) -> None:
        """Give up the lease ``name`` if ``holder`` holds it (run out or not); another
        holder's lease is left alone."""
        ...

    def lease_holder(self, name: str) -> str | None:
        """Who holds the lease ``name`` now, by the shared clock (None: nobody, or the lease
        ran out)."""
        ...

    def count_hits(self, key: str, *, window: float, now: datetime) -> int:
        """How many hits ``allow_hit`` counted under ``key`` in the ``window`` seconds before
        ``now`` (counting none)."""
        ...

    def allow_hit(self, key: str, *, limit: int, window: float, now: datetime) -> bool:
        """Count a request under ``key`` at ``now`` unless ``limit`` were counted in the
        ``window`` seconds before it (at most a day: counts a day older than ``now`` are
        forgotten, for every key); False, counting nothing, when the limit is reached.
        Atomic: two requests cannot both take the last one allowed."""
        ...


class SubscribersStore(ClockStore, Protocol):
    """Subscribers (who, their status and preferences) and the sign-up queue of the web form.
    Addresses compare without regard to the case of ASCII letters."""

    def subscriber(self, *, email: str | None = None, subscriber_id: int | None = None) -> Subscriber | None:
        """The subscriber with address ``email`` if given, else with id ``subscriber_id``;
        None if there is none.

        Backends: letters beyond ASCII compare by case on SQLite, as the database's
        character type folds them on PostgreSQL."""
        ...

    def subscribers(
        self, status: str | None = None, *, after: int = 0, limit: int | None = None
    ) -> list[Subscriber]:
        """Every subscriber by address (ASCII case folded, then byte order); with ``status``,
        or ``after`` or ``limit``, those (with that status) in order of sign-up (id), from the
        first whose id is above ``after``, at most ``limit`` (pages, to go through many
        without holding them all). An unknown status: none."""
        ...

    def upsert_subscribers(self, changes: Sequence[SubscriberChange]) -> tuple[int, int]:
        """Insert or update subscribers by address, in one transaction; (added, updated). A
        new one gets the fields given (``status`` active and ``created`` now by the store's
        clock, unless given); an existing one gets the fields given that are not None, but
        never a new ``created`` (link tokens are bound to it) or address, and counts as
        updated if any was given. A rhythm given also sets when the next digest falls due,
        from now by the store's clock.

        Raises: StoreError "EMAIL: 'STATUS' is not a subscriber status" (nothing of the
        batch is written)."""
        ...

    def set_subscriber_status(self, subscriber_id: int, status: str, *, at: datetime) -> None:
        """Move a subscriber to ``status``, stamping ``at`` where it records it (active:
        ``confirmed``; pending: ``pending_since``; unsubscribed: ``unsubscribed``; bounced:
        none) and clearing what no longer applies (active: unsubscribed, pending since, the
        bounce count and the reason; pending: unsubscribed; unsubscribed and bounced:
        pending since).

        Raises: StoreError "'STATUS' is not a subscriber status"."""
        ...

    def set_preferences(
        self, subscriber_id: int, regions: Sequence[str], themes: Sequence[str], *,
        rhythm: Rhythm | None = None, topics: Sequence[str] | None = None, now: datetime | None = None,
    ) -> None:  # fmt: skip
        """Replace a subscriber's regions and themes; and their ``rhythm`` and ``topics`` when
        given (None leaves them: a rhythm cannot be cleared here). A rhythm given also sets
        the next digest due at its first due time after ``now`` (default: the store's
        clock)."""
        ...

    def due_subscribers(self, now: datetime) -> list[Subscriber]:
        """Active subscribers with a rhythm of their own whose next digest is due at ``now``,
        but not one with a delivery still pending (it goes out first); by due time, then
        id."""
        ...

    def next_due_after(self, now: datetime) -> tuple[datetime, int] | None:
        """When the first active subscriber on a rhythm of their own is next due after
        ``now``, and how many are due then; None when nobody is (an indexed read, whatever
        the number of subscribers)."""
        ...

    def misdated_subscribers(self, now: datetime) -> list[Subscriber]:
        """Active subscribers whose next due time lies further after ``now`` than their
        cadence ever puts it (26 hours daily, 7 days 2 hours weekly, 32 days monthly: a clock
        that ran ahead set it), for the planner to set again. No promised order."""
        ...

    def set_next_due(self, due: Sequence[tuple[int, datetime | None]]) -> None:
        """When each subscriber's next digest falls due: (subscriber id, due time; None: no
        time, the site's schedule serves them)."""
        ...

    def delete_subscriber(self, email: str) -> bool:
        """Delete the subscriber with this address, with their deliveries (their queued
        sign-ups stay); whether there was one."""
        ...

    def enqueue_signup(
        self, email: str, regions: Sequence[str], themes: Sequence[str], *, now: datetime,
        rhythm: Rhythm | None = None, topics: Sequence[str] = (),
    ) -> None:  # fmt: skip
        """Queue a request from the subscribe form, due at ``now``. Every call queues one:
        the same address twice is two sign-ups."""
        ...

    def claim_signups(self, now: datetime, *, until: datetime, limit: int) -> list[Signup]:
        """Up to ``limit`` sign-ups due at ``now``, oldest first, now held until ``until`` so no
        other worker takes them meanwhile; returned as they were (``next_try``: when they
        were due).

        Backends: PostgreSQL skips rows another worker is claiming at that moment rather
        than wait for them."""
        ...

    def signup_for(self, signup_id: int, subscriber_id: int) -> None:
        """Note the subscriber a sign-up made (a retry then finds them, not a new one)."""
        ...

    def retry_signup(self, signup_id: int, when: datetime, error: str) -> None:
        """A sign-up failed: try again at ``when``, one attempt more, ``error`` remembered."""
        ...

    def postpone_signups(self, now: datetime, until: datetime) -> None:
        """Every sign-up due at ``now`` waits until ``until`` (the mail server is down); no
        attempt is counted."""
        ...

    def finish_signup(self, signup_id: int) -> None:
        """Remove a sign-up from the queue (its confirmation was sent)."""
        ...

    def signups(self) -> list[Signup]:
        """Every queued sign-up, claimed or not, oldest first."""
        ...


class LedgerStore(ClockStore, Protocol):
    """Digests and the delivery ledger: one row per (digest, subscriber), written as pending
    before any SMTP work and as sent or failed right after, and claims on those rows, so
    that workers send one digest together, each message once."""

    def last_delivered(self, subscriber_ids: Sequence[int] | None = None) -> dict[int, datetime]:
        """Subscriber id → the cut-off time (``until``) of the latest digest they were sent,
        for every subscriber, or those named; subscribers sent none are left out."""
        ...

    def subscribers_with_pending(self) -> set[int]:
        """Subscribers with a delivery still pending in any digest (deferred by the server, or
        unsent)."""
        ...

    def create_digest(
        self, digest_id: str, until: datetime, deliveries: Iterable[tuple[int, datetime, str | None]]
    ) -> int:
        """A digest cut at ``until`` (created now by the shared clock, status sending) with
        its pending ledger rows, (subscriber id, since, period), in one transaction; how many
        rows it holds. A row for a subscriber already in it, or for a period the subscriber
        already has a digest for, is left out (rows without a period never clash on it);
        with none left, no digest is made either.

        Raises: StoreError when a digest ``digest_id`` exists, or a subscriber id is not
        stored (constraint messages)."""
        ...

    def digest(self, digest_id: str) -> DigestRecord | None:
        """The digest with this id, or None."""
        ...

    def digests(self, limit: int = 50) -> list[DigestSummary]:
        """The ``limit`` newest digests (by creation), with how many of their deliveries were
        sent, failed, are pending, and had a hard or soft bounce reported."""
        ...

    def unfinished_digests(self) -> list[DigestRecord]:
        """Digests still sending (not yet marked done by ``finish_digest``), oldest
        first."""
        ...

    def pending_deliveries(self, digest_id: str) -> list[PendingDelivery]:
        """This digest's deliveries still to send, claimed or not, by subscriber id, each with
        the subscriber as they are now (whatever their status)."""
        ...

    def claim_deliveries(
        self, digest_id: str, holder: str, *, limit: int, seconds: float, tried_before: datetime
    ) -> list[PendingDelivery]:
        """Up to ``limit`` of this digest's pending deliveries nobody holds (or whose holder's
        claim ran out) and nobody tried since ``tried_before`` (a run does not retry what a
        server deferred during it; read it with ``ledger_now``), by subscriber id, now held
        by ``holder`` for ``seconds`` by the shared clock. ``record_delivery`` ends a claim.
        Two workers claiming at once never get the same delivery.

        Backends: PostgreSQL skips rows another worker is claiming at that moment rather
        than wait for them."""
        ...

    def renew_claims(self, digest_id: str, holder: str, seconds: float) -> set[int]:
        """Extend ``holder``'s live claims on this digest's pending deliveries to ``seconds``
        from now (shared clock); the subscriber ids it still holds (a claim that ran out may
        be another's by now: it is not renewed)."""
        ...

    def claim_holders(self, digest_id: str, holder: str) -> set[str]:
        """The holders other than ``holder`` of live claims (by the shared clock) on this
        digest's pending deliveries."""
        ...

    def ledger_now(self) -> datetime:
        """Now, by the shared clock, the one the ledger and its claims are stamped and judged
        with: the store's (SQLite: one machine holds the database), the server's (PostgreSQL:
        workers on several machines must agree whatever their own clocks say)."""
        ...

    def release_deliveries(self, digest_id: str, holder: str) -> None:
        """Give up ``holder``'s claims on this digest's pending deliveries (those a server
        deferred): the next run, by any process, takes them."""
        ...

    def record_delivery(
        self, digest_id: str, subscriber_id: int, status: str, *, message_id: str | None = None,
        reply: str | None = None, strike: bool = False, strikes_to_bounce: int = 0,
    ) -> None:  # fmt: skip
        """Write one delivery's outcome in a short transaction of its own (it must survive a
        crash): ``status`` (pending: deferred, sent, failed), one attempt more, tried now by
        the shared clock, the claim ended; ``message_id`` if given (None keeps the stored
        one); ``reply`` replaces the server's last answer. A sent message clears the
        subscriber's strikes; otherwise a ``strike`` (a refusal for good) adds one, and with
        ``strikes_to_bounce``, that many in a row bounce an active or pending subscriber
        (reason: the refusals, the last reply quoted), atomically. The subscriber's strikes
        change even if no such delivery is stored.

        Raises: StoreError for a status other than pending, sent or failed (a CHECK
        constraint)."""
        ...

    def finish_digest(self, digest_id: str) -> None:
        """Mark the digest done if none of its deliveries is pending; else leave it sending.
        Idempotent."""
        ...

    def delivery_counts(self, digest_id: str) -> dict[str, int]:
        """Delivery status (pending, sent, failed) → how many of this digest's deliveries have
        it; statuses none has are left out."""
        ...


class TokensStore(ClockStore, Protocol):
    """API tokens, kept as hashes of their secrets (the secret is shown once, never stored)."""

    def create_token(self, name: str, scope: str, hashed: str) -> ApiToken:
        """Keep a token called ``name`` of ``scope`` ("read" or "write") by ``hashed``, the
        hash of its secret; created by the store's clock.

        Raises: StoreError "a token called 'NAME' exists already; revoke it first or choose
        another name" (a token of that name is not revoked)."""
        ...

    def api_tokens(self) -> list[ApiToken]:
        """Every token, revoked ones too, newest first."""
        ...

    def token_by_hash(self, hashed: str) -> ApiToken | None:
        """The token whose secret hashes to ``hashed`` (revoked ones too), or None."""
        ...

    def has_tokens(self) -> bool:
        """Whether a token not revoked exists (the API answers only then)."""
        ...

    def revoke_token(self, name: str) -> None:
        """Revoke the token called ``name`` (by the store's clock): it no longer opens the API.

        Raises: StoreError "no token named 'NAME' (or it is revoked already)"."""
        ...

    def token_used(self, token_id: int, now: datetime, *, every: float = 60.0) -> None:
        """Set the token's ``last_used`` to ``now`` unless it was set less than ``every``
        seconds before (a busy client does not turn every read into a write)."""
        ...


class ActivityStore(ClockStore, Protocol):
    """What operators look at: a subscriber's deliveries, and what happened each day."""

    def deliveries_of(
        self, subscriber_id: int, *, limit: int = 50, before: str | None = None
    ) -> list[DeliveryRecord]:
        """Up to ``limit`` of the subscriber's deliveries, the latest changed first (ties by
        digest id); with ``before`` (a digest id), those after that delivery in this order
        (one of another subscriber, or none: nothing)."""
        ...

    def subscriber_events(self, *, limit: int = 500) -> list[SubscriberEvent]:
        """The oldest ``limit`` subscriber status changes noted (by the database itself,
        whatever made them: to active, unsubscribed or bounced; a subscriber created
        active too; never to pending) and not forgotten, in the order noted. ``at``: the
        change's own stamp (confirmed, unsubscribed) where the subscriber has one, else
        the database's clock. Deleting a subscriber forgets theirs; a copy (``load``)
        notes none."""
        ...

    def forget_subscriber_events(self, up_to: int) -> None:
        """Forget the status changes noted with ids up to ``up_to``."""
        ...

    def stories_changed(self, since: datetime, *, min_articles: int = 2) -> list[StoryRecord]:
        """Stories of at least ``min_articles`` articles whose ``updated`` is at or after
        ``since``, by ``updated`` then id."""
        ...

    def activity(self, since: datetime) -> Activity:
        """Per UTC day from ``since`` on: articles by when first seen; deliveries by status,
        on the day each last changed; reports (soft, hard, complaint) on the day they came.
        Days with nothing are left out."""
        ...


class WebhooksStore(ClockStore, Protocol):
    """Outgoing webhooks: endpoints added through the API, and the durable queue of events,
    one row per event and endpoint, delivered at least once."""

    def add_webhook(self, url: str, events: Sequence[str], secret: str) -> WebhookRecord:
        """Keep an endpoint (created by the store's clock) for ``events`` (types), signed
        with ``secret``.

        Raises: StoreError "a webhook with that URL exists already; remove it first"."""
        ...

    def webhooks(self) -> list[WebhookRecord]:
        """The endpoints added through the API, oldest first."""
        ...

    def remove_webhook(self, webhook_id: int) -> None:
        """Forget an endpoint (its queued events stay, and fail when next tried).

        Raises: StoreError "no webhook ID"."""
        ...

    def enqueue_events(self, events: Sequence[QueuedEvent]) -> None:
        """Queue events (pending, due at once: at their ``created``), in one transaction;
        an id already queued is left as it is."""
        ...

    def claim_events(self, holder: str, *, limit: int, seconds: float, now: datetime) -> list[QueuedEvent]:
        """Up to ``limit`` pending events due by ``now`` that no claim holds (or whose
        claim ran out), by due time then id, now held by ``holder`` until ``seconds``
        after ``now``. Of two holders claiming at once, each event goes to one."""
        ...

    def event_tried(
        self, event_id: str, *, now: datetime, error: str | None, retry_at: datetime | None
    ) -> None:
        """Count one attempt at delivering the event and end its claim: delivered (no
        ``error``; done at ``now``), pending again until ``retry_at``, or failed for good
        (an ``error`` and no ``retry_at``; done at ``now``), ``error`` kept as given."""
        ...

    def queued_events(self, *, limit: int = 100, url: str | None = None) -> list[QueuedEvent]:
        """The newest ``limit`` events in the queue, whatever their status, for the
        endpoint ``url`` or all; newest first."""
        ...

    def prune_events(self, before: datetime) -> int:
        """Delete delivered and failed events done before ``before``; how many."""
        ...


class ConsoleStore(ClockStore, Protocol):
    """The operators' console: accounts (kept by the hash of each password), the sessions
    logged in (kept by the hash of each cookie's secret) and the audit log."""

    def add_admin(self, name: str, hashed: str) -> AdminRecord:
        """An account called ``name`` whose password hashes to ``hashed`` (created and
        changed by the store's clock).

        Raises: StoreError "an account called 'NAME' exists already"."""
        ...

    def admins(self) -> list[AdminRecord]:
        """Every account, by name (byte order)."""
        ...

    def admin(self, name: str) -> AdminRecord | None:
        """The account called ``name``, or None."""
        ...

    def has_admins(self) -> bool:
        """Whether an account exists (the console answers only then)."""
        ...

    def set_admin_password(self, name: str, hashed: str) -> None:
        """A new password hash (changed now, by the store's clock); every session of the
        account ends with it.

        Raises: StoreError "no account named 'NAME'"."""
        ...

    def remove_admin(self, name: str) -> None:
        """Delete the account and its sessions (what the audit log says of it stays).

        Raises: StoreError "no account named 'NAME'"."""
        ...

    def start_session(
        self, hashed: str, admin_id: int, csrf: str, *, now: datetime, expires: datetime
    ) -> None:
        """Keep a session by the hash of its cookie's secret, with its form token, made and
        seen at ``now``, ending at ``expires``; the account's last login is ``now``."""
        ...

    def session(self, hashed: str) -> SessionRecord | None:
        """The session whose cookie hashes to ``hashed``, with its account's name (whether
        it expired is the caller's to judge), or None."""
        ...

    def session_seen(self, hashed: str, now: datetime) -> None:
        """The session was seen at ``now`` (never moved back)."""
        ...

    def end_session(self, hashed: str) -> None:
        """End the session (logout); an unknown one is ignored."""
        ...

    def prune_sessions(self, *, now: datetime, idle_before: datetime) -> int:
        """Delete sessions expired by ``now`` or last seen before ``idle_before``; how many."""
        ...

    def record_audit(
        self, actor: str, action: str, target: str | None = None, detail: Mapping[str, Any] | None = None
    ) -> None:
        """Add to the audit log: at now (the store's clock) ``actor`` did ``action`` to
        ``target``, with ``detail``."""
        ...

    def audit_log(self, *, limit: int = 50, before: int | None = None) -> list[AuditEntry]:
        """The latest ``limit`` entries, newest first; ``before``: those before that id."""
        ...


class FeedbackStore(ClockStore, Protocol):
    """What came back after a delivery (bounces, complaints): finding the delivery a report
    is about, and applying the rules of :mod:`digest.store.feedback` to it."""

    def sent_digests(self, subscriber_id: int, limit: int = 50) -> list[str]:
        """Ids of up to ``limit`` digests sent to this subscriber, the most recently sent
        first."""
        ...

    def delivery_of_message(self, message_id: str) -> tuple[str, int] | None:
        """(digest id, subscriber id) of the delivery sent with this Message-ID (with or
        without its ``<>``), or None."""
        ...

    def record_feedback(
        self, subscriber_id: int, digest_id: str | None, kind: str, detail: str, *,
        soft_limit: int, now: datetime,
    ) -> str:  # fmt: skip
        """Apply one report of ``kind`` (soft, hard, complaint) about the delivery of
        ``digest_id`` to this subscriber (None, or a digest with no delivery to them: their
        latest digest sent since last (re)activated) as :mod:`digest.store.feedback` decides,
        reading and writing in one transaction; the outcome's name (``feedback.OUTCOMES``:
        "unknown" for a subscriber not stored). The report is noted on its delivery at ``now``; a status
        change stamps ``now`` where it records one. The same report twice changes nothing
        the second time.

        Raises: ValueError for a ``kind`` not in ``feedback.KINDS`` (nothing written)."""
        ...

    def feedback_counts(self, digest_id: str) -> dict[str, int]:
        """Report kind → how many of this digest's deliveries hold a report of it (each
        keeps its worst); kinds none holds are left out."""
        ...


class Store(
    DatabaseStore,
    TransferStore,
    SourcesStore,
    ArticlesStore,
    GroupingStore,
    SettingsStore,
    SubscribersStore,
    LedgerStore,
    FeedbackStore,
    TokensStore,
    WebhooksStore,
    ActivityStore,
    ConsoleStore,
    Protocol,
):
    """Every area at once: what ``open_store`` returns, and what each backend implements."""


# --- the combinations callers ask for -------------------------------------------------------


class ArticlesAndSources(ArticlesStore, SourcesStore, Protocol):
    """What a feed needs (each entry links its source), and storing items that came to
    digest (the source's stored state names their ids)."""


class ArticlesAndGrouping(ArticlesStore, GroupingStore, Protocol):
    """What grouping needs (a source's rules on regions and themes drop articles once they
    are grouped), and the home page."""


class ArticlesAndSettings(ArticlesStore, SettingsStore, Protocol):
    """What the search page needs (each search the cache cannot answer counts against its
    client's limit, a setting)."""


class SettingsAndSubscribers(SettingsStore, SubscribersStore, Protocol):
    """What reading a subscriber's link token needs (the secret and the date tokens were
    first bound are settings)."""


class FeedbackAndSubscribers(FeedbackStore, SubscribersStore, Protocol):
    """What applying a report to a known subscriber needs."""
