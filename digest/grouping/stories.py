"""Stories: articles about the same event, across sources and snapshots.

Two articles are linked when they are close in time and either very alike (TF-IDF cosine
over title and lead) or fairly alike and naming the same specific place or person (one
that is not in most articles of the batch, as China is on the sample site). A story is a
connected group of links; its label is its most central title. Articles on different events
between the same countries stay apart: weeks apart in time, or alike only in the common words.

Near-linear, whatever the batch: no article is compared with every other. Articles are
swept in time order (dated ones by publication, then those without a date against all by
when they were first seen, as closeness in time is judged). Each article's few most telling
words are keys in an index; an article is compared only with the ``NEIGHBOURS`` earlier
articles within the window, among the ``RECENT`` latest holding each key, whose cosine over
the shared keys is highest; an exact copy within the window ends the search at once. A pull
that extends stored stories sweeps its fresh articles alone, each also compared with the
stored ones the story index found likeliest for it (:func:`link` with ``fresh``). Memory
is one small vector per article. Pure Python (a dictionary per article): nothing heavy to
import.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Protocol

# Cosine similarity thresholds: linked alone, or linked with a shared specific entity.
ALIKE = 0.5
RELATED = 0.2
# An entity in more than this share of the batch is too common to tie two articles.
COMMON_ENTITY = 0.3
NEIGHBOURS = 12  # the most promising earlier articles each article is compared with
KEYS = 10  # an article's most telling words, indexed
RECENT = 64  # of the earlier articles holding a key, the latest this many are candidates
_WORDS = re.compile(r"(?u)\b[^\W\d_][\w'’-]+\b")  # words of two or more characters, from a letter
DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class StoryInput:
    """What clustering needs of an article."""

    id: str
    title: str
    lead: str
    first_seen: datetime
    published: datetime | None = None
    entities: frozenset[str] = frozenset()
    terms: Mapping[str, int] | None = None  # terms(title, lead), when worked out already


@dataclass(frozen=True)
class Story:
    """A story's id, label and members; with ``absorbed``, stored stories whose every member
    joins it too (see :func:`extended`)."""

    id: str
    label: str
    members: tuple[str, ...]
    absorbed: tuple[str, ...] = ()


@cache
def stop_words() -> frozenset[str]:
    lines = (DATA / "stopwords.txt").read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def terms(title: str, lead: str) -> dict[str, int]:
    """The words an article is compared by, with their counts: the title (twice, as it says
    the most) and the lead, stop words left out."""
    stop = stop_words()
    found: dict[str, int] = {}
    for word in _WORDS.findall(f"{title}. {title}. {lead}".lower()):
        if word not in stop:
            found[word] = found.get(word, 0) + 1
    return found


@dataclass(frozen=True)
class Frequencies:
    """In how many documents each word is found, of how many: what inverse document
    frequency is made of. Clustering a batch alone counts the batch; a pull that extends
    stored stories counts every article indexed so far (see :func:`link`)."""

    documents: int
    words: Mapping[str, int]

    @classmethod
    def of(cls, counts: Sequence[Mapping[str, int]]) -> Frequencies:
        df: Counter[str] = Counter()
        for found in counts:
            df.update(found.keys())
        return cls(len(counts), df)


def vectors(
    counts: Sequence[Mapping[str, int]], frequencies: Frequencies | None = None
) -> list[dict[str, float]]:
    """TF-IDF vectors of :func:`terms`, L2-normalised: sublinear term frequency (1 + log tf)
    and smoothed inverse document frequency (log((1 + n) / (1 + df)) + 1), the frequencies
    those of ``counts`` unless given."""
    known = frequencies or Frequencies.of(counts)
    n, df = known.documents, known.words
    idf: dict[str, float] = {}
    for found in counts:
        for word in found:
            if word not in idf:
                idf[word] = math.log((1 + n) / (1 + df.get(word, 1))) + 1.0
    out = []
    for found in counts:
        weights = {
            word: (_SUBLINEAR[tf] if tf < len(_SUBLINEAR) else 1.0 + math.log(tf)) * idf[word]
            for word, tf in found.items()
        }
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        out.append({word: w / norm for word, w in weights.items()})
    return out


# 1 + log(tf) of the usual counts, worked out once.
_SUBLINEAR = [0.0, *(1.0 + math.log(tf) for tf in range(1, 64))]


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    return sum(a[word] * b[word] for word in a.keys() & b.keys())


@dataclass(frozen=True)
class Linked:
    """What linking a batch found: its items in time order, the connected groups of two
    or more (positions in ``order``), each item's centrality (the sum of its links'
    similarities)."""

    order: list[StoryInput]
    groups: list[list[int]]
    centrality: list[float]


def cluster(items: Sequence[StoryInput], window: timedelta) -> list[Story]:
    """Stories (groups of two or more) among ``items``; the id is the earliest member's."""
    return stories_of(link(items, window))


def stories_of(found: Linked) -> list[Story]:
    """The stories of a batch linked alone: each group, its id the earliest member's, its
    label the most central member's title (the earliest of equals)."""
    stories = []
    for members in found.groups:
        central = max(members, key=lambda m: (found.centrality[m], -m))
        stories.append(
            Story(
                id=found.order[members[0]].id,
                label=found.order[central].title,
                members=tuple(found.order[m].id for m in members),
            )
        )
    return stories


def link(
    items: Sequence[StoryInput],
    window: timedelta,
    *,
    fresh: Mapping[str, Collection[str]] | None = None,
    frequencies: Frequencies | None = None,
) -> Linked:
    """Link ``items`` that tell one event (see the module's docstring). With ``fresh`` (each
    fresh item's id, with the ids of the stored items the story index found likeliest for
    it), only links with at least one fresh item are made, the others being stored articles
    whose stories are known: the fresh are linked with each other as a batch alone is, and
    each with its stored candidates within the window (with the latest of them alone when
    some are exact copies of it). ``frequencies``: the words' (the batch's own unless given)."""
    order = sorted(items, key=lambda item: (item.first_seen, item.id))
    vecs = vectors(
        [item.terms if item.terms is not None else terms(item.title, item.lead) for item in order],
        frequencies,
    )
    if len(order) < 2:
        return Linked(order, [], [0.0] * len(order))
    keys = [telling(vec) for vec in vecs]
    counts: Counter[str] = Counter()
    for item in order:
        counts.update(item.entities)
    common = {e for e, n in counts.items() if n > max(2, COMMON_ENTITY * len(order))}
    entities = [item.entities - common for item in order]
    links = _Links(len(order))

    def consider(i: int, j: int, sim: float) -> None:
        if sim >= ALIKE or (sim >= RELATED and entities[i] & entities[j]):
            links.add(i, j, sim)

    span = window.total_seconds()
    # Dated pairs are close by publication; a pair with an undated article by first seen.
    published = [item.published.timestamp() if item.published else None for item in order]
    seen = [item.first_seen.timestamp() for item in order]
    swept = [k for k, item in enumerate(order) if fresh is None or item.id in fresh]
    dated = sorted((k for k in swept if published[k] is not None), key=lambda k: published[k] or 0.0)
    index = _Index(span)
    for i in dated:
        index.search_and_add(i, published[i] or 0.0, vecs, keys, consider)
    if len(dated) < len(swept):
        everyone, undated = _Index(span), _Index(span)
        for i in swept:  # already in first-seen order
            if published[i] is None:
                everyone.search_and_add(i, seen[i], vecs, keys, consider)
                undated.search_and_add(i, seen[i], vecs, keys, None)
            else:
                undated.search_and_add(i, seen[i], vecs, keys, consider, add=False)
                everyone.search_and_add(i, seen[i], vecs, keys, None)
    if fresh is not None:
        position = {item.id: k for k, item in enumerate(order)}
        for i in swept:
            near = []
            for j in (position[c] for c in fresh[order[i].id] if c in position):
                mine, theirs = published[i], published[j]
                if mine is None or theirs is None:
                    mine, theirs = seen[i], seen[j]
                if abs(mine - theirs) <= span:
                    near.append((theirs, j))
            copies = [(when, j) for when, j in near if vecs[j] == vecs[i]]
            if copies:  # as in the index: the latest exact copy is the same story, and enough
                consider(max(copies)[1], i, 1.0)
                continue
            for _, j in near:
                consider(j, i, _cosine(vecs[i], vecs[j]))
    return Linked(order, links.groups(), links.centrality)


def telling(vec: Mapping[str, float]) -> list[str]:
    """A vector's most telling words (``KEYS`` of them), by weight: what it is indexed by."""
    return sorted(vec, key=vec.__getitem__, reverse=True)[:KEYS]


class Member(Protocol):
    """A stored article of a story: what choosing the story's id and label needs."""

    @property
    def id(self) -> str: ...
    @property
    def first_seen(self) -> datetime: ...
    @property
    def title(self) -> str: ...
    @property
    def centrality(self) -> float: ...


class Head(Protocol):
    """A stored story as extending it needs it: its earliest member (first seen, then id)
    and its most central (the earliest of equals)."""

    @property
    def earliest(self) -> Member: ...
    @property
    def central(self) -> Member: ...


@dataclass(frozen=True)
class _Item:
    id: str
    first_seen: datetime
    title: str
    centrality: float


def extended(
    found: Linked,
    story_of: Mapping[str, str | None],
    heads: Mapping[str, Head],
    kept: Mapping[str, float],
) -> tuple[list[Story], dict[str, float]]:
    """The stories a pull's links make of stored ones: each group of linked items with a
    fresh one (``found`` linked with ``fresh``) joins the stories its stored items belong
    to (``story_of``: their story; ``heads``: each one's earliest and most central member),
    absorbing them (merging them when it links several). The id is the earliest member's,
    the label the most central member's title (centrality kept across pulls: ``kept``, of
    the stored items linked). Only the linked items are named as members: a stored story's
    others follow it, so the cost is the links', whatever size the stories have grown to.
    Also returned: each linked item's centrality from this batch, to add to what was kept."""
    gained = {found.order[p].id: found.centrality[p] for group in found.groups for p in group}
    reached = [
        {story for p in group if (story := story_of.get(found.order[p].id)) is not None}
        for group in found.groups
    ]
    # Groups that reach one stored story are one story: numbered after the groups, the
    # stories are joined with each group that reaches them.
    numbers = {story: len(found.groups) + k for k, story in enumerate(sorted(set().union(*reached)))}
    joints = _Joined(len(found.groups) + len(numbers))
    for n, stories_reached in enumerate(reached):
        for story in stories_reached:
            joints.join(n, numbers[story])
    info: dict[str, Member] = {}
    for head in heads.values():
        info[head.earliest.id], info[head.central.id] = head.earliest, head.central
    for item in found.order:
        info[item.id] = _Item(item.id, item.first_seen, item.title, kept.get(item.id, 0.0))
    joined: dict[int, set[str]] = {}
    stories_of_joint: dict[int, set[str]] = {}
    for n, group in enumerate(found.groups):
        top = joints.root(n)
        joined.setdefault(top, set()).update(found.order[p].id for p in group)
        stories_of_joint.setdefault(top, set()).update(reached[n])
    stories = []
    for top, ids in joined.items():
        absorbed = sorted(stories_of_joint[top])
        # The earliest and the most central are among the linked items and the heads of
        # the stories absorbed: the others' centrality gained nothing in this pull.
        chosen = set(ids)
        for story in absorbed:
            if (found_head := heads.get(story)) is not None:
                chosen.update((found_head.earliest.id, found_head.central.id))
        ranked = sorted((info[i] for i in chosen), key=lambda m: (m.first_seen, m.id))
        central = max(
            range(len(ranked)), key=lambda k: (ranked[k].centrality + gained.get(ranked[k].id, 0.0), -k)
        )
        members = tuple(m.id for m in ranked if m.id in ids)
        stories.append(Story(ranked[0].id, ranked[central].title, members, tuple(absorbed)))
    return stories, gained


class _Index:
    """Earlier articles by key, in time order, for finding the few worth comparing."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.by_key: dict[str, list[tuple[float, int, float]]] = {}
        # The latest article with each set of keys: a copy has the same keys (cheap to hash,
        # unlike the whole vector), and then the same vector.
        self.latest: dict[tuple[str, ...], tuple[float, int]] = {}

    def search_and_add(
        self,
        i: int,
        when: float,
        vecs: Sequence[dict[str, float]],
        keys: Sequence[list[str]],
        consider: Callable[[int, int, float], None] | None,
        *,
        add: bool = True,
    ) -> None:
        """Offer ``consider`` article i's likely links among the indexed articles (none when
        it is None), then index i (unless ``add`` is false). Articles come in time order."""
        vec = vecs[i]
        if not vec:
            return
        signature = tuple(keys[i])
        if consider is not None:
            copy = self.latest.get(signature)
            if copy is not None and when - copy[0] <= self.window and vecs[copy[1]] == vec:
                consider(copy[1], i, 1.0)  # an exact copy is the same story: no search
            else:
                for j in self._nearest(vec, keys[i], when):
                    consider(j, i, _cosine(vec, vecs[j]))
        if add:
            self.latest[signature] = (when, i)
            for key in keys[i]:
                self.by_key.setdefault(key, []).append((when, i, vec[key]))

    def _nearest(self, vec: dict[str, float], keys: list[str], when: float) -> list[int]:
        # The cosine over the shared keys alone: a cheap, close estimate of the whole.
        estimate: dict[int, float] = {}
        for key in keys:
            entries = self.by_key.get(key)
            if not entries:
                continue
            weight = vec[key]
            for then, j, theirs in entries[: -RECENT - 1 : -1]:
                if when - then > self.window:
                    break
                estimate[j] = estimate.get(j, 0.0) + weight * theirs
        if len(estimate) <= NEIGHBOURS:
            return list(estimate)
        return heapq.nlargest(NEIGHBOURS, estimate, key=estimate.__getitem__)


class _Joined:
    """Connected groups of numbered things (union-find)."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def root(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(self, i: int, j: int) -> None:
        self.parent[self.root(i)] = self.root(j)


class _Links(_Joined):
    """Links found so far: connected groups and each article's centrality."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.centrality = [0.0] * size

    def add(self, i: int, j: int, sim: float) -> None:
        self.join(i, j)
        self.centrality[i] += sim
        self.centrality[j] += sim

    def groups(self) -> list[list[int]]:
        """The connected groups of two or more, each in position order."""
        groups: dict[int, list[int]] = {}
        for position in range(len(self.parent)):
            groups.setdefault(self.root(position), []).append(position)
        return [members for members in groups.values() if len(members) >= 2]
