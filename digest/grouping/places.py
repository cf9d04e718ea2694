"""The gazetteer and mention finding: which places, bodies and people a text names, and where.

One Aho-Corasick automaton holds every surface form (names, short forms, adjectives,
cities, bodies, people) and the traps (newspapers and organisations named after places).
Matches must stand as whole words; overlapping matches go to the longest, so "South
Africa" is not "Africa" and "China Daily" is not "China".
"""

from __future__ import annotations

import csv
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import ahocorasick

DATA = Path(__file__).resolve().parent / "data"

# Capitalised words that may stand before an ambiguous name without making it a person's.
_FUNCTION_WORDS = frozenset(
    [
        "A",
        "An",
        "And",
        "As",
        "At",
        "By",
        "For",
        "From",
        "In",
        "Into",
        "Of",
        "On",
        "Or",
        "The",
        "To",
        "With",
        "Visit",
        "Visits",
        "Visiting",
        "Between",
        "Both",
        "Neighbouring",
        "Neighboring",
        "Including",
        "Across",
        "Against",
        "Over",
        "Under",
        "Toward",
        "Towards",
    ]
)
_WORD = re.compile(r"[^\W\d_][\w'’.-]*")


@dataclass(frozen=True)
class Place:
    """Something an article can be about: a country (with its cities and regions), a region
    itself, an international body, or a person who stands for a country."""

    key: str  # "LA" (a country's ISO code), "region:europe", "body:ASEAN", "person:Keir Starmer"
    name: str
    region: str
    kind: str  # country | region | body | person


@dataclass(frozen=True)
class Mention:
    """One place named in a text: what, and the span of the text that named it."""

    place: Place
    start: int
    end: int


def _split(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(";") if part.strip()]


def _rows(name: str) -> Iterator[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip() and not line.startswith("#")]
    yield from csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)


class Gazetteer:
    """Every surface form digest knows, and how to find them in text."""

    def __init__(self, forms: dict[str, Place], traps: set[str], ambiguous: set[str]) -> None:
        self.forms = forms
        self.traps = {t for t in traps if "*" not in t}
        # "* University" → suffix " University"; "University of *" → prefix "University of ".
        self.trap_suffixes = tuple(t[1:] for t in traps if t.startswith("*"))
        self.trap_prefixes = tuple(t[:-1] for t in traps if t.endswith("*"))
        self.ambiguous = ambiguous
        self.places = {place.key: place for place in forms.values()}
        self._automaton = ahocorasick.Automaton()
        for form, place in forms.items():
            self._automaton.add_word(form, (form, place))
        for form in self.traps:
            self._automaton.add_word(form, (form, None))
        self._automaton.make_automaton()

    @classmethod
    @cache
    def default(cls) -> Gazetteer:
        """The gazetteer of ``digest/grouping/data`` (loaded once)."""
        return cls.load()

    @classmethod
    def load(cls) -> Gazetteer:
        """Read places.tsv, regions.toml, bodies.tsv, people.tsv, traps.txt and ambiguous.txt."""
        forms: dict[str, Place] = {}

        def add(form: str, place: Place) -> None:
            known = forms.get(form)
            # The first entry that claims a form keeps it (Congo: the data lists both Congos;
            # either way the region is the same, and a test checks that it always is).
            if known is None:
                forms[form] = place

        countries: dict[str, Place] = {}
        for row in _rows("places.tsv"):
            names = _split(row["names"])
            place = Place(key=row["code"], name=names[0], region=row["region"], kind="country")
            countries[row["code"]] = place
            for form in names + _split(row["adjectives"] or "") + _split(row["places"] or ""):
                add(form, place)
        with (DATA / "regions.toml").open("rb") as handle:
            for region in tomllib.load(handle)["regions"]:
                place = Place(f"region:{region['slug']}", region["name"], region["slug"], "region")
                for form in region.get("names", []):
                    add(form, place)
        bodies: dict[str, Place] = {}
        for row in _rows("bodies.tsv"):
            place = Place(f"body:{row['name']}", row["name"], row["region"], "body")
            bodies[row["name"]] = place
            for form in [row["name"], *_split(row["aliases"] or "")]:
                add(form, place)
        for row in _rows("people.tsv"):
            stands_for = countries.get(row["code"]) or bodies[row["code"]]
            place = Place(f"person:{row['name']}", row["name"], stands_for.region, "person")
            for form in [row["name"], *_split(row["aliases"] or "")]:
                add(form, place)
        traps = set(_lines("traps.txt"))
        ambiguous = set(_lines("ambiguous.txt"))
        return cls(forms, traps, ambiguous)

    def find(self, text: str) -> list[Mention]:
        """Every place named in ``text`` as a whole word, longest match first, traps removed."""
        return [Mention(place, start, end) for start, end, place in self.spans(text)]

    def spans(self, text: str) -> Iterator[tuple[int, int, Place]]:
        """What :meth:`find` finds, as (start, end, place): the hot path of classification."""
        # (start, -end, ...): sorted as they are, leftmost first and then longest first (no
        # two share a start and an end, so the comparison never reaches the place).
        candidates: list[tuple[int, int, str, Place | None]] = []
        size = len(text)
        for last, (form, place) in self._automaton.iter(text):
            # Whole words only (inlined: this loop sees every match of every article).
            # A possessive ("China's", "China’s") and a hyphen ("China-Africa") end a word.
            start = last + 1 - len(form)
            if start and (text[start - 1].isalnum() or text[start - 1] == "_"):
                continue
            if last + 1 < size and (text[last + 1].isalnum() or text[last + 1] == "_"):
                continue
            candidates.append((start, -1 - last, form, place))
        candidates.sort()
        reach = 0
        for start, negative_end, form, place in candidates:
            end = -negative_end
            if start < reach:
                continue  # inside a longer match (or a trap) already taken
            reach = end
            if place is None:
                continue
            if text.startswith(self.trap_suffixes, end) or text.endswith(self.trap_prefixes, 0, start):
                continue
            if form in self.ambiguous and _beside_a_name(text, start, end):
                continue
            yield start, end, place


def _lines(name: str) -> list[str]:
    text = (DATA / name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _beside_a_name(text: str, start: int, end: int) -> bool:
    """Whether a capitalised word stands right before or after text[start:end], as in a
    person's name ("Michael Jordan", "Chad Smith")."""
    before = text[max(0, start - 40) : start]
    after = text[end : end + 40]
    if before.endswith(" "):
        words = _WORD.findall(before)
        previous = words[-1] if words else ""
        if previous[:1].isupper() and previous not in _FUNCTION_WORDS:
            return True
    if after.startswith(" "):
        match = _WORD.match(after.lstrip(" "))
        if match and match.group(0)[:1].isupper():
            return True
    return False
