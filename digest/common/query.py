"""A reader's search query: words, "quoted phrases", OR between two of them, NOT (or a
leading -) before one; AND between two changes nothing. Pure: parsed here into terms,
bounded in size, so that what reaches a database is built from plain words by the store
(FTS5 on SQLite, a tsquery on PostgreSQL), never the reader's own syntax. Anything else a
reader types (FTS5 operators, brackets, stars, colons) only separates words.

Every word of the query must match except where OR offers a choice; a NOT term must not.

One tokenizer for both stores (:func:`index_tokens`): what an article is indexed by and
what a query looks for are the same tokens whichever database holds them: runs of letters
and digits (so "COVID-19" is "covid" then "19", "U.S." is "u" then "s", "example.com" is
"example" then "com"), case and accents folded ("Café" is "cafe"), each word stemmed (the
Snowball English stemmer: "ministers" finds "minister"). Neither database's own parser
ever reads article text or a query: SQLite's FTS5 splits the tokens on spaces ("ascii"),
PostgreSQL is given its tsvector and tsquery as lexemes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import regex
import snowballstemmer

from digest.common.errors import DigestError

MAX_LENGTH = 300  # characters a query may have
MAX_TERMS = 8  # words and phrases, NOT ones included
MAX_PHRASE = 8  # words in one phrase
MAX_WORD = 40  # characters in one word
MAX_TOPICS = 5  # search topics a subscriber may follow

_TOKENS = re.compile(r'(-)?"([^"]*)"|(\S+)')  # a "phrase" (-"phrase": not it), or a bare word
# Letters, digits, and the marks that belong to them (a Devanagari vowel sign is part of its
# word): words as a query names them and as articles are indexed.
_WORD = regex.compile(r"[\p{L}\p{N}\p{M}]+")
# Separators outside ASCII: Latin-1's punctuation, signs and no-break space (not its
# superscripts, fractions and ordinals, which are digits and letters), and General Punctuation.
# A character class, not str.translate: its lookup of every character of a non-ASCII text
# cost a pull half a millisecond an article, ten times this.
_SEPARATORS = re.compile(
    "["
    + re.escape(
        "".join(
            chr(c)
            for c in [*range(0xA0, 0xC0), 0xD7, 0xF7, *range(0x2000, 0x2070)]
            if c not in (0xAA, 0xB2, 0xB3, 0xB5, 0xB9, 0xBA, 0xBC, 0xBD, 0xBE)
        )
    )
    + "]"
)
_ACCENTS = regex.compile(r"([\u0000-\u052f])\p{Mn}+")
_STEMMER = snowballstemmer.stemmer("english")


class QueryError(DigestError):
    """A query that cannot be run, and why, in words for the person who typed it."""


@dataclass(frozen=True)
class Term:
    """One word, or a phrase: its words, lowercased."""

    words: tuple[str, ...]

    @property
    def text(self) -> str:
        return self.words[0] if len(self.words) == 1 else f'"{" ".join(self.words)}"'


@dataclass(frozen=True)
class Query:
    """All of ``all_of`` (each a choice of terms) and none of ``none_of``."""

    all_of: tuple[tuple[Term, ...], ...]
    none_of: tuple[Term, ...] = ()

    @property
    def text(self) -> str:
        """The query in normal form: what is stored, shown and put in links."""
        parts = [" OR ".join(t.text for t in choice) for choice in self.all_of]
        parts += [f"-{t.text}" for t in self.none_of]
        return " ".join(parts)


def parse(text: str) -> Query:
    """The query ``text`` says, or QueryError (too long, too many terms, an unbalanced
    quote, nothing to look for)."""
    if len(text) > MAX_LENGTH:
        raise QueryError(f"a search may have at most {MAX_LENGTH} characters")
    if text.count('"') % 2:
        raise QueryError("a quotation mark is not closed")
    choices: list[list[Term]] = []
    none_of: list[Term] = []
    negate = either = False
    count = 0
    for match in _TOKENS.finditer(text):
        minus, phrase, bare = match.group(1), match.group(2), match.group(3)
        if minus:
            negate, either = True, False
        if bare in ("OR", "|"):
            either = bool(choices) and not negate
            continue
        if bare == "AND":  # what every pair of terms is anyway
            continue
        if bare == "NOT":
            negate, either = True, False
            continue
        if bare is not None and bare.startswith("-") and _WORD.search(bare):
            negate, bare = True, bare[1:]
        # Punctuation inside a bare word ("belt-and-road", "U.S.") keeps its words together.
        words = tuple(_WORD.findall((phrase if phrase is not None else bare or "").lower()))
        if not words:
            continue
        for word in words:
            if len(word) > MAX_WORD:
                raise QueryError(f"a word may have at most {MAX_WORD} characters")
        if len(words) > MAX_PHRASE:
            raise QueryError(f"a phrase may have at most {MAX_PHRASE} words")
        count += 1
        if count > MAX_TERMS:
            raise QueryError(f"a search may have at most {MAX_TERMS} words or phrases")
        term = Term(words)
        if negate:
            none_of.append(term)
        elif either:
            choices[-1].append(term)
        else:
            choices.append([term])
        negate = either = False
    if not choices:
        raise QueryError("a search needs at least one word to look for")
    return Query(tuple(tuple(choice) for choice in choices), tuple(none_of))


def as_typed(text: str) -> str:
    """A topic as typed, made safe to keep and show: control and format characters (escape
    sequences for a terminal, newlines that would forge a line, invisible marks) and ";"
    (which separates topics in a CSV cell) become spaces, as a query reads them anyway;
    runs of spaces become one."""
    if text.isascii() and text.isprintable() and ";" not in text:
        return " ".join(text.split())
    kept = (" " if ch == ";" or unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in text)
    return " ".join("".join(kept).split())


def topics(texts: list[str]) -> tuple[str, ...]:
    """A subscriber's search topics as they typed them (see :func:`as_typed`; blank ones
    dropped; of two with the same normal form, the first), or QueryError naming the topic at
    fault.
    Kept as typed for the reader to recognise; searched case-insensitively all the same."""
    found: dict[str, str] = {}
    for text in texts:
        typed = as_typed(text)
        if not typed:
            continue
        try:
            normal = parse(typed).text
        except QueryError as exc:
            raise QueryError(f"topic {typed[:60]!r}: {exc}") from None
        found.setdefault(normal, typed)
    if len(found) > MAX_TOPICS:
        raise QueryError(f"at most {MAX_TOPICS} topics")
    return tuple(found.values())


def index_tokens(text: str) -> list[str]:
    """The tokens ``text`` is indexed and searched by, in order (see the module's note)."""
    return index_text(text).split()


def index_text(text: str) -> str:
    """:func:`index_tokens` as one space-separated string (what SQLite's FTS5 indexes)."""
    if not text.isascii():  # typographic quotes, dashes and spaces separate, as ASCII's do
        text = _SEPARATORS.sub(" ", text)
    # ASCII punctuation, spaces and controls separate whatever normalisation does to the
    # runs between them (no composition crosses them but with a mark), and ASCII letters
    # fold alike before or after it; so the runs are cut and their ASCII lowered in C, and
    # each distinct run is folded and stemmed once (a text's words are mostly seen before).
    spaced = text.encode(errors="surrogatepass").translate(_ASCII_FOLD).decode(errors="surrogatepass")
    if not spaced.isascii() and any(map(_joins_back, _RUN_STARTS.findall(" " + spaced))):
        return " ".join(_folded_tokens(text))
    runs = filter(None, spaced.split(" "))  # not str.split(): U+3000 is inside a run
    tokens = list(map(_RUN_TOKENS.__getitem__, runs))
    return " ".join(tokens if "" not in tokens else filter(None, tokens))  # "": a run of no word


def _folded_tokens(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    # Accents off the letters of alphabets that write them as accents (Latin, Greek,
    # Cyrillic: "é" is "e"); the marks of other scripts are parts of their letters, and stay.
    plain = _ACCENTS.sub(r"\1", folded)
    return [_stem(unicodedata.normalize("NFC", word)) for word in _WORD.findall(plain)]


class _RunTokens(dict[str, str]):
    """A run's tokens, space-separated (none: ""), worked out the first time it is met. The
    runs of a few hundred thousand texts repeat (Zipf's law); should they not, it starts over."""

    LIMIT = 200_000

    def __missing__(self, run: str) -> str:
        if len(self) >= self.LIMIT:
            self.clear()
        tokens = self[run] = _stem(run) if run.isascii() else " ".join(_folded_tokens(run))
        return tokens


_RUN_TOKENS = _RunTokens()
# ASCII letters lowered, other ASCII bytes (punctuation, spaces, controls) made spaces; the
# bytes of other characters (UTF-8 encoded: all 0x80 and above) left as they are.
_ASCII_FOLD = bytes(b if b >= 0x80 or chr(b).isalnum() else 0x20 for b in bytes(range(256)).lower())
# The first character of each run (of a spaced text) that starts with one outside ASCII.
_RUN_STARTS = re.compile(r" ([^\x00-\x7f])")


def _joins_back(first: str) -> bool:
    """Whether a run starting with ``first`` may fold with what precedes it: a mark (on an
    ASCII separator it is dropped as an accent, or composes: "<" and U+0338 are "≮"), or one
    of the two characters (halfwidth katakana sound marks) that normalise to marks."""
    return unicodedata.category(first)[0] == "M" or first in "\uff9e\uff9f"


@lru_cache(maxsize=100_000)  # words follow Zipf's law: most are seen again and again
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))
