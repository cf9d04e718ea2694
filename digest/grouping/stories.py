"""Stories: articles about the same event, across sources and snapshots.

Two articles are linked when they are close in time and either very alike (TF-IDF cosine
over title and lead) or fairly alike and naming the same specific place or person (one
that is not in most articles of the batch, as China is on the sample site). A story is a
connected group of links; its label is its most central title. Articles on different events
between the same countries stay apart: weeks apart in time, or alike only in the common words.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# Cosine similarity thresholds: linked alone, or linked with a shared specific entity.
ALIKE = 0.5
RELATED = 0.2
# An entity in more than this share of the batch is too common to tie two articles.
COMMON_ENTITY = 0.3
CHUNK = 512
NEIGHBOURS = 12  # the most similar articles each article is compared with for links
_WORDS = r"(?u)\b[^\W\d_][\w'’-]+\b"  # words of two or more characters, starting with a letter


@dataclass(frozen=True)
class StoryInput:
    """What clustering needs of an article."""

    id: str
    title: str
    lead: str
    first_seen: datetime
    published: datetime | None = None
    entities: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Story:
    id: str
    label: str
    members: tuple[str, ...]


def _close_in_time(a: StoryInput, b: StoryInput, window: timedelta) -> bool:
    # Published dates when both have one; otherwise when we saw them (a page dump's undated
    # posts were all seen at once with their neighbours).
    if a.published is not None and b.published is not None:
        return abs(a.published - b.published) <= window
    return abs(a.first_seen - b.first_seen) <= window


def _similar_pairs(
    matrix: Any, order: Sequence[StoryInput], window: timedelta
) -> Iterator[tuple[int, int, float]]:
    """Pairs (i < j) close in time whose cosine similarity is at least RELATED.

    Two sweeps keep the comparisons near-linear: one over published dates among articles
    that have one, one over first-seen times for those that do not (against all).
    """
    import numpy as np

    published = {k: item.published for k, item in enumerate(order) if item.published is not None}
    dated = sorted(published, key=published.__getitem__)
    everyone = list(range(len(order)))  # already in first-seen order
    undated = [k for k in everyone if k not in published]
    sweeps = [
        (dated, dated, [published[k] for k in dated]),
        (undated, everyone, [item.first_seen for item in order]),
    ]
    done: set[tuple[int, int]] = set()
    for rows, columns, times in sweeps:
        when = dict(zip(columns, times, strict=True))
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]  # rows are in time order, like columns
            low = bisect.bisect_left(times, when[chunk[0]] - window)
            high = bisect.bisect_right(times, when[chunk[-1]] + window)
            neighbours = columns[low:high]
            sims = (matrix[chunk] @ matrix[neighbours].T).toarray()
            # Only each article's closest few can be story links: keeps templated sources
            # (every item alike) from producing a link between every pair.
            keep = min(NEIGHBOURS, sims.shape[1])
            best = np.argpartition(-sims, keep - 1, axis=1)[:, :keep]
            for row, col in zip(*np.nonzero(np.take_along_axis(sims, best, axis=1) >= RELATED), strict=True):
                column = int(best[row, col])
                sim = float(sims[row, column])
                i, j = sorted((chunk[int(row)], neighbours[column]))
                if i == j or (i, j) in done or not _close_in_time(order[i], order[j], window):
                    continue
                done.add((i, j))
                yield i, j, sim


def cluster(items: Sequence[StoryInput], window: timedelta) -> list[Story]:
    """Stories (groups of two or more) among ``items``; the id is the earliest member's."""
    if len(items) < 2:
        return []
    # Imported here: scikit-learn takes a second to import, and most commands never cluster.
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    order = sorted(items, key=lambda item: (item.first_seen, item.id))
    texts = [f"{item.title}. {item.title}. {item.lead}" for item in order]
    vectorizer = TfidfVectorizer(
        stop_words="english", sublinear_tf=True, token_pattern=_WORDS, dtype=np.float32
    )
    try:
        matrix = vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # nothing but stop words
        return []
    counts: dict[str, int] = {}
    for item in order:
        for entity in item.entities:
            counts[entity] = counts.get(entity, 0) + 1
    common = {e for e, n in counts.items() if n > max(2, COMMON_ENTITY * len(order))}
    entities = [item.entities - common for item in order]

    parent = list(range(len(order)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    edges: list[tuple[int, int, float]] = []
    for i, j, sim in _similar_pairs(matrix, order, window):
        if sim >= ALIKE or entities[i] & entities[j]:
            edges.append((i, j, sim))
            parent[root(i)] = root(j)

    groups: dict[int, list[int]] = {}
    for index in range(len(order)):
        groups.setdefault(root(index), []).append(index)
    centrality = [0.0] * len(order)
    for i, j, sim in edges:
        centrality[i] += sim
        centrality[j] += sim
    stories = []
    for members in groups.values():
        if len(members) < 2:
            continue
        central = max(members, key=lambda m: (centrality[m], -m))
        stories.append(
            Story(
                id=order[members[0]].id,
                label=order[central].title,
                members=tuple(order[m].id for m in members),
            )
        )
    return stories
