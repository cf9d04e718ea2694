"""Grouping stored articles: regions and themes (with their evidence) and stories.

Runs after every pull on what is new or changed; ``regroup`` redoes everything after a
vocabulary change. Reading text is the costly part and is done once per article version;
regions and themes are re-scored from the stored evidence, for every article of a source
while the source is young (its IDF still moves a lot), for new articles after that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from digest.config import Settings
from digest.grouping import regions as region_scoring
from digest.grouping import themes as theme_scoring
from digest.grouping.places import Gazetteer
from digest.grouping.regions import PlaceCount, count_places, split_lead
from digest.grouping.stories import StoryInput, cluster
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


def group_pending(store: Store, settings: Settings, *, everything: bool = False) -> GroupReport:
    """Classify new and changed articles, score them (and every article of a young source),
    re-cluster stories."""
    gazetteer = Gazetteer.default()
    taxonomy = taxonomy_for(settings)
    pending = store.ungrouped()

    def classify(row: Ungrouped) -> Evidence:
        places = count_places(row.title, row.summary_text, gazetteer)
        return Evidence(
            row.id, _places_data(places), _matches_data(taxonomy.match(row.title, row.summary_text))
        )

    fresh: dict[str, list[Evidence]] = {}
    for row, classified in zip(pending, fork_map(classify, pending), strict=True):
        fresh.setdefault(row.source, []).append(classified)

    rescored = 0
    ignore = {source.name: _ignored_keys(source.ignore_places, gazetteer) for source in settings.sources}
    for source, found in fresh.items():
        total, place_df, theme_df = store.source_frequencies(source)  # of those classified before
        total += len(found)
        for evidence in found:
            for key in {str(place["key"]) for place in evidence.places}:
                place_df[key] = place_df.get(key, 0) + 1
            for slug in evidence.theme_matches:
                theme_df[slug] = theme_df.get(slug, 0) + 1
        # A young source's IDF still moves a lot with every pull: all its articles are re-scored.
        earlier = store.evidence(source) if total < YOUNG_SOURCE else []
        scored = _scored([*found, *earlier], total, place_df, theme_df, ignore.get(source, set()))
        # The new evidence is stored with its scores: one write per article.
        store.set_groups(
            [replace(groups, evidence=new) for groups, new in zip(scored, found, strict=False)]
            + scored[len(found) :]
        )
        rescored += len(scored)

    stories = 0
    if pending or everything:
        earliest = min((row.first_seen for row in pending), default=None)
        stories = recluster(store, settings, since=None if everything else earliest)
    return GroupReport(classified=len(pending), rescored=rescored, stories=stories)


def regroup(store: Store, settings: Settings) -> GroupReport:
    """Classify every article again and re-cluster every story (after a vocabulary change)."""
    store.mark_ungrouped()
    return group_pending(store, settings, everything=True)


def recluster(store: Store, settings: Settings, since: datetime | None) -> int:
    """Re-cluster the stories of articles first seen within the window before ``since``."""
    window = timedelta(seconds=settings.grouping.story_window)
    start = since - window if since else None
    rows = store.story_inputs(start)
    items = [_story_input(row) for row in rows]
    found = cluster(items, window)
    store.save_stories([row.id for row in rows], [Story(s.id, s.label, tuple(s.members)) for s in found])
    return len(found)


def _scored(
    rows: Iterable[Evidence],
    total: int,
    place_df: dict[str, int],
    theme_df: dict[str, int],
    ignore: set[str],
) -> list[Groups]:
    place_weights = {key: idf(df, total) for key, df in place_df.items()}
    theme_weights = {slug: idf(df, total) for slug, df in theme_df.items()}
    out = []
    for row in rows:
        places = [_place(p) for p in row.places]
        matches = {
            slug: ThemeMatch(float(m["score"]), tuple(m["phrases"])) for slug, m in row.theme_matches.items()
        }
        regions = region_scoring.assign_regions(region_scoring.score_regions(places, place_weights, ignore))
        themes = theme_scoring.assign_themes(matches, theme_weights)
        out.append(Groups(row.id, tuple(regions), tuple(themes)))
    return out


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


def _story_input(row: StoryRow) -> StoryInput:
    lead, _ = split_lead(row.summary_text)
    entities = frozenset(
        str(p["key"]) for p in row.places if p["kind"] in ("country", "person") and (p["title"] or p["lead"])
    )
    return StoryInput(
        id=row.id,
        title=row.title,
        lead=lead,
        first_seen=row.first_seen,
        published=row.published,
        entities=entities,
    )
