"""Sources an operator adds at run time (``digest sources add``, the API, an OPML import).

They are kept in the store, as the ``[[sources]]`` table they would be in the config file
(the options given), and read by the same reader as the file's, so they take the same
checks. :func:`current` merges them with the configuration's into the settings a pull or
the service works on: every process reads the store again before it pulls, so what one
adds, pauses or removes, all see. Only http(s) URLs may be added so (a local file or
folder is the config file's business: nothing reachable from the API reads the disk), and
a source of the config file is never changed here: the error says where to change it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from digest.common import redact
from digest.common.errors import ConfigError, ParseError, SourceError
from digest.config import Settings, SourceSettings
from digest.config.load import read_source
from digest.intake.fetch import Fetcher
from digest.publish import opml
from digest.store import AddedSource, SourceSummary
from digest.store.contract import SourcesStore

# What an operator may set on a source at run time (the rest is the config file's).
ADDED_KEYS = ("name", "url", "kind", "every", "regions", "label")
ADDED_KINDS = ("auto", "feed", "html", "text")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
PROBE_TITLES = 5
MIN_EVERY = 60.0  # a source added at run time is pulled at most once a minute
MAX_ADDED = 10_000  # sources added at run time, at most (each is work for every worker)


@dataclass(frozen=True)
class Probe:
    """What fetching a URL once found: where its articles come from (a page's advertised
    feed, when it names one), how many, and the first titles."""

    url: str
    items: int
    titles: tuple[str, ...]
    followed: bool = False  # the page advertised a feed, and that is the source now


def settings_of(options: Mapping[str, Any], where: str) -> SourceSettings:
    """The source ``options`` (an added source's ``[[sources]]`` table) describe, checked as
    the file's are, and held to what may be added at run time. Raises ConfigError."""
    unknown = sorted(set(options) - set(ADDED_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: {', '.join(unknown)}: set only in the config file (here: {', '.join(ADDED_KEYS)})"
        )
    if "kind" in options and options["kind"] not in ADDED_KINDS:
        raise ConfigError(f"{where}.kind: {options['kind']!r} is not one of {', '.join(ADDED_KINDS)}")
    source = read_source(dict(options), where, where, Path("/"), [])
    if source.every is not None and source.every < MIN_EVERY:
        raise ConfigError(f"{where}.every: at least {MIN_EVERY:.0f} s for a source added at run time")
    if urlsplit(source.url).scheme.lower() not in ("http", "https"):
        raise ConfigError(
            f"{where}.url: only http(s) URLs are added at run time"
            " (a local file or folder goes in the config file)"
        )
    return replace(source, added=True)


def added_settings(added: AddedSource) -> SourceSettings:
    """An added source as the pipeline takes it (paused: not enabled)."""
    source = settings_of(added.options, f"source {added.name!r} (added at run time)")
    return replace(source, enabled=added.paused is None)


def current(settings: Settings, store: SourcesStore) -> Settings:
    """``settings`` with the sources added at run time after the config file's (one the
    file names too is the file's). One unreadable added source (a hand-edited row) is left
    out with a warning, not the end of every pull."""
    configured = {s.name for s in settings.sources}
    added: list[SourceSettings] = []
    warnings: list[str] = []
    for stored in store.added_sources():
        if stored.name in configured:
            continue
        try:
            added.append(added_settings(stored))
        except ConfigError as exc:
            warnings.append(f"{exc}; left out")
    if not added and not warnings:
        return settings
    return replace(settings, sources=(*settings.sources, *added), warnings=(*settings.warnings, *warnings))


def options_for(
    url: str,
    *,
    name: str,
    kind: str = "auto",
    every: str | float | None = None,
    regions: Iterable[str] = (),
    label: str | None = None,
) -> dict[str, Any]:
    """The options of a source to add, as a ``[[sources]]`` table would give them."""
    options: dict[str, Any] = {"name": name, "url": url.strip(), "kind": kind}
    if every is not None:
        options["every"] = every
    if regions:
        options["regions"] = list(regions)
    if label:
        options["label"] = label
    return options


class Names:
    """Names given so far (compared without case), to make new ones unlike them: one
    lookup a try, the next number of each base remembered (a file of a thousand feeds of
    one title costs a thousand tries, not a million)."""

    def __init__(self, taken: Iterable[str]) -> None:
        self.taken = {t.lower() for t in taken}
        self.next: dict[str, int] = {}

    def new(self, title: str | None, url: str) -> str:
        """A name from a title (else the URL's host) in the characters names allow, not
        given yet (a number added when it is); it is given now."""
        base = _NAME_CHARS.sub("-", (title or "").strip()).strip("-._")[:48]
        if not base:
            base = _NAME_CHARS.sub("-", urlsplit(url).hostname or "source").strip("-._")[:48] or "source"
        name = base
        while name.lower() in self.taken:
            n = self.next.get(base.lower(), 2)
            self.next[base.lower()] = n + 1
            name = f"{base}-{n}"
        self.taken.add(name.lower())
        return name


def probe(settings: Settings, source: SourceSettings, fetcher: Fetcher) -> Probe:
    """Fetch ``source`` once, under the fetch policy, and parse what came: its items, or
    those of the feed a page advertises. Raises FetchError, ParseError, or SourceError
    when nothing readable came."""
    from digest.intake.pull import parse_document  # the pipeline, only when a URL is checked

    policy = fetcher.policy(source.url, added=True)
    result = fetcher.fetch(source.url, policy=policy)
    titles: list[str] = []
    feeds: list[str] = []
    count = 0
    for document in result.documents:
        try:
            parsed = parse_document(document, source, settings)
        except ParseError as exc:
            raise SourceError(f"{redact.url(source.url)}: {exc}") from None
        count += len(parsed.items)
        titles += [item.title for item in parsed.items[:PROBE_TITLES]]
        feeds += parsed.feed_links
    if not count and feeds:
        feed = feeds[0]
        followed = fetcher.fetch(feed, policy=policy)
        for document in followed.documents:
            parsed = parse_document(document, source, settings, kind="feed")
            count += len(parsed.items)
            titles += [item.title for item in parsed.items[:PROBE_TITLES]]
        if count:
            return Probe(feed, count, tuple(titles[:PROBE_TITLES]), followed=True)
    if not count:
        raise SourceError(
            f"{redact.url(source.url)}: no articles found there (not a feed, nor a page digest reads)"
        )
    return Probe(result.permanent_url or source.url, count, tuple(titles[:PROBE_TITLES]))


def fetched_from(summaries: Sequence[SourceSummary]) -> dict[str, str]:
    """Each URL a source (not removed) is fetched from, as :func:`_same_url` writes it → the
    source's name: made once, then one lookup a URL (an import checks thousands)."""
    found: dict[str, str] = {}
    for summary in summaries:
        if summary.removed is None:
            for url in (summary.url, summary.fetch_url):
                found.setdefault(_same_url(url), summary.name)
    return found


def _same_url(url: str) -> str:
    """A URL as two ways of writing it compare: scheme and host lower-cased, no fragment,
    no trailing slash."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}?{parts.query}"


def add_source(
    settings: Settings,
    store: SourcesStore,
    url: str,
    *,
    name: str | None = None,
    kind: str = "auto",
    every: str | float | None = None,
    regions: Iterable[str] = (),
    label: str | None = None,
    fetcher: Fetcher | None = None,
) -> tuple[SourceSummary, Probe]:
    """Add a source at run time, once fetching it found articles (a page that advertises
    a feed becomes that feed). Raises ConfigError (bad options), SourceError (a name or
    URL already taken, nothing readable), FetchError, ParseError."""
    summaries = store.source_summaries()
    taken = {s.name for s in summaries if s.removed is None} | {s.name for s in settings.sources}
    chosen = name or Names(taken).new(None, url)
    _unclaimed(settings, summaries, chosen)
    _room(summaries, 1)
    options = options_for(url, name=chosen, kind=kind, every=every, regions=regions, label=label)
    source = settings_of(options, f"source {chosen!r}")
    known = fetched_from(summaries)
    same = known.get(_same_url(source.url))
    if same is not None:
        raise SourceError(f"{redact.url(source.url)}: already a source, {same!r}")
    own = fetcher is None
    fetcher = fetcher or Fetcher(settings.fetch)
    try:
        found = probe(settings, source, fetcher)
    finally:
        if own:
            fetcher.close()
    if found.followed:
        same = known.get(_same_url(found.url))
        if same is not None:
            raise SourceError(f"{redact.url(found.url)}: already a source, {same!r}")
        options = {**options, "url": found.url, "kind": "feed" if kind == "auto" else kind}
    store.add_sources([AddedSource(chosen, options["url"], options["kind"], options)])
    return _summary(store, chosen), found


def _room(summaries: Sequence[SourceSummary], more: int) -> None:
    added = sum(1 for s in summaries if s.origin == "store" and s.removed is None)
    if added + more > MAX_ADDED:
        raise SourceError(
            f"at most {MAX_ADDED:,} sources are added at run time ({added:,} are); remove some first"
        )


def _unclaimed(settings: Settings, summaries: Sequence[SourceSummary], name: str) -> None:
    if settings_named(settings, name) is not None:
        raise SourceError(
            f"a source called {name!r} is in the config file ({settings.origin}); choose another name"
        )
    if any(s.name == name and s.removed is None for s in summaries):
        raise SourceError(f"a source called {name!r} exists already; choose another name")


def change_source(
    settings: Settings,
    store: SourcesStore,
    name: str,
    *,
    changes: Mapping[str, Any] | None = None,
    paused: bool | None = None,
) -> SourceSummary:
    """Change an added source: options (``every``, ``regions``, ``label``, ``kind``,
    ``url``; None removes one) and whether it is paused. Raises SourceError for a source
    of the config file (where to change it) or an unknown one; ConfigError for bad options."""
    summary = _added(settings, store, name)
    options: dict[str, Any] | None = None
    if changes:
        options = dict(summary.options)
        for key, value in changes.items():
            if key == "name":
                raise SourceError(f"source {name!r}: a name is changed by `digest sources rename`")
            if value is None:
                options.pop(key, None)
            else:
                options[key] = value
        source = settings_of(options, f"source {name!r}")
        options["url"] = source.url
    store.change_source(name, options=options, paused=paused)
    return _summary(store, name)


def remove_source(settings: Settings, store: SourcesStore, name: str) -> None:
    """Remove an added source (its articles stay). Raises SourceError as :func:`change_source`."""
    _added(settings, store, name)
    store.remove_source(name)


def _added(settings: Settings, store: SourcesStore, name: str) -> AddedSource:
    if settings_named(settings, name) is not None:
        raise SourceError(f"source {name!r} is from the config file ({settings.origin}); change it there")
    for stored in store.added_sources():
        if stored.name == name:
            return stored
    if any(s.name == name and s.removed is None for s in store.source_summaries()):
        raise SourceError(f"source {name!r} is from the config file ({settings.origin}); change it there")
    raise SourceError(f"no source named {name!r}")


def _summary(store: SourcesStore, name: str) -> SourceSummary:
    return next(s for s in store.source_summaries() if s.name == name)


def listed(settings: Settings, store: SourcesStore) -> list[SourceSummary]:
    """Every source not removed: the config file's first (in its order; one not pulled yet
    with an empty state), then those added at run time by name."""
    summaries = {s.name: s for s in store.source_summaries()}
    ordered = [
        summaries.get(s.name)
        or SourceSummary(s.name, 0, None, None, None, 0, None, None, url=s.url, kind=s.kind)
        for s in settings.sources
        if not s.added
    ]
    configured = {s.name for s in ordered}
    ordered += [
        s
        for s in summaries.values()
        if s.name not in configured and s.origin == "store" and s.removed is None
    ]
    return ordered


@dataclass(frozen=True)
class Imported:
    """What an OPML import did: the sources added, and a line for each feed it skipped."""

    added: tuple[str, ...]
    skipped: tuple[str, ...]


def import_opml(settings: Settings, store: SourcesStore, data: bytes, where: str = "OPML") -> Imported:
    """Add every feed of an OPML file not already a source, in one transaction (a bad file
    adds nothing: SourceError naming the line). Feeds are not fetched first: the first
    pull says which fail. Duplicates, of a source or of a feed earlier in the file, are
    skipped, a line each."""
    outlines = opml.read(data, where)
    summaries = store.source_summaries()
    names = Names([s.name for s in summaries if s.removed is None] + [s.name for s in settings.sources])
    known = fetched_from(summaries)
    seen: dict[str, int] = {}
    adding: list[AddedSource] = []
    skipped: list[str] = []
    for outline in outlines:
        key = _same_url(outline.url)
        same = known.get(key)
        if same is not None:
            skipped.append(
                f"{where}: line {outline.line}: {redact.url(outline.url)}: already a source, {same!r}"
            )
            continue
        if key in seen:
            skipped.append(
                f"{where}: line {outline.line}: {redact.url(outline.url)}: listed already on line {seen[key]}"
            )
            continue
        seen[key] = outline.line
        name = names.new(outline.title, outline.url)
        options = options_for(outline.url, name=name, label=outline.label)
        try:
            source = settings_of(options, f"{where}: line {outline.line}")
        except ConfigError as exc:
            raise SourceError(str(exc)) from None
        adding.append(AddedSource(name, source.url, source.kind, options))
    _room(summaries, len(adding))
    store.add_sources(adding)
    return Imported(tuple(a.name for a in adding), tuple(skipped))


def export_opml(settings: Settings, store: SourcesStore, *, redacted: bool = False) -> bytes:
    """Every source fetched over http(s) and not removed, as OPML 2.0 (its label as the
    outline it sits in); sources read from local files are the machine's own, left out.
    ``redacted``: URLs without credentials or query (what an API token may see)."""
    listing = [
        opml.Listed(
            s.name,
            redact.url(s.fetch_url or s.url) if redacted else s.fetch_url or s.url,
            s.options.get("label") if s.origin == "store" else _label(settings, s.name),
        )
        for s in listed(settings, store)
        if urlsplit(s.fetch_url or s.url).scheme.lower() in ("http", "https")
    ]
    return opml.write(f"{settings.site.title} sources", listing)


def _label(settings: Settings, name: str) -> str | None:
    found = settings_named(settings, name)
    return found.label if found else None


def settings_named(settings: Settings, name: str) -> SourceSettings | None:
    """The config file's source called ``name``, if it names one."""
    return next((s for s in settings.sources if s.name == name and not s.added), None)
