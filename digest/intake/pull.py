"""Pulling sources: fetch → parse → normalise (sanitise, ids, dates) → dedupe → store.

One source failing never stops the others: every outcome, good or bad, becomes a
:class:`~digest.common.models.SourceReport`, and fetch state is recorded for the next pull.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from contextlib import nullcontext
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, NamedTuple, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from digest.common import redact
from digest.common.dates import plausible
from digest.common.egress import FetchPolicy, is_remote
from digest.common.errors import DigestError, FetchError
from digest.common.links import WEB_SCHEMES
from digest.common.models import Article, Document, ParsedItem, SearchTokens, SourceReport, SourceState
from digest.common.parallel import Helper, fork_map
from digest.common.query import index_text
from digest.common.rules import fields_of
from digest.common.sanitize import drop_boilerplate, html_to_text, one_line, sanitize_html
from digest.config import Settings, SourceSettings
from digest.grouping.classify import LinkTask, Offload, Packed, Packed_links, Reader, group_shared, linked
from digest.intake import fulltext, parsing, websub
from digest.intake.fetch import Fetcher, FetchResult, Request, fetched_ahead
from digest.intake.fulltext import is_excerpt
from digest.intake.parsing import Options, Parsed
from digest.intake.sources import current
from digest.intake.sync import sync_sources
from digest.store import ArticlesStore, DroppedItem, SettingsStore, SourcesStore, Store
from digest.store.holders import holder_name

if TYPE_CHECKING:
    from digest.store.contract import ArticlesAndSources

MAX_BACKOFF = 86400.0
MAX_TITLE = 300
MAX_URL = 2048
MAX_CONTENT = 1_000_000
_TRACKING_PARAMS = ("utm_", "fbclid", "gclid", "mc_cid", "mc_eid")
_AUTHOR_EMAIL = re.compile(
    r"\s*(?:\(\s*[^()\s]+@[^()\s]+\s*\)|<\s*[^<>\s]+@[^<>\s]+\s*>|^[^\s()<>]+@[^\s()<>]+$)\s*"
)


def pull(
    settings: Settings,
    store: Store,
    names: Iterable[str] = (),
    *,
    fetcher: Fetcher | None = None,
    force: bool = False,
    group: bool = True,
) -> list[SourceReport]:
    """Pull the named sources (all enabled ones when none are named), grouping what is new as
    it goes (every ``GROUP_EVERY`` articles, and at the end; unless ``group`` is false: it
    waits for the next pull or ``regroup``); one report per source. Sources added at run
    time are pulled as the config file's are (a paused one only when named)."""
    sync_sources(store, settings)
    settings = current(settings, store)
    wanted = [settings.source(name) for name in names] or [
        s for s in settings.sources if s.enabled and s.pulled
    ]
    own = fetcher is None
    fetcher = fetcher or Fetcher(settings.fetch)
    reader = Reader(settings) if group else None
    requests = _requests(store, fetcher, wanted, force=force)
    reports: list[SourceReport] = []
    dropped: Counter[str] = Counter()
    waiting = 0  # articles stored or changed since they were last grouped
    try:
        # The helper forks before the fetching threads start, and is gone before grouping forks.
        with (
            _WorkedAhead(settings, reader, requests) as worked,
            fetcher.ahead(list(requests), then=worked.fetched),
        ):
            for source in wanted:
                report = _pull_guarded(
                    store, fetcher, source, settings, force=force, reader=reader, worked=worked
                )
                reports.append(report)
                waiting += report.new + report.updated
                if reader and waiting >= GROUP_EVERY and source is not wanted[-1]:
                    offload = worked.offload()
                    dropped.update(
                        group_shared(store, settings, holder_name(), reader=reader, offload=offload)
                    )
                    waiting = 0
    finally:
        if own:
            fetcher.close()
    if reader and waiting:
        dropped.update(group_shared(store, settings, holder_name(), reader=reader))
    for report in reports:  # what rules on regions and themes dropped, once grouped
        later = dropped.get(report.name, 0)
        report.dropped += later
        report.new = max(0, report.new - later)  # stored, then moved out: not new articles
    return reports


# A pull of many sources groups what it stored every this many articles, not all at the end:
# what was read of each article for grouping waits in memory until then (about 8 KB an
# article), and grouping's own work grows with what it takes, so memory stays bounded
# whatever the number of sources. Not less: a round that extends stored stories costs this
# process more than one batch (1,000 feeds of 20 items: 275 MB and 24 s at 10,000; 190 MB
# and 30-35 s at 2,000; 410 MB and 21 s all at once).
GROUP_EVERY = 10_000


def _requests(
    store: SourcesStore, fetcher: Fetcher, sources: list[SourceSettings], *, force: bool
) -> dict[Request, list[tuple[SourceSettings, str]]]:
    """The fetches :func:`pull_source` will make of these sources, as it will make them, to
    fetch ahead: not those it holds back (disabled, or asked to wait by the server). Each
    with the sources that make it, and the name their ids are made with."""
    now = store.now()
    found: dict[Request, list[tuple[SourceSettings, str]]] = {}
    for source in sources:
        if not source.pulled:
            continue
        state = store.source_state(source.name)
        if _held_back(state, now, force=force) is None:
            policy = fetcher.policy(source.url, allow_private=source.allow_private, added=source.added)
            request = Request(state.url, state.etag, state.last_modified, policy)
            found.setdefault(request, []).append((source, state.id_name))
    return found


class _Worked(NamedTuple):
    """What one document makes, worked out anywhere: pure, with no store, network or clock."""

    error: str | None  # why it could not be parsed
    feed_links: list[str]  # the feeds an HTML page advertises, to follow instead (``auto``)
    items: list[Undated | str]  # each item normalised, or the warning that skips it
    excerpts: list[bool]  # (full_text sources) whether each item carries only an excerpt


# A fetch's documents worked out, and what the grouping's reader read of their articles.
_WorkedFetch = tuple[list[_Worked], dict[tuple[str, str], Packed]]


def _work(source: SourceSettings, settings: Settings, id_name: str, document: Document) -> _Worked:
    """Parse and normalise one document; an ``auto`` source's remote HTML page that
    advertises a feed stops at its links (the feed is to be fetched instead)."""
    try:
        parsed = parse_document(document, source, settings)
    except DigestError as exc:
        return _Worked(redact.text(f"{document.name}: {exc}"), [], [], [])
    if parsed.feed_links and source.kind == "auto" and is_remote(document.url):
        return _Worked(None, list(parsed.feed_links), [], [])
    return _worked_items(parsed.items, source, settings, parsed.base_url or document.url, id_name)


def _worked_items(
    items: list[ParsedItem], source: SourceSettings, settings: Settings, base_url: str, id_name: str
) -> _Worked:
    normalised = _normalise_all(items, source.name, base_url, id_name)
    below = settings.fetch.full_text_below
    excerpts = [
        source.full_text
        and not isinstance(done, str)
        and is_excerpt(item.content_html, done.summary_text, below)
        for item, done in zip(items, normalised, strict=True)
    ]
    return _Worked(None, [], normalised, excerpts)


class _FetchJob(NamedTuple):
    """A fetch's documents, for one of the sources that made it."""

    source: SourceSettings
    id_name: str
    documents: tuple[Document, ...]


_Job = _FetchJob | LinkTask


def _helped(job: _Job, *, settings: Settings, reader: Reader | None) -> _WorkedFetch | Packed_links:
    """The helper's work: a fetch's documents worked out, or a grouping's links."""
    if isinstance(job, LinkTask):
        return linked(job)
    return _work_fetch(job, settings=settings, reader=reader)


def _work_fetch(job: _FetchJob, *, settings: Settings, reader: Reader | None) -> _WorkedFetch:
    """A fetch's documents worked out, and read for grouping (the helper's work)."""
    source, id_name, documents = job
    worked = [_work(source, settings, id_name, document) for document in documents]
    texts = list(
        dict.fromkeys((u.title, u.summary_text) for w in worked for u in w.items if not isinstance(u, str))
    )
    return worked, dict(zip(texts, reader.read_packed_all(texts), strict=True)) if reader else {}


class _WorkedAhead:
    """A fetch made ahead, worked on at once by a helper on another core (see
    :class:`~digest.common.parallel.Helper`: none where forking is not safe or not worth
    it), while this process stores the sources before it: found by :meth:`take` when the
    pull comes to its source."""

    def __init__(
        self,
        settings: Settings,
        reader: Reader | None,
        requests: Mapping[Request, list[tuple[SourceSettings, str]]],
    ) -> None:
        self.requests = requests
        self.helper: Helper[_Job, _WorkedFetch | Packed_links] | None = (
            Helper(partial(_helped, settings=settings, reader=reader)) if fetched_ahead(requests) else None
        )
        # What was handed over, by key: the documents themselves, so that the key (which
        # names them by identity, cheaper than hashing their bytes) stays theirs.
        self.given: dict[tuple[str, str, int], tuple[Document, ...]] = {}
        self.tasks = 0  # linking tasks handed over so far (their keys)

    def fetched(self, request: Request, result: FetchResult) -> None:
        """(On a fetching thread.) Hand what ``request`` brought to the helper, for each source."""
        if self.helper is None or not result.documents:
            return
        for source, id_name in self.requests.get(request, ()):
            key = (source.name, id_name, id(result.documents))
            self.given[key] = result.documents
            self.helper.submit(key, _FetchJob(source, id_name, result.documents))

    def take(self, source: str, id_name: str, documents: tuple[Document, ...]) -> _WorkedFetch | None:
        """What the helper made of these documents of ``source``; None if it was not given them."""
        key = (source, id_name, id(documents))
        if self.helper is None or self.given.pop(key, None) is not documents:
            return None
        return cast(_WorkedFetch | None, self.helper.result(key))  # a fetch's key: its work

    def offload(self) -> Offload | None:
        """Where grouping may link while the pull goes on (the helper), if anywhere."""
        return self if self.helper is not None else None

    def start_linking(self, task: LinkTask) -> Hashable:
        self.tasks += 1
        key = ("link", self.tasks)
        if self.helper is not None:
            self.helper.submit(key, task)
        return key

    def linked(self, key: Hashable) -> Packed_links | None:
        found = self.helper.result(key) if self.helper is not None else None
        return cast(Packed_links | None, found)  # a linking task's key: its links

    def __enter__(self) -> _WorkedAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.helper is not None:
            self.helper.close()
        self.given.clear()


def _pull_guarded(
    store: Store,
    fetcher: Fetcher,
    source: SourceSettings,
    settings: Settings,
    *,
    force: bool,
    reader: Reader | None,
    worked: _WorkedAhead | None = None,
) -> SourceReport:
    if not source.pulled:
        return SourceReport(
            source.name, error=f"fed by mail to {source.address} (digest run's [inbound] server)"
        )
    # A bug tripped by one source's bytes must not cost the other sources their pull.
    try:
        return pull_source(store, fetcher, source, settings, force=force, reader=reader, worked=worked)
    except DigestError:
        raise
    except Exception as exc:
        # Redacted before it is cut, so a cut cannot leave half a URL's credentials behind.
        message = f"unexpected {type(exc).__name__} while pulling: {redact.text(one_line(str(exc)))[:300]}"
        store.record_fetch(source.name, status=None, error=message, keep_validators=True)
        return SourceReport(source.name, error=message)


def pull_source(
    store: Store,
    fetcher: Fetcher,
    source: SourceSettings,
    settings: Settings,
    *,
    force: bool = False,
    scheduled: bool = False,
    holder: str | None = None,
    reader: Reader | None = None,
    worked: _WorkedAhead | None = None,
) -> SourceReport:
    """Fetch, parse and store one source. Expected failures end up in the report, not raised.
    ``scheduled``: a pull by the service, which also waits out backoff and cache lifetimes.
    ``holder``: the process pulling, which first claims the source, so that of several
    processes on one database one pulls it (the others find it claimed, or not due).
    ``reader``: the grouping's, to read what is new on other cores while it is stored;
    ``worked``: where what was fetched ahead may have been worked on already."""
    report = SourceReport(source.name)
    first_look = store.source_state(source.name)
    now = store.now()
    state = _claimed(store, source.name, settings, first_look, now, scheduled=scheduled, holder=holder)
    if state is None:
        report.not_due = True
        return report
    every = source.every or settings.schedule.pull_every
    held_back = _held_back(state, now, force=force)
    if held_back is not None:
        report.error = held_back
        return report
    # The policy follows the configured URL, never where a redirect or a page led since.
    policy = fetcher.policy(source.url, allow_private=source.allow_private, added=source.added)
    try:
        result = fetcher.fetch(state.url, etag=state.etag, last_modified=state.last_modified, policy=policy)
    except FetchError as exc:
        store.record_fetch(
            source.name,
            status=exc.status,
            error=str(exc),
            next_fetch=_retry_at(now, every, state.consecutive_failures, exc.retry_after),
            keep_validators=True,
        )
        report.error = str(exc)
        return report
    if result.not_modified or result.gone:
        _record_nothing_new(store, source.name, state, result, now, every, report)
        return report
    ahead = worked.take(source.name, state.id_name, result.documents) if worked else None
    batch = _articles_of(store, fetcher, result, source, settings, state, now, policy, report, ahead)
    if batch.failures and len(batch.failures) == len(result.documents):
        message = _all_failed(batch.failures)
        store.record_fetch(source.name, status=result.status, error=message, keep_validators=True)
        report.error = message
        return report
    report.warnings.extend(f"skipped {failure}" for failure in batch.failures)
    if is_remote(state.url) and result.documents:  # WebSub: a feed that names a hub
        pushed = _follow_hub(
            store, settings, source, result, batch.fetch_url or state.url, now, policy, report
        )
        if pushed:  # pushes come at once: polling is the safety net
            every = max(every, websub.SAFETY_POLL)
    if batch.excerpts:
        _fill_full_text(store, fetcher, source, settings, batch, now, policy, report)
    _save(store, source, list(batch.articles.values()), now, report, reader, ahead[1] if ahead else None)
    store.record_fetch(
        source.name,
        status=result.status,
        error=None,
        etag=result.etag,
        last_modified=result.last_modified,
        fetch_url=batch.fetch_url,
        next_fetch=_next_fetch(now, every, result.fresh_for),
    )
    return report


def _waiting(state: SourceState, now: datetime, scheduled: bool) -> bool:
    """Whether a scheduled pull waits: backoff or a cache lifetime is not over yet."""
    return bool(scheduled and state.next_fetch and state.next_fetch > now)


def _claimed(
    store: SourcesStore,
    name: str,
    settings: Settings,
    state: SourceState,
    now: datetime,
    *,
    scheduled: bool,
    holder: str | None,
) -> SourceState | None:
    """The source's state to pull it with, claimed for ``holder`` when there is one; None
    when it is not to be pulled now (not due, or another process is pulling it)."""
    if _waiting(state, now, scheduled):
        return None
    if holder is None:
        return state
    lasting = max(settings.database.claim_seconds, 2 * settings.fetch.deadline)
    if not store.claim_source(name, holder, lasting):
        return None  # another process is pulling it now
    # It may have been pulled between the first look and the claim.
    state = store.source_state(name)
    if _waiting(state, now, scheduled):
        store.claim_source(name, holder, 0)  # let go at once
        return None
    return state


def _held_back(state: SourceState, now: datetime, *, force: bool) -> str | None:
    """Why the source is not fetched now (disabled, or its server asked us to wait), or None."""
    if not state.enabled and not force:
        return (
            f"disabled after HTTP {state.last_status}: change its url in the config,"
            " or pull it with --force to try again"
        )
    if not force and state.next_fetch and state.next_fetch > now and state.last_status in (429, 503):
        return f"deferred: the server asked us to wait until {state.next_fetch:%Y-%m-%d %H:%M} UTC"
    return None


def _retry_at(now: datetime, every: float, failures: int, retry_after: datetime | None) -> datetime:
    """When to fetch again after a failure: exponential backoff, capped at a day; a
    Retry-After wins if later."""
    backoff = now + timedelta(seconds=min(every * 2 ** min(failures, 16), MAX_BACKOFF))
    return max(backoff, retry_after) if retry_after else backoff


def _record_nothing_new(
    store: SourcesStore,
    name: str,
    state: SourceState,
    result: FetchResult,
    now: datetime,
    every: float,
    report: SourceReport,
) -> None:
    """Record an answer without documents: not modified (304), or gone (410: disabled)."""
    if result.not_modified:
        store.record_fetch(
            name,
            status=304,
            error=None,
            fetch_url=result.permanent_url,
            keep_validators=True,
            next_fetch=_next_fetch(now, every, result.fresh_for),
        )
        report.not_modified = True
        return
    message = f"{state.url}: HTTP 410 Gone; source disabled"
    store.record_fetch(name, status=410, error=message, disable=True, keep_validators=True)
    report.error = message


@dataclasses.dataclass
class _Batch:
    """What a fetch's documents hold, ready to store."""

    articles: dict[str, Article]  # by the id each is stored with
    excerpts: set[str]  # (full_text sources) ids of items that carry only an excerpt
    failures: list[str]  # documents that could not be parsed, each with why
    fetch_url: str | None  # where to fetch the source from now on, when that changed


def _articles_of(
    store: ArticlesStore,
    fetcher: Fetcher,
    result: FetchResult,
    source: SourceSettings,
    settings: Settings,
    state: SourceState,
    now: datetime,
    policy: FetchPolicy,
    report: SourceReport,
    ahead: _WorkedFetch | None = None,
) -> _Batch:
    """Parse and normalise each document (an HTML page of an ``auto`` source: the feed it
    advertises instead), or take what ``ahead`` made of them; a document that fails is a
    failure, an item that fails a warning."""
    batch = _Batch({}, set(), [], result.permanent_url)
    documents = ahead[0] if ahead else [_work(source, settings, state.id_name, d) for d in result.documents]
    for document, worked in zip(result.documents, documents, strict=True):
        if worked.feed_links:
            feed_url = worked.feed_links[0]
            try:
                parsed = _follow_feed(fetcher, feed_url, source, settings, policy)
            except DigestError as exc:
                batch.failures.append(redact.text(f"{document.name}: {exc}"))
                continue
            batch.fetch_url = feed_url
            report.warnings.append(f"following the feed the page advertises: {redact.url(feed_url)}")
            worked = _worked_items(parsed.items, source, settings, feed_url, state.id_name)
        if worked.error is not None:
            batch.failures.append(worked.error)
            continue
        for done, excerpt in zip(worked.items, worked.excerpts, strict=True):
            if isinstance(done, str):
                report.warnings.append(done)
            else:  # a later snapshot of the same article wins over an earlier one in the same pull
                article = dated(done, now)
                batch.articles[article.id] = article
                if excerpt:
                    batch.excerpts.add(article.id)
    stored_as = own_ids(store, source.name, batch.articles)
    batch.excerpts = {stored_as[given].id for given in batch.excerpts}
    batch.articles = {article.id: article for article in stored_as.values()}
    return batch


def _normalise_all(items: list[ParsedItem], source: str, base_url: str, id_name: str) -> list[Undated | str]:
    """Each item normalised (on other cores too, for many), or the warning that skips it."""

    def normalised(item: ParsedItem) -> Undated | str:
        try:
            return undated(item, source, base_url, id_name)
        except ValueError as exc:  # one bad item costs only itself
            shown = one_line(item.title)[:80] or one_line(item.url or "")[:80]
            return redact.text(f"skipped {shown!r}: a malformed link ({exc})")

    return fork_map(normalised, items)


def _all_failed(failures: list[str]) -> str:
    """The error of a pull none of whose documents could be parsed."""
    return failures[0] if len(failures) == 1 else f"{failures[0]} (and {len(failures) - 1} more)"


def _follow_hub(
    store: SettingsStore,
    settings: Settings,
    source: SourceSettings,
    result: FetchResult,
    topic: str,
    now: datetime,
    policy: FetchPolicy,
    report: SourceReport,
) -> bool:
    """Subscribe (or renew) at the WebSub hub the feed names, for the topic it names (else
    ``topic``); whether a hub pushes the source now."""
    hub, named = websub.discover(result.documents[0].body, result.link)
    if hub:
        problem = websub.maintain(store, settings, source, hub, named or topic, now, policy)
        report.warnings.extend([problem] if problem else [])
    return websub.active(store, source.name, now)


def _fill_full_text(
    store: ArticlesStore,
    fetcher: Fetcher,
    source: SourceSettings,
    settings: Settings,
    batch: _Batch,
    now: datetime,
    policy: FetchPolicy,
    report: SourceReport,
) -> None:
    """The text of their pages for the batch's excerpts (those :func:`_needing_pages`)."""
    articles, excerpts = batch.articles, sorted(batch.excerpts)
    wanted = _needing_pages(
        articles,
        excerpts,
        store.content_hashes(excerpts),
        store.remembered_drops(excerpts),
        source.rules.texts,
    )
    validators = store.page_validators([a.url for a in wanted if a.url])
    filled = fulltext.fill(fetcher, policy, wanted, settings.fetch, validators)
    articles.update(filled.articles)
    for article_id in filled.unchanged:  # 304: the page's text, extracted before, stands
        before = store.article(article_id)
        if before is not None:
            articles[article_id] = dataclasses.replace(
                articles[article_id], summary_html=before.summary_html, summary_text=before.summary_text
            )
    store.save_page_validators(filled.pages, now=now)
    report.warnings.extend(filled.warnings)
    if filled.postponed:
        report.warnings.append(
            f"{filled.postponed} older items kept their excerpt"
            f" (full text: at most {fulltext.MAX_PAGES} pages and {fulltext.BUDGET_SECONDS:.0f} s a pull)"
        )


def _needing_pages(
    articles: dict[str, Article],
    excerpts: list[str],
    stored: dict[str, str],
    remembered: dict[str, tuple[str, str]],
    rules: frozenset[str],
) -> list[Article]:
    """The excerpts whose pages to fetch: only items new or changed since the last pull (a
    page is extracted once per version; ``stored``: content hashes). What the rules dropped
    (and still would: same item, rule still there) needs no page."""
    dropped = {i: content for i, (rule, content) in remembered.items() if rule in rules}
    return [
        articles[i]
        for i in excerpts
        if stored.get(i) != articles[i].content_hash and dropped.get(i) != articles[i].content_hash
    ]


def _save(
    store: ArticlesStore,
    source: SourceSettings,
    batch: list[Article],
    now: datetime,
    report: SourceReport,
    reader: Reader | None = None,
    read: Mapping[tuple[str, str], Packed] | None = None,
) -> None:
    """Store what the rules keep of a source's new batch, counting into ``report``
    (``read``: what a helper already read of these articles for the ``reader``)."""
    # Even without rules: items dropped by rules since removed are articles again.
    batch, report.dropped = _apply_rules(store, source, batch, now)
    with reader.ahead(batch, store, read=read) if reader else nullcontext():
        counts = store.save_articles(source.name, batch, now=now)
    report.new, report.updated, report.unchanged = counts.new, counts.updated, counts.unchanged


def store_items(
    store: ArticlesAndSources,
    source: SourceSettings,
    items: list[ParsedItem],
    now: datetime,
    *,
    base_url: str,
) -> SourceReport:
    """Normalise and store items that came to digest rather than being pulled (newsletters)."""
    report = SourceReport(source.name)
    id_name = store.source_state(source.name).id_name
    articles: dict[str, Article] = {}
    for item in items:
        try:
            article = normalise(item, source.name, base_url, now, id_name)
        except ValueError as exc:
            report.warnings.append(f"skipped {one_line(item.title)[:80]!r}: {exc}")
            continue
        articles[article.id] = article
    _save(store, source, list(own_ids(store, source.name, articles).values()), now, report)
    return report


def _apply_rules(
    store: ArticlesStore, source: SourceSettings, batch: list[Article], now: datetime
) -> tuple[list[Article], int]:
    """The articles the source's rules keep (as far as they can tell before grouping), and
    how many they dropped now. A drop is remembered: an item dropped before, unchanged, by
    a rule still configured, is left out without being judged again (nor counted)."""
    remembered = store.remembered_drops([a.id for a in batch])
    current = source.rules.texts
    kept: list[Article] = []
    dropped: list[tuple[Article, str]] = []
    for article in batch:
        known = remembered.get(article.id)
        if known is not None and known[0] in current and known[1] == article.content_hash:
            continue
        verdict = None
        if source.rules:
            fields = fields_of(article.title, article.summary_text, article.author, article.url, (), ())
            verdict = source.rules.verdict(fields, grouped=False)
        if verdict is None:
            kept.append(article)
        else:
            dropped.append((article, verdict))
    revived = [a.id for a in kept if a.id in remembered]
    if revived:  # dropped by a rule no longer configured: an article again
        store.forget_drops(revived)
    if dropped:
        # One stored before the rule was written goes too (out of the articles, into the dropped).
        stored = store.content_hashes([a.id for a, _ in dropped])
        store.drop_articles([(a.id, rule) for a, rule in dropped if a.id in stored], now=now)
        store.save_dropped(
            [
                DroppedItem(a.id, source.name, a.title, a.url, rule, a.content_hash, now)
                for a, rule in dropped
                if a.id not in stored
            ]
        )
    return kept, len(dropped)


def store_pushed(
    store: Store, settings: Settings, source: SourceSettings, body: bytes, url: str, content_type: str | None
) -> SourceReport:
    """A feed a WebSub hub pushed for ``source`` (its signature already checked): parsed,
    stored and grouped as a pull's would be."""
    now = store.now()
    parsed = parse_document(Document(body, url, content_type, url), source, settings, kind="feed")
    report = store_items(store, source, list(parsed.items), now, base_url=parsed.base_url or url)
    if report.new or report.updated:
        dropped = group_shared(store, settings, holder_name())
        report.dropped += dropped.get(source.name, 0)
    return report


def _next_fetch(now: datetime, every: float, fresh_for: float | None) -> datetime:
    # Never sooner than the interval, nor before the server says the answer goes stale.
    return now + timedelta(seconds=min(max(every, fresh_for or 0.0), MAX_BACKOFF))


def parse_document(
    document: Document, source: SourceSettings, settings: Settings, *, kind: str = ""
) -> Parsed:
    """Parse one document as ``kind`` (default: the source's; ``auto``: as its bytes say),
    with the limits every path shares."""
    options = Options(
        max_items=settings.fetch.max_items, fast=settings.fetch.fast_parser, selectors=source.selectors
    )
    return parsing.parse_document(document, kind or source.kind, options)


def _follow_feed(
    fetcher: Fetcher, url: str, source: SourceSettings, settings: Settings, policy: FetchPolicy
) -> Parsed:
    result = fetcher.fetch(url, policy=policy)
    items: list[ParsedItem] = []
    for document in result.documents:
        items.extend(parse_document(document, source, settings, kind="feed").items)
    return Parsed(items, base_url=url)


class Undated(NamedTuple):
    """An item normalised but for what depends on the moment it is stored (see :func:`dated`):
    the dates as the item gave them."""

    id: str
    former_id: str | None
    source: str
    title: str
    url: str | None
    guid: str | None
    summary_html: str
    summary_text: str
    author: str | None
    published: datetime | None
    updated: datetime | None
    search_tokens: SearchTokens


def normalise(item: ParsedItem, source: str, base_url: str, now: datetime, id_name: str = "") -> Article:
    """A parsed item made safe and stable: sanitised HTML, plain text, an id, a content hash.
    ``id_name``: the source name its ids are made with, when a rename made it differ."""
    return dated(undated(item, source, base_url, id_name), now)


def undated(item: ParsedItem, source: str, base_url: str, id_name: str = "") -> Undated:
    """All of :func:`normalise` that the clock has no say in: the costly part."""
    # Identity keeps using the link as given (an article's id must not change), but only a
    # web link of sane length is stored and shown.
    web_link = normalise_url(item.url) if item.url else None
    full_key = (web_link or one_line(item.url)) if item.url else None
    link_key = full_key[:MAX_URL] if full_key else None
    url = web_link if web_link and len(web_link) <= MAX_URL else None
    # Relative links in content resolve against the document, as feedparser does for feeds.
    # Hostile sizes are cut before the work: a 10 MB "title" or body helps no reader.
    summary_html = drop_boilerplate(sanitize_html(item.content_html[:MAX_CONTENT], base_url=base_url))
    summary_text = html_to_text(summary_html, sanitized=True)
    title = _cut(one_line(item.title[: MAX_TITLE * 4]), MAX_TITLE) or "(untitled)"
    author = author_name(item.author) if item.author else None
    guid = one_line(item.guid) if item.guid else None
    if guid and link_key and (full_key if guid == item.url else _link_key(guid)) == link_key:
        guid = None  # a GUID that only repeats the link says nothing more
    return Undated(
        id=article_id(id_name or source, guid, link_key, title),
        former_id=former_article_id(id_name or source, guid, link_key, title),
        source=source,
        title=title,
        url=url,
        guid=guid,
        summary_html=summary_html,
        summary_text=summary_text,
        author=author,
        published=item.published,
        updated=item.updated,
        search_tokens=SearchTokens(title, summary_text, index_text(title), index_text(summary_text)),
    )


def dated(item: Undated, now: datetime) -> Article:
    """The article ``item`` is when stored at ``now``: first seen then, its dates kept only
    when plausible by then, and hashed with them."""
    published = plausible(item.published, now)
    published = published.replace(microsecond=0) if published else None
    updated = plausible(item.updated, now)
    updated = updated.replace(microsecond=0) if updated else None
    digest_input = "\x00".join(
        [
            item.title,
            item.url or "",
            item.summary_html,
            item.author or "",
            published.isoformat() if published else "",
        ]
    )
    return Article(
        id=item.id,
        former_id=item.former_id,
        source=item.source,
        title=item.title,
        url=item.url,
        guid=item.guid,
        summary_html=item.summary_html,
        summary_text=item.summary_text,
        author=item.author,
        published=published,
        first_seen=now,
        updated=updated or published or now,
        content_hash=hashlib.sha256(digest_input.encode()).hexdigest()[:32],
        search_tokens=item.search_tokens,
    )


def _link_key(link: str) -> str:
    """A link as identity knows it: normalised when it is a web link, else as given."""
    return normalise_url(link) or one_line(link)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def article_id(source: str, guid: str | None, url: str | None, title: str) -> str:
    """A stable id, per source: from the source and the feed's GUID, else its link, else its
    normalised title. Per source, so that no source can claim another's article by
    publishing its GUID or link first (the same story from several sources is found by its
    content: the story grouping). A GUID that is just the link counts as the link, so
    parsers that copy one into the other agree on the id (:func:`normalise` drops such
    GUIDs before calling this)."""
    guid = guid.strip() if guid else None
    if guid and guid != url:
        key = f"guid\x00{source}\x00{guid}"
    elif url:
        key = f"url\x00{source}\x00{url}"
    else:
        key = f"title\x00{source}\x00{one_line(title).casefold()}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def former_article_id(source: str, guid: str | None, url: str | None, title: str) -> str | None:
    """The id :func:`article_id` gave before ids were per source, where it differs (URI
    GUIDs and links were global then); articles stored under it keep it (see
    :func:`own_ids`)."""
    guid = guid.strip() if guid else None
    if guid and guid != url and ":" in guid:
        key = f"guid\x00{guid}"
    elif not (guid and guid != url) and url:
        key = f"url\x00{url}"
    else:
        return None
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def own_ids(store: ArticlesStore, source: str, articles: dict[str, Article]) -> dict[str, Article]:
    """``articles`` (by id), each under the id it is stored with: an article this source
    stored under its former id keeps that id; another source's article is never this
    source's to take. Keyed as given."""
    formers = sorted({a.former_id for a in articles.values() if a.former_id})
    owned = store.owned_ids(source, formers) if formers else set()
    return {
        given: dataclasses.replace(article, id=article.former_id)
        if article.former_id is not None and article.former_id in owned
        else article
        for given, article in articles.items()
    }


def author_name(author: str) -> str | None:
    """An author's name without the e-mail address feeds often add: ``Ann (ann@x.org)``."""
    name = one_line(author)
    stripped = _AUTHOR_EMAIL.sub("", name).strip()
    if stripped:
        return stripped
    return name or None


def normalise_url(url: str) -> str | None:
    """A web link in one canonical form: lower-case scheme and host, no default port, no
    tracking tags; None for anything but an absolute http(s) URL (``javascript:``, ``data:``,
    ``file:``...: such an article links to its page on our site instead). The fragment
    stays: comment feeds tell their items apart by it alone. ValueError for a link that
    does not parse (``http://[x.org/a``, a port that is not a number)."""
    url = one_line(url)
    parts = urlsplit(url)
    if parts.scheme.lower() not in WEB_SCHEMES or not parts.netloc:
        return None
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address keeps its brackets
    port = parts.port if parts.port not in (80, 443) else None  # ValueError: not a port
    netloc = host + (f":{port}" if port else "")
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = parts.query
    if any(tag in query.lower() for tag in _TRACKING_PARAMS):
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, v) for k, v in pairs if not k.lower().startswith(_TRACKING_PARAMS)])
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", query, parts.fragment))
