"""World regions: the slugs (from ``digest/grouping/data/regions.toml``) and which an article is about.

An article's regions come from the places it names, each scored by where it is named (the
title counts most, then the lead paragraph, then how often), by how specific it is (a
country or city over a region's name, a body or a person), and by how much it tells within
its source: a place named in most of a source's articles (the sample site names China in
nearly every post) is discounted the way IDF discounts common words.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import NamedTuple

from digest.grouping.places import Gazetteer

_DATA = Path(__file__).resolve().parent / "data" / "regions.toml"

GLOBAL = "global"
TITLE_WEIGHT = 3.0
LEAD_WEIGHT = 1.5
KIND_WEIGHT = {"country": 1.0, "region": 0.6, "body": 0.6, "person": 0.5}
# A region joins the article's list when it scores at least this share of the top region.
SHARE_OF_TOP = 0.4
MIN_SCORE = 1.0
LEAD_MIN_CHARS = 120


@cache
def regions() -> dict[str, str]:
    """Region slug → display name, in the order of the data file."""
    with _DATA.open("rb") as handle:
        data = tomllib.load(handle)
    return {entry["slug"]: entry["name"] for entry in data["regions"]}


class PlaceCount(NamedTuple):
    """How often an article names one place, and where: the evidence for its regions."""

    key: str
    name: str
    region: str
    kind: str
    title: int = 0
    lead: int = 0
    body: int = 0

    @property
    def total(self) -> int:
        return self.title + self.lead + self.body

    def as_json(self) -> dict[str, object]:
        where = [part for part in ("title", "lead", "body") if getattr(self, part)]
        return {"name": self.name, "region": self.region, "kind": self.kind, "count": self.total, "in": where}


def split_lead(text: str) -> tuple[str, str]:
    """The lead (first paragraph, or the first two when the first is only a line) and the rest."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    take = 1
    while take < len(paragraphs) and sum(len(p) for p in paragraphs[:take]) < LEAD_MIN_CHARS:
        take += 1
    return "\n\n".join(paragraphs[:take]), "\n\n".join(paragraphs[take:])


def count_places(title: str, text: str, gazetteer: Gazetteer | None = None) -> list[PlaceCount]:
    """Every place the title and text name, with counts for title, lead and body."""
    lead, body = split_lead(text)
    return count_places_in(title, lead, body, gazetteer)


def count_places_in(title: str, lead: str, body: str, gazetteer: Gazetteer | None = None) -> list[PlaceCount]:
    """:func:`count_places` of a text already split into lead and body."""
    gazetteer = gazetteer or Gazetteer.default()
    # One search over the three parts, a line apart (no name spans a line break).
    title_end = len(title)
    lead_end = title_end + 1 + len(lead)
    counts: dict[str, dict[str, int]] = {}
    for start, _, place in gazetteer.spans(f"{title}\n{lead}\n{body}"):
        part = "title" if start < title_end else "lead" if start < lead_end else "body"
        counts.setdefault(place.key, {"title": 0, "lead": 0, "body": 0})[part] += 1
    return [
        PlaceCount(key, place.name, place.region, place.kind, **where)
        for key, where in counts.items()
        for place in (gazetteer.places[key],)
    ]


def score_regions(
    places: Iterable[PlaceCount], weights: Mapping[str, float] | None = None, ignore: Iterable[str] = ()
) -> dict[str, float]:
    """Salience of each region for one article. ``weights`` maps a place key to its IDF
    within the source (1.0 when unknown); places whose key is in ``ignore`` count for nothing."""
    skip = set(ignore)
    scores: dict[str, float] = {}
    for place in places:
        if place.key in skip:
            continue
        where = (
            TITLE_WEIGHT * min(place.title, 1) + LEAD_WEIGHT * min(place.lead, 1) + math.log1p(place.total)
        )
        value = where * KIND_WEIGHT[place.kind] * (weights or {}).get(place.key, 1.0)
        scores[place.region] = scores.get(place.region, 0.0) + value
    return scores


def assign_regions(scores: Mapping[str, float]) -> list[str]:
    """The regions above the threshold, primary first; ``global`` only when no place is named."""
    placed = {region: score for region, score in scores.items() if region != GLOBAL}
    if not placed:
        return [GLOBAL] if scores.get(GLOBAL) else []
    top = max(placed.values())
    ranked = sorted(placed.items(), key=lambda item: (-item[1], item[0]))
    return [region for region, score in ranked if score >= max(MIN_SCORE, SHARE_OF_TOP * top) or score == top]
