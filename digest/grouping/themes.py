"""Themes: a taxonomy of weighted phrases (``digest/grouping/data/themes.toml``, extended or replaced
in config), matched over an article's title and text.

Like places, a theme whose phrases appear in nearly every article of a source tells little
about any one of them, so its score is discounted by how common it is in the source; that
keeps a site that is all diplomacy from filing everything under diplomacy.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import ahocorasick

from digest.common.errors import ConfigError
from digest.config import Settings, ThemeSettings

DATA = Path(__file__).resolve().parent / "data" / "themes.toml"
STRONG = 3.0
TITLE_WEIGHT = 3.0
SHARE_OF_TOP = 0.5
MAX_THEMES = 3
FALLBACK = "general"
FALLBACK_TITLE = "General"


@dataclass(frozen=True)
class Theme:
    slug: str
    title: str
    phrases: Mapping[str, float] = field(default_factory=dict)  # lower-case phrase → weight


class ThemeMatch(NamedTuple):
    """One theme's raw score in an article, and the phrases that earned it."""

    score: float
    phrases: tuple[str, ...]


@cache
def default_themes() -> tuple[Theme, ...]:
    """The taxonomy of ``digest/grouping/data/themes.toml``."""
    with DATA.open("rb") as handle:
        data = tomllib.load(handle)
    return tuple(_theme(slug, entry) for slug, entry in data["themes"].items())


def _theme(slug: str, entry: Mapping[str, object]) -> Theme:
    phrases: dict[str, float] = {}
    for key, weight in (("phrases", 1.0), ("strong", STRONG)):
        for phrase in entry.get(key, []) or []:  # type: ignore[attr-defined]
            phrases[str(phrase).lower()] = weight
    return Theme(slug=slug, title=str(entry.get("title") or slug), phrases=phrases)


class Taxonomy:
    """A set of themes and a matcher for them."""

    def __init__(self, themes: Iterable[Theme]) -> None:
        self.themes = {theme.slug: theme for theme in themes}
        self._matcher: Any = None

    def _automaton(self) -> Any:
        # Built on first match: most users of a taxonomy (feeds, pages, the CLI) only want
        # its titles, and building the automaton costs far more than reading them.
        if self._matcher is None:
            entries: dict[str, list[tuple[str, float]]] = {}
            for theme in self.themes.values():
                for phrase, weight in theme.phrases.items():
                    entries.setdefault(phrase, []).append((theme.slug, weight))
            matcher = ahocorasick.Automaton()
            for phrase, owners in entries.items():
                matcher.add_word(phrase, (phrase, tuple(owners)))
            if entries:
                matcher.make_automaton()
            self._matcher = matcher
        return self._matcher

    @classmethod
    def from_settings(cls, custom: Iterable[ThemeSettings], *, defaults: bool = True) -> Taxonomy:
        """The default taxonomy (unless ``defaults`` is false) with the config's themes added,
        replacing or (with ``extend``) extending defaults of the same name."""
        themes = {theme.slug: theme for theme in default_themes()} if defaults else {}
        for entry in custom:
            base = themes.get(entry.slug)
            if entry.extend and base is None:
                raise ConfigError(
                    f"themes.{entry.slug}.extend: there is no default theme {entry.slug!r} to extend"
                )
            phrases = dict(base.phrases) if entry.extend and base else {}
            phrases.update({p.lower(): 1.0 for p in entry.phrases})
            phrases.update({p.lower(): STRONG for p in entry.strong})
            title = entry.title or (base.title if base else entry.slug)
            themes[entry.slug] = Theme(entry.slug, title, phrases)
        return cls(themes.values())

    def titles(self) -> dict[str, str]:
        """Theme slug → title, the fallback theme included."""
        return {**{slug: theme.title for slug, theme in self.themes.items()}, FALLBACK: FALLBACK_TITLE}

    def match(self, title: str, text: str) -> dict[str, ThemeMatch]:
        """Raw scores: every theme with at least one phrase in the title or text."""
        automaton = self._automaton()
        if len(automaton) == 0:
            return {}
        in_title = self._counts(title.lower())
        in_text = self._counts(text.lower())
        scores: dict[str, float] = {}
        found: dict[str, list[str]] = {}
        for phrase in set(in_title) | set(in_text):
            owners = automaton.get(phrase)[1]
            where = TITLE_WEIGHT * min(in_title.get(phrase, 0), 1) + math.log1p(in_text.get(phrase, 0))
            for slug, weight in owners:
                scores[slug] = scores.get(slug, 0.0) + weight * where
                found.setdefault(slug, []).append(phrase)
        return {slug: ThemeMatch(round(scores[slug], 3), tuple(sorted(found[slug]))) for slug in scores}

    def _counts(self, text: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for end_index, (phrase, _owners) in self._automaton().iter(text):
            start = end_index + 1 - len(phrase)
            before = text[start - 1] if start > 0 else " "
            after = text[end_index + 1] if end_index + 1 < len(text) else " "
            if not before.isalnum() and not after.isalnum():
                counts[phrase] = counts.get(phrase, 0) + 1
        return counts


def taxonomy_for(settings: Settings) -> Taxonomy:
    """The themes in force: the defaults and the config's."""
    return Taxonomy.from_settings(settings.grouping.themes, defaults=settings.grouping.theme_defaults)


def assign_themes(matches: Mapping[str, ThemeMatch], weights: Mapping[str, float] | None = None) -> list[str]:
    """Themes for one article, best first: every theme within half of the best (at most
    three), or the fallback theme when nothing matched."""
    scores = {slug: m.score * (weights or {}).get(slug, 1.0) for slug, m in matches.items() if m.score > 0}
    if not scores:
        return [FALLBACK]
    top = max(scores.values())
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return [slug for slug, score in ranked if score >= SHARE_OF_TOP * top][:MAX_THEMES]
