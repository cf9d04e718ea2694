"""Grouping stored articles: regions and themes (with their evidence) and stories.

Runs after every pull on what is new or changed; ``regroup`` redoes everything after a
vocabulary change. Reading text is the costly part and is done once per article version;
regions and themes are re-scored from the stored evidence, for every article of a source
while the source is young (its IDF still moves a lot), for new articles after that.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from digest.common.models import Article
from digest.common.parallel import fork_call, fork_map, fork_start, forks
from digest.common.rules import Rules, fields_of
from digest.config import Settings
from digest.grouping import regions as region_scoring
from digest.grouping import themes as theme_scoring
from digest.grouping.places import Gazetteer
from digest.grouping.regions import PlaceCount, count_places_in, split_lead
from digest.grouping.stories import (
    NEIGHBOURS,
    RECENT,
    Frequencies,
    Linked,
    StoryInput,
    extended,
    link,
    stories_of,
    telling,
    terms,
    vectors,
)
from digest.grouping.stories import Story as Linked_story
from digest.grouping.themes import Taxonomy, ThemeMatch, taxonomy_for
from digest.grouping.weights import idf
from digest.store import (
    ArticlesStore,
    Evidence,
    Groups,
    Store,
    Story,
    StoryRow,
    StoryWords,
    Ungrouped,
)
from digest.store.holders import take_lease

if TYPE_CHECKING:
    from digest.store.contract import ArticlesAndGrouping

# Below this many articles a source's IDF changes with every pull: re-score all of them.
YOUNG_SOURCE = 200


@dataclass(frozen=True)
class GroupReport:
    classified: int
    rescored: int
    stories: int
    dropped: Mapping[str, int] = field(default_factory=dict)  # source -> articles its rules dropped


# A read as plain tuples, which cross between processes many times faster than named ones
# (pickle remakes each instance of a class through a Python call), with its evidence encoded.
# What is read of one article, as plain values (what crosses between processes).
Packed = tuple[list[tuple[Any, ...]], dict[str, tuple[Any, ...]], dict[str, int], str, str]


class _Read(NamedTuple):
    """All that is read from one article's text (and, when read on another core, the
    evidence as stores keep it, encoded there)."""

    places: list[PlaceCount]
    matches: dict[str, ThemeMatch]
    terms: dict[str, int]
    encoded: tuple[str, str] | None = None

    def packed(self) -> Packed:
        evidence = _evidence("", self)
        return (
            [tuple(p) for p in self.places],
            {s: tuple(m) for s, m in self.matches.items()},
            self.terms,
            evidence.places_json,
            evidence.theme_matches_json,
        )

    @classmethod
    def unpacked(cls, packed: Packed) -> _Read:
        places, matches, found_terms, places_json, matches_json = packed
        return cls(
            [PlaceCount._make(p) for p in places],
            {slug: ThemeMatch._make(m) for slug, m in matches.items()},
            found_terms,
            (places_json, matches_json),
        )


class Reader:
    """Reads articles' texts for grouping (places, theme matches, story words): the costly
    part, done on every core for a big batch. What was read ahead (while a pull stores the
    articles) is kept, by title and text, for :func:`group_pending` to find."""

    def __init__(self, settings: Settings):
        self.settings = settings
        # By a digest of (title, text): what was read ahead is kept until the grouping, the
        # texts themselves need not be.
        self._known: dict[bytes, _Read] = {}

    @cached_property
    def gazetteer(self) -> Gazetteer:
        return Gazetteer.default()

    @cached_property
    def taxonomy(self) -> Taxonomy:
        return taxonomy_for(self.settings)

    def read(self, text: tuple[str, str]) -> _Read:
        title, summary_text = text
        lead, body = split_lead(summary_text)
        return _Read(
            count_places_in(title, lead, body, self.gazetteer),
            self.taxonomy.match(title, summary_text),
            terms(title, lead),
        )

    def _read_packed(self, text: tuple[str, str]) -> Packed:
        return self.read(text).packed()

    def read_packed_all(self, texts: Sequence[tuple[str, str]]) -> list[Packed]:
        """Each (title, text) read, packed (on every core, for many)."""
        return fork_map(self._read_packed, texts)

    def read_all(self, texts: Sequence[tuple[str, str]]) -> list[_Read]:
        """Each (title, text) read, or found read ahead."""
        keys = list(map(_key, texts))
        missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in self._known}
        unread = list(missing.values())
        if forks(len(unread)):  # packed only to cross between processes
            found = map(_Read.unpacked, fork_map(self._read_packed, unread))
        else:
            found = map(self.read, unread)
        self._known.update(zip(missing, found, strict=True))
        reads = [self._known[key] for key in keys]
        self._known.clear()  # what was read ahead but is not pending changed nothing
        return reads

    @contextmanager
    def ahead(
        self,
        articles: Sequence[Article],
        store: ArticlesStore,
        *,
        read: Mapping[tuple[str, str], Packed] | None = None,
    ) -> Iterator[None]:
        """Read those of ``articles`` that are new or changed on the other cores while the
        block runs (storing them), and here too once it is done. Only for a big batch, when
        there are other cores (otherwise :meth:`read_all` reads them). ``read``: what was
        read of them elsewhere already (kept for those new or changed)."""
        texts: list[tuple[str, str]] = []
        if read or forks(len(articles)):
            stored = store.content_hashes([a.id for a in articles])
            texts = [(a.title, a.summary_text) for a in articles if stored.get(a.id) != a.content_hash]
        if read:
            self._known.update((_key(text), _Read.unpacked(read[text])) for text in texts if text in read)
            texts = [text for text in texts if text not in read]
        if not forks(len(texts)):
            yield
            return
        with fork_start(self._read_packed, texts) as started:
            yield
            self._known.update(zip(map(_key, texts), map(_Read.unpacked, started.result()), strict=True))


def _key(text: tuple[str, str]) -> bytes:
    """What a (title, text) read ahead is kept by."""
    title, body = text
    return hashlib.blake2b(
        f"{len(title)} {title}{body}".encode(errors="surrogatepass"), digest_size=16
    ).digest()


def group_pending(
    store: ArticlesAndGrouping,
    settings: Settings,
    *,
    everything: bool = False,
    reader: Reader | None = None,
    offload: Offload | None = None,
) -> GroupReport:
    """Classify new and changed articles, score them (and every article of a young source),
    and link them into stories: with the stored ones the story index finds for them, or,
    when there is no index yet (or ``everything``: a regroup), with every article of the
    story window, which indexes them all. ``reader``: the one that read some ahead;
    ``offload``: where linking may be done meanwhile (otherwise a forked child, if any)."""
    reader = reader or Reader(settings)
    pending = store.ungrouped()
    reads = reader.read_all([(row.title, row.summary_text) for row in pending])

    if not pending and not everything:
        return GroupReport(classified=0, rescored=0, stories=0)
    window = timedelta(seconds=settings.grouping.story_window)
    fresh = [_fresh_input(row, found) for row, found in zip(pending, reads, strict=True)]
    if everything:
        store.clear_story_index()
    # Read before the new evidence is stored, so no article is both fresh and stored.
    work: _Stories = (
        _Rebuild(store, fresh, window, everything)
        if everything or store.story_index_empty()
        else _Extend(store, fresh, window)
    )
    # Indexed before anything marks them classified: should this process die before their
    # stories are saved, later pulls still find them (and link to them), as they would
    # find any stored article. What the rules drop below leaves the index with it.
    store.index_stories(work.entries, {})

    # Linking is serial work: on another core while this one scores and stores groups.
    task = work.task()
    handed = offload.start_linking(task) if offload is not None else None
    with fork_call(partial(linked, task), worth=offload is None and forks(len(work.items))) as linking:
        rescored, dropped = _score(store, settings, reader.gazetteer, pending, reads)
        packed = offload.linked(handed) if offload is not None else None
        if packed is None:  # not done elsewhere: done here
            [packed] = linking.result()
        found = work.stories(_unpacked(packed, work.items))
        stories = [
            Story(s.id, s.label, members, s.absorbed)
            for s in found.stories
            if len(members := tuple(m for m in s.members if m not in dropped)) >= 2 or s.absorbed
        ]
        store.save_stories([i for i in found.clustered if i not in dropped], stories)
        store.index_stories([], {i: more for i, more in found.gained.items() if i not in dropped})
    by_source: dict[str, int] = {}
    for row in pending:
        if row.id in dropped:
            by_source[row.source] = by_source.get(row.source, 0) + 1
    return GroupReport(classified=len(pending), rescored=rescored, stories=len(stories), dropped=by_source)


Packed_links = tuple[list[str], list[list[int]], list[float]]


class LinkTask(NamedTuple):
    """What :func:`~digest.grouping.stories.link` is given: plain values, to do anywhere."""

    items: list[StoryInput]
    window: timedelta
    fresh: Mapping[str, list[str]] | None = None
    frequencies: Frequencies | None = None


def linked(task: LinkTask) -> Packed_links:
    """The links of ``task``, as plain values (ids, not items)."""
    return _packed(link(task.items, task.window, fresh=task.fresh, frequencies=task.frequencies))


class Offload(Protocol):
    """Another core that may link a grouping's articles while this one scores them (a pull's
    helper, whose process has threads and so may not fork)."""

    def start_linking(self, task: LinkTask) -> Hashable:
        """Hand ``task`` over; the key to ask for it by."""
        ...

    def linked(self, key: Hashable) -> Packed_links | None:
        """The links of the task handed over as ``key``; None if it was not done there (then
        whoever asks does it)."""
        ...


def _packed(found: Linked) -> Packed_links:
    """Linked as plain values (what crosses back from the linking process): ids, not items."""
    return [item.id for item in found.order], found.groups, found.centrality


def _unpacked(packed: Packed_links, items: Sequence[StoryInput]) -> Linked:
    order, groups, centrality = packed
    by_id = {item.id: item for item in items}
    return Linked([by_id[i] for i in order], groups, centrality)


@dataclass(frozen=True)
class _Found:
    stories: list[Linked_story]
    clustered: list[str]  # the articles whose stories ``stories`` replace
    gained: dict[str, float]  # centrality this batch's links add to indexed articles


class _Stories:
    """How a grouping links its fresh articles into stories: the items it links and what
    the index takes of them (read and worked out before it forks), the linking (pure: done
    on another core), then the stories."""

    items: list[StoryInput]
    window: timedelta
    entries: list[StoryWords]

    def task(self) -> LinkTask:
        raise NotImplementedError

    def stories(self, found: Linked) -> _Found:
        raise NotImplementedError


def _entries(items: Sequence[StoryInput], vecs: Sequence[Mapping[str, float]]) -> list[StoryWords]:
    """What the index keeps of each of ``items``, given its vector (for its telling words)."""
    return [
        StoryWords(
            item.id,
            item.published or item.first_seen,
            item.terms or {},
            tuple(sorted(item.entities)),
            tuple((word, vec[word]) for word in telling(vec)),
        )
        for item, vec in zip(items, vecs, strict=True)
    ]


class _Rebuild(_Stories):
    """Every article first seen in the story window of the earliest fresh one (every
    article, for a regroup) linked as one batch, and all of them indexed."""

    def __init__(
        self, store: ArticlesAndGrouping, fresh: list[StoryInput], window: timedelta, everything: bool
    ):
        earliest = min((item.first_seen for item in fresh), default=None)
        start = earliest - window if earliest and not everything else None
        rows = store.story_inputs(start, classified_only=bool(fresh))
        self.window = window
        self.items = [*fresh, *map(_stored_input, rows)]
        self.entries = _entries(self.items, vectors([item.terms or {} for item in self.items]))

    def task(self) -> LinkTask:
        return LinkTask(self.items, self.window)

    def stories(self, found: Linked) -> _Found:
        ids = [item.id for item in found.order]
        return _Found(stories_of(found), ids, dict(zip(ids, found.centrality, strict=True)))


class _Extend(_Stories):
    """The fresh articles linked with the stored ones the story index finds for them (for
    each, the ``NEIGHBOURS`` likeliest among those sharing its telling words, within the
    window): the stories those belong to grow or merge; no stored link is undone."""

    def __init__(self, store: ArticlesAndGrouping, fresh: list[StoryInput], window: timedelta) -> None:
        self.store, self.fresh, self.window = store, fresh, window
        self.fresh_ids = frozenset(item.id for item in fresh)
        words = Counter(word for item in fresh for word in item.terms or {})
        total, known = store.word_frequencies(words)
        frequencies = Frequencies(total + len(fresh), Counter(known) + words)
        self.entries = _entries(fresh, vectors([item.terms or {} for item in fresh], frequencies))
        times = [entry.at for entry in self.entries]
        indexed: dict[str, list[tuple[str, float, float]]] = {}
        for key in store.story_keys(
            {word for entry in self.entries for word, _ in entry.keys},
            min(times) - window,
            max(times) + window,
            per_key=RECENT,
        ):
            if key.article_id not in self.fresh_ids:
                indexed.setdefault(key.key, []).append((key.article_id, key.at.timestamp(), key.weight))
        span = window.total_seconds()
        # Each fresh article's likeliest stored ones: the cosine over the shared keys, as
        # the sweep estimates it (see grouping.stories), from the weights indexed.
        self.candidates: dict[str, list[str]] = {}
        for entry in self.entries:
            estimate: dict[str, float] = {}
            at = entry.at.timestamp()
            for word, weight in entry.keys:
                for article_id, then, theirs in indexed.get(word, ()):
                    if -span <= then - at <= span:
                        estimate[article_id] = estimate.get(article_id, 0.0) + weight * theirs
            self.candidates[entry.id] = heapq.nlargest(NEIGHBOURS, estimate, key=estimate.__getitem__)
        entries = store.story_entries({i for found in self.candidates.values() for i in found})
        more = {w for e in entries for w in e.words if w not in words}
        if more:
            frequencies = Frequencies(
                frequencies.documents, {**frequencies.words, **store.word_frequencies(more)[1]}
            )
        self.frequencies = frequencies
        self.story_of = {e.id: e.story for e in entries}
        self.kept = {e.id: e.centrality for e in entries}
        stored = [
            StoryInput(e.id, e.title, "", e.first_seen, e.published, frozenset(e.entities), e.words)
            for e in entries
        ]
        self.items = [*fresh, *stored]

    def task(self) -> LinkTask:
        return LinkTask(self.items, self.window, self.candidates, self.frequencies)

    def stories(self, found: Linked) -> _Found:
        touched = {
            story
            for group in found.groups
            for p in group
            if (story := self.story_of.get(found.order[p].id)) is not None
        }
        heads = self.store.story_heads(touched)
        stories, gained = extended(found, self.story_of, heads, self.kept)
        clustered = list(
            dict.fromkeys([*(item.id for item in self.fresh), *(m for s in stories for m in s.members)])
        )
        return _Found(stories, clustered, gained)


GROUPING_LEASE = "grouping"
GROUPING_SECONDS = 900.0
GROUPING_ROUNDS = 10  # a bound, should articles keep arriving (the next pull goes on)


def group_shared(
    store: Store,
    settings: Settings,
    holder: str,
    *,
    reader: Reader | None = None,
    offload: Offload | None = None,
) -> dict[str, int]:
    """:func:`group_pending` by one of the processes sharing the database at a time (the
    ``grouping`` lease), so no article is classified twice; how many this one classified.
    A process that finds the lease taken leaves its articles to the holder, which looks
    again after letting go, and groups what came in meanwhile. ``reader``: the one that
    read some of them ahead (for the first round); ``offload``: see :func:`group_pending`.
    Returns, by source, how many articles its rules dropped once grouped."""
    dropped: dict[str, int] = {}
    for _ in range(GROUPING_ROUNDS):
        if not take_lease(store, GROUPING_LEASE, holder, GROUPING_SECONDS):
            break
        try:
            grouped = group_pending(store, settings, reader=reader, offload=offload)
            for source, count in grouped.dropped.items():
                dropped[source] = dropped.get(source, 0) + count
        finally:
            store.release_lease(GROUPING_LEASE, holder)
        reader = None
        # Articles stored while this ran, by a process that found the lease taken.
        if not store.ungrouped():
            break
    return dropped


def _score(
    store: ArticlesAndGrouping,
    settings: Settings,
    gazetteer: Gazetteer,
    pending: Sequence[Ungrouped],
    reads: Sequence[_Read],
) -> tuple[int, set[str]]:
    """Store regions and themes of what was read (and of every article of a young source);
    how many were scored, and the ids the rules of their sources dropped once grouped
    (moved out of the articles: see digest.common.rules)."""
    by_source: dict[str, list[tuple[Ungrouped, _Read]]] = {}
    for row, found in zip(pending, reads, strict=True):
        by_source.setdefault(row.source, []).append((row, found))
    rescored = 0
    dropped: set[str] = set()
    scored: list[Groups] = []
    ignore = {source.name: _ignored_keys(source.ignore_places, gazetteer) for source in settings.sources}
    rules = {source.name: source.rules for source in settings.sources if source.rules.needs_groups}
    homes = {source.name: source.regions for source in settings.sources if source.regions}
    for source, new in by_source.items():
        total, place_df, theme_df = store.source_frequencies(source)  # of those classified before
        total += len(new)
        for _, found in new:
            for key in {place.key for place in found.places}:
                place_df[key] = place_df.get(key, 0) + 1
            for slug in found.matches:
                theme_df[slug] = theme_df.get(slug, 0) + 1
        weights = _Weights(total, place_df, theme_df, ignore.get(source, set()))
        # The new evidence is stored with its scores (one write per article); a young
        # source's IDF still moves a lot with every pull, so all its articles are re-scored.
        groups = [
            weights.groups(row.id, found.places, found.matches, _evidence(row.id, found))
            for row, found in new
        ]
        if source in rules:
            drops = _dropped_once_grouped(rules[source], [row for row, _ in new], groups)
            if drops:
                store.drop_articles(drops, now=store.now())
                dropped.update(article_id for article_id, _ in drops)
                groups = [g for g in groups if g.id not in dropped]
        if total < YOUNG_SOURCE:
            groups += [weights.groups(e.id, *_parsed(e)) for e in store.evidence(source)]
        if source in homes:  # what names no place of its own is about the source's regions
            groups = [g if g.regions else replace(g, regions=homes[source]) for g in groups]
        scored += [g for g in groups if g.id not in dropped]
        rescored += len(groups)
    # One write for every source: a pull of a thousand small feeds is not a thousand commits.
    # (Each source's weights were read before any was written: a source's own counts only.)
    store.set_groups(scored)
    return rescored, dropped


def _dropped_once_grouped(
    rules: Rules, rows: Sequence[Ungrouped], groups: Sequence[Groups]
) -> list[tuple[str, str]]:
    """(id, rule) of the new articles the rules drop now that their regions and themes are known."""
    drops = []
    for row, group in zip(rows, groups, strict=True):
        fields = fields_of(row.title, row.summary_text, row.author, row.url, group.regions, group.themes)
        verdict = rules.verdict(fields, grouped=True)
        if verdict is not None:
            drops.append((row.id, verdict))
    return drops


def regroup(store: ArticlesAndGrouping, settings: Settings) -> GroupReport:
    """Classify every article again and re-cluster every story (after a vocabulary change)."""
    store.mark_ungrouped()
    return group_pending(store, settings, everything=True)


class _Weights:
    """How telling each place and theme is within one source (IDF), and its ignored places."""

    def __init__(self, total: int, place_df: dict[str, int], theme_df: dict[str, int], ignore: set[str]):
        self.places = {key: idf(df, total) for key, df in place_df.items()}
        self.themes = {slug: idf(df, total) for slug, df in theme_df.items()}
        self.ignore = ignore

    def groups(
        self,
        article_id: str,
        places: Sequence[PlaceCount],
        matches: Mapping[str, ThemeMatch],
        evidence: Evidence | None = None,
    ) -> Groups:
        regions = region_scoring.assign_regions(
            region_scoring.score_regions(places, self.places, self.ignore)
        )
        themes = theme_scoring.assign_themes(matches, self.themes)
        return Groups(article_id, tuple(regions), tuple(themes), evidence)


def _evidence(article_id: str, found: _Read) -> Evidence:
    """The evidence of a read, as :meth:`Evidence.of` encodes it."""
    if found.encoded:
        return Evidence(article_id, *found.encoded)
    return Evidence(article_id, _places_json(found.places), _matches_json(found.matches))


# JSON of what recurs (a place's names, a slug, a phrase), made once: the evidence of every
# article is encoded as it is read, and this is most of that work.
_PLACE_HEADS: dict[tuple[str, str, str, str], str] = {}
_QUOTED: dict[str, str] = {}


def _places_json(places: Sequence[PlaceCount]) -> str:
    """The places as JSON: a list of objects with key, name, region, kind, and counts in
    title, lead and body (what ``json.dumps(..., ensure_ascii=False)`` writes, five times
    as fast)."""
    parts = []
    for p in places:
        head = _PLACE_HEADS.get(p[:4])
        if head is None:
            named = {"key": p.key, "name": p.name, "region": p.region, "kind": p.kind}
            head = _PLACE_HEADS[p[:4]] = json.dumps(named, ensure_ascii=False)[:-1]
        parts.append(f'{head}, "title": {p.title:d}, "lead": {p.lead:d}, "body": {p.body:d}}}')
    return f"[{', '.join(parts)}]"


def _matches_json(matches: Mapping[str, ThemeMatch]) -> str:
    """The theme matches as JSON: slug to score and phrases (what ``json.dumps`` writes,
    many times as fast)."""
    parts = []
    for slug, match in matches.items():
        phrases = ", ".join(_quoted(phrase) for phrase in match.phrases)
        parts.append(f'{_quoted(slug)}: {{"score": {float(match.score)!r}, "phrases": [{phrases}]}}')
    return f"{{{', '.join(parts)}}}"


def _quoted(text: str) -> str:
    quoted = _QUOTED.get(text)
    if quoted is None:
        quoted = _QUOTED[text] = json.dumps(text)
    return quoted


def _parsed(evidence: Evidence) -> tuple[list[PlaceCount], dict[str, ThemeMatch]]:
    """Stored evidence as classification found it."""
    matches = {
        slug: ThemeMatch(float(m["score"]), tuple(m["phrases"])) for slug, m in evidence.theme_matches.items()
    }
    return [_place(p) for p in evidence.places], matches


def _ignored_keys(names: Iterable[str], gazetteer: Gazetteer) -> set[str]:
    return {gazetteer.forms[name].key for name in names if name in gazetteer.forms}


def _place(data: Mapping[str, Any]) -> PlaceCount:
    return PlaceCount(
        key=str(data["key"]),
        name=str(data["name"]),
        region=str(data["region"]),
        kind=str(data["kind"]),
        title=int(data["title"]),
        lead=int(data["lead"]),
        body=int(data["body"]),
    )


def _fresh_input(row: Ungrouped, found: _Read) -> StoryInput:
    return StoryInput(
        row.id, row.title, "", row.first_seen, row.published, _entities(found.places), found.terms
    )


def _stored_input(row: StoryRow) -> StoryInput:
    places = [_place(p) for p in row.places]
    lead, _ = split_lead(row.summary_text)
    return StoryInput(
        row.id, row.title, lead, row.first_seen, row.published, _entities(places), terms(row.title, lead)
    )


def _entities(places: Iterable[PlaceCount]) -> frozenset[str]:
    """The specific places and people that tie two fairly alike articles into one story."""
    return frozenset(p.key for p in places if p.kind in ("country", "person") and (p.title or p.lead))
