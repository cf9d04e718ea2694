"""Grouping stored articles: regions and themes (with their evidence) and stories.

Runs after every pull on what is new or changed; ``regroup`` redoes everything after a
vocabulary change. Reading text is the costly part and is done once per article version;
regions and themes are re-scored from the stored evidence, for every article of a source
while the source is young (its IDF still moves a lot), for new articles after that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from digest.config import Settings
from digest.grouping import regions as region_scoring
from digest.grouping import themes as theme_scoring
from digest.grouping.places import Gazetteer
from digest.grouping.regions import PlaceCount, count_places_in, split_lead
from digest.grouping.stories import StoryInput, cluster, terms
from digest.grouping.themes import ThemeMatch, taxonomy_for
from digest.grouping.weights import idf
from digest.parallel import fork_map
from digest.store import Evidence, Groups, Store, Story, StoryRow, Ungrouped

# Below this many articles a source's IDF changes with every pull: re-score all of them.
YOUNG_SOURCE = 200


@dataclass(frozen=True)
class GroupReport:
    classified: int
    rescored: int
    stories: int


class _Read(NamedTuple):
    """All that is read from one article's text."""

    places: list[PlaceCount]
    matches: dict[str, ThemeMatch]
    terms: dict[str, int]


def group_pending(store: Store, settings: Settings, *, everything: bool = False) -> GroupReport:
    """Classify new and changed articles, score them (and every article of a young source),
    re-cluster stories."""
    gazetteer = Gazetteer.default()
    taxonomy = taxonomy_for(settings)
    pending = store.ungrouped()

    def read(row: Ungrouped) -> _Read:
        lead, body = split_lead(row.summary_text)
        return _Read(
            count_places_in(row.title, lead, body, gazetteer),
            taxonomy.match(row.title, row.summary_text),
            terms(row.title, lead),
        )

    reads = fork_map(read, pending)  # the costly part: on every core for a big batch

    stories = 0
    if pending or everything:
        earliest = min((row.first_seen for row in pending), default=None)
        fresh = [_fresh_input(row, found) for row, found in zip(pending, reads, strict=True)]
        stories = recluster(store, settings, since=None if everything else earliest, fresh=fresh)

    by_source: dict[str, list[tuple[Ungrouped, _Read]]] = {}
    for row, found in zip(pending, reads, strict=True):
        by_source.setdefault(row.source, []).append((row, found))
    rescored = 0
    ignore = {source.name: _ignored_keys(source.ignore_places, gazetteer) for source in settings.sources}
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
        if total < YOUNG_SOURCE:
            groups += [weights.groups(e.id, *_parsed(e)) for e in store.evidence(source)]
        store.set_groups(groups)
        rescored += len(groups)
    return GroupReport(classified=len(pending), rescored=rescored, stories=stories)


def regroup(store: Store, settings: Settings) -> GroupReport:
    """Classify every article again and re-cluster every story (after a vocabulary change)."""
    store.mark_ungrouped()
    return group_pending(store, settings, everything=True)


def recluster(
    store: Store, settings: Settings, since: datetime | None, fresh: Sequence[StoryInput] = ()
) -> int:
    """Re-cluster the stories of articles first seen within the window before ``since``:
    ``fresh`` (just read, not yet stored as classified) and those stored."""
    window = timedelta(seconds=settings.grouping.story_window)
    start = since - window if since else None
    rows = store.story_inputs(start, classified_only=bool(fresh))
    items = [*fresh, *(_stored_input(row) for row in rows)]
    found = cluster(items, window)
    store.save_stories([item.id for item in items], [Story(s.id, s.label, tuple(s.members)) for s in found])
    return len(found)


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
    return Evidence(article_id, _places_data(found.places), _matches_data(found.matches))


def _parsed(evidence: Evidence) -> tuple[list[PlaceCount], dict[str, ThemeMatch]]:
    """Stored evidence as classification found it."""
    matches = {
        slug: ThemeMatch(float(m["score"]), tuple(m["phrases"])) for slug, m in evidence.theme_matches.items()
    }
    return [_place(p) for p in evidence.places], matches


def _ignored_keys(names: Iterable[str], gazetteer: Gazetteer) -> set[str]:
    return {gazetteer.forms[name].key for name in names if name in gazetteer.forms}


def _places_data(places: Sequence[PlaceCount]) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "key": p.key,
            "name": p.name,
            "region": p.region,
            "kind": p.kind,
            "title": p.title,
            "lead": p.lead,
            "body": p.body,
        }
        for p in places
    )


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


def _matches_data(matches: dict[str, ThemeMatch]) -> dict[str, dict[str, Any]]:
    return {slug: {"score": m.score, "phrases": list(m.phrases)} for slug, m in matches.items()}


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
