"""Filter rules of a source (``keep = [...]``, ``drop = [...]``): parsing and matching (pure).

A rule is ``FIELD:PATTERN`` or a bare ``PATTERN`` (title or text). FIELD is ``title``,
``text``, ``author``, ``url``, ``region`` or ``theme``. PATTERN is a word, a "quoted
phrase" (whole words, any spacing between them) or a ``/regex/``; all case-insensitive.
For ``region`` and ``theme`` a word or phrase is a slug, compared whole.

An item is kept when it matches no ``drop`` rule and, if there are ``keep`` rules, at least
one of them; ``drop`` wins. A regex is compiled once, at most ``MAX_PATTERN`` characters,
and each search has ``REGEX_SECONDS`` (the ``regex`` module's timeout): a pattern that
backtracks catastrophically on some text gives up on it, with a warning, and the item is
dropped (a drop rule that cannot judge an item does not let it through; a keep rule that
cannot does not keep it). Rules read text in NFKC form without invisible characters.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import regex

from digest.common.errors import ConfigError

log = logging.getLogger("digest")
FIELDS = ("title", "text", "author", "url", "region", "theme")
GROUP_FIELDS = ("region", "theme")  # known only once the article is grouped
MAX_PATTERN = 200
MAX_RULES = 100
MAX_TEXT = 1_000_000  # as much as any article holds
REGEX_SECONDS = 0.05
KEEP_MISSED = "keep: no keep rule matched"
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]"
)


@dataclass(frozen=True)
class Rule:
    text: str  # as written in the config: what `digest articles --dropped` shows
    fields: tuple[str, ...]
    pattern: regex.Pattern[str]
    slug: str | None = None  # region and theme: the slug a word or phrase names

    @property
    def needs_groups(self) -> bool:
        return any(f in GROUP_FIELDS for f in self.fields)

    def matches(self, values: Mapping[str, str | Sequence[str]], *, undecided: bool = False) -> bool:
        """Whether the item matches; ``undecided`` is the answer when the regex runs out of
        time (drop rules pass True: an item a rule cannot judge is not let through)."""
        for name in self.fields:
            value = values.get(name) or ""
            if isinstance(value, str):
                if self._search(value[:MAX_TEXT], undecided):
                    return True
            elif self.slug is not None:
                if self.slug in value:
                    return True
            elif any(self._search(slug, undecided) for slug in value):
                return True
        return False

    def _search(self, text: str, undecided: bool) -> bool:
        try:
            return self.pattern.search(text, timeout=REGEX_SECONDS) is not None
        except TimeoutError:
            log.warning("rule %r gave up on a text after %.2f s", self.text, REGEX_SECONDS)
            return undecided


@dataclass(frozen=True)
class Rules:
    keep: tuple[Rule, ...] = ()
    drop: tuple[Rule, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keep or self.drop)

    @property
    def texts(self) -> frozenset[str]:
        """Every rule as written (a remembered drop holds while its rule is still here)."""
        return frozenset([*(f"drop: {r.text}" for r in self.drop), *([self.missed] if self.keep else [])])

    @property
    def missed(self) -> str:
        """Why an item that matched no keep rule was dropped, naming the keep rules (so a
        change of them has it judged again)."""
        return f"{KEEP_MISSED} ({'; '.join(r.text for r in self.keep)})"

    @property
    def needs_groups(self) -> bool:
        return any(r.needs_groups for r in (*self.keep, *self.drop))

    def verdict(self, values: Mapping[str, str | Sequence[str]], *, grouped: bool) -> str | None:
        """The rule that drops this item (``drop: RULE``, or :data:`KEEP_MISSED`), or None
        to keep it. Before grouping (``grouped`` false) only what can be decided without
        regions and themes is: drop rules on other fields, and keep rules when none of
        them needs groups; the rest waits for :meth:`verdict` with ``grouped``."""
        for rule in self.drop:
            if (grouped or not rule.needs_groups) and rule.matches(values, undecided=True):
                return f"drop: {rule.text}"
        if not self.keep or (not grouped and any(r.needs_groups for r in self.keep)):
            return None
        return None if any(rule.matches(values) for rule in self.keep) else self.missed


Fields = Mapping[str, str | Sequence[str]]


def fields_of(
    title: str, text: str, author: str | None, url: str | None, regions: Sequence[str], themes: Sequence[str]
) -> Fields:
    """What rules look at in one item: its text in compatibility form (NFKC: full-width and
    other look-alike forms folded) without invisible characters, so a soft hyphen or a
    zero-width space cannot split a word a rule looks for."""
    return {
        "title": _plain(title),
        "text": _plain(text),
        "author": _plain(author or ""),
        "url": url or "",
        "region": regions,
        "theme": themes,
    }


def _plain(text: str) -> str:
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def parse(keep: Sequence[str], drop: Sequence[str], where: str) -> Rules:
    """The rules of one source; ConfigError naming the source and the rule otherwise."""
    if len(keep) + len(drop) > MAX_RULES:
        raise ConfigError(f"{where}: at most {MAX_RULES} rules")
    return Rules(
        tuple(parse_rule(text, f"{where}.keep") for text in keep),
        tuple(parse_rule(text, f"{where}.drop") for text in drop),
    )


def parse_rule(text: str, where: str) -> Rule:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: {text!r}: a rule is a non-empty string, FIELD:PATTERN or PATTERN")
    written = text.strip()
    field, colon, pattern = written.partition(":")
    if colon and field.strip().lower() in FIELDS and not written.startswith(("/", '"')):
        fields: tuple[str, ...] = (field.strip().lower(),)
        pattern = pattern.strip()
    else:
        fields, pattern = ("title", "text"), written
    shown = f"{where}: {written!r}"
    if not pattern:
        raise ConfigError(f"{shown}: no pattern after {fields[0]}:")
    if len(pattern) > MAX_PATTERN:
        raise ConfigError(f"{shown}: a pattern may be at most {MAX_PATTERN} characters")
    slug = None
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        source = pattern[1:-1]
        if not source:
            raise ConfigError(f"{shown}: an empty regex")
    else:
        if len(pattern) >= 2 and pattern.startswith('"') and pattern.endswith('"'):
            pattern = pattern[1:-1].strip()
        elif pattern.startswith(('"', "/")) or pattern.endswith('"'):
            raise ConfigError(f'{shown}: write a phrase as "two words" and a regex as /pattern/')
        words = pattern.split()
        if not words:
            raise ConfigError(f"{shown}: an empty phrase")
        if any(f in GROUP_FIELDS for f in fields):
            slug = "-".join(w.lower() for w in words)
        source = r"(?<!\w)" + r"\s+".join(regex.escape(w) for w in words) + r"(?!\w)"
    try:
        compiled = regex.compile(source, regex.IGNORECASE | regex.UNICODE)
    except (regex.error, RecursionError, OverflowError) as exc:
        raise ConfigError(f"{shown}: not a valid regex ({exc})") from exc
    return Rule(written, fields, compiled, slug)
