"""Searches: the query language (words, phrases, OR, NOT), the /search page and its feeds,
`digest articles --search`, and hostile queries (never a 500, never the database's syntax)."""

from __future__ import annotations

import feedparser
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from digest.common.query import MAX_LENGTH, MAX_TERMS, QueryError, index_tokens, parse, topics
from digest.config import Settings
from digest.store import open_store

from .helpers import atom_schema, write_config
from .servers import AppServer

HOSTILE = [
    "a " * 5000,  # 10,000 characters
    '"belt and road',  # an unbalanced quote
    'NEAR(china laos) * ^ : {title} AND OR NOT - "" ( ) \\ \x00 %',
    "title:laos* OR summary_text:mekong",
    "NOT laos",
    "-",
    " ".join(f"w{n}" for n in range(MAX_TERMS + 1)),
    "'; DROP TABLE articles; --",
    "x" * 200,
]


@given(st.text(max_size=400))
@settings(max_examples=400, deadline=None)
def test_any_text_parses_or_says_why_and_the_normal_form_is_stable(text: str) -> None:
    try:
        query = parse(text)
    except QueryError:
        return
    assert query.all_of and parse(query.text) == query  # what is stored reads back the same
    assert len(query.text) <= 2 * MAX_LENGTH


def test_topics_keep_what_was_typed_deduplicated_and_capped() -> None:
    # Issue 29 changed the contract: a topic is kept as typed (it was stored in normal form,
    # lowercased), and two that mean the same are still one.
    assert topics(["Laos OR Mekong", " laos or mekong ", "", "LAOS OR MEKONG"]) == (
        "Laos OR Mekong",  # a choice, written twice (the first spelling kept)...
        "laos or mekong",  # ...and, lowercase "or" being a word, a topic of three words
    )
    with pytest.raises(QueryError, match="at most 5 topics"):
        topics([f"word{n}" for n in range(6)])
    with pytest.raises(QueryError, match="topic '\"x'"):
        topics(['"x'])


def _ids(server: AppServer, query: str) -> set[str]:
    answer = httpx.get(server.url("/search.json"), params={"q": query})
    assert answer.status_code == 200, answer.text
    return {item["id"] for item in answer.json()["items"]}


def _text(settings: Settings, ids: set[str]) -> dict[str, str]:
    with open_store(settings.database.path) as store:
        found = {i: store.article(i.rsplit("/", 1)[-1]) for i in ids}
    return {i: f"{a.title} {a.summary_text}".lower() for i, a in found.items() if a}


def test_words_phrases_or_and_not_over_the_seeds(served_seeds: tuple[AppServer, Settings]) -> None:
    server, settings = served_seeds
    laos, mekong = _ids(server, "laos"), _ids(server, "mekong")
    assert laos and mekong and laos != mekong
    assert _ids(server, "laos OR mekong") == laos | mekong
    assert _ids(server, "laos mekong") == laos & mekong
    assert _ids(server, "laos -mekong") == _ids(server, "laos NOT mekong") == laos - mekong
    phrase = _ids(server, '"foreign minister"')
    assert phrase and all("foreign minister" in text for text in _text(settings, phrase).values())
    assert phrase < _ids(server, "foreign minister")  # the words, anywhere, find more
    assert _ids(server, '"belt and road"') and not _ids(server, '"road and belt"')  # in order


def test_the_search_page_and_its_feeds(served_seeds: tuple[AppServer, Settings]) -> None:
    schema = atom_schema()
    server, _ = served_seeds
    page = httpx.get(server.url("/search"), params={"q": "Laos OR Mekong"})
    assert page.status_code == 200 and "Xi meets Lao president" in page.text
    for fmt in ("atom", "rss", "json"):
        assert f'href="/search.{fmt}?q=laos+OR+mekong"' in page.text  # discovery, in normal form
    atom = httpx.get(server.url("/search.atom"), params={"q": "Laos OR Mekong"})
    assert schema.validate(etree.fromstring(atom.content)), schema.error_log.last_error
    parsed = feedparser.parse(httpx.get(server.url("/search.rss"), params={"q": "laos OR mekong"}).content)
    assert not parsed.bozo and parsed.feed.title.endswith("laos OR mekong")
    assert {e.title for e in parsed.entries} == {e.title for e in feedparser.parse(atom.content).entries}
    assert httpx.get(server.url("/search")).status_code == 200  # the form alone
    assert httpx.get(server.url("/search.xml"), params={"q": "laos"}).status_code == 404


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_get_a_400_or_a_clean_empty_answer(
    served_seeds: tuple[AppServer, Settings], query: str
) -> None:
    server, _ = served_seeds
    for path in ("/search", "/search.atom", "/search.json"):
        answer = httpx.get(server.url(path), params={"q": query}, timeout=10)
        assert answer.status_code in (200, 400), (path, answer.status_code)
        if answer.status_code == 200 and path == "/search.json":
            assert answer.json()["items"] == [] or query.startswith("title:")  # words, not columns
        if answer.status_code == 400 and path == "/search":
            assert '<p class="error">' in answer.text and "Traceback" not in answer.text


def test_articles_search_on_the_command_line(served_seeds: tuple[AppServer, Settings]) -> None:
    from click.testing import CliRunner

    from digest.cli.main import cli

    _, settings = served_seeds
    config = write_config(settings.database.path.parent, "")
    runner = CliRunner()
    found = runner.invoke(cli, ["--config", str(config), "articles", "--search", "laos OR mekong", "--json"])
    assert found.exit_code == 0, found.output
    assert '"title": "Xi meets Lao president"' in found.output
    bad = runner.invoke(cli, ["--config", str(config), "articles", "--search", '"unclosed'])
    assert bad.exit_code == 1 and "quotation mark is not closed" in bad.output


def _tokens_of_the_whole(text: str) -> list[str]:
    """The module's note read literally: typographic separators made spaces, then the whole
    text normalised (NFKC), case folded, decomposed, accents of Latin, Greek and Cyrillic
    letters dropped, words of letters, digits and marks, each recomposed and stemmed."""
    import re
    import unicodedata

    import regex
    import snowballstemmer

    typographic = [*range(0xA0, 0xC0), 0xD7, 0xF7, *range(0x2000, 0x2070)]
    kept = (0xAA, 0xB2, 0xB3, 0xB5, 0xB9, 0xBA, 0xBC, 0xBD, 0xBE)
    separators = re.escape("".join(chr(c) for c in typographic if c not in kept))
    text = re.sub(f"[{separators}]", " ", text)
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    plain = regex.sub(r"([\u0000-\u052f])\p{Mn}+", r"\1", folded)
    stemmer = snowballstemmer.stemmer("english")
    return [
        stemmer.stemWord(unicodedata.normalize("NFC", w)) for w in regex.findall(r"[\p{L}\p{N}\p{M}]+", plain)
    ]


# What folding could make of, or join across, ASCII punctuation: accents precomposed and
# loose, compatibility forms (ligatures, full width, Roman numerals, superscripts), case
# that folds to several letters or differently from lowering, spacing forms that decompose
# to a space and a mark, marks that compose with ASCII ("<" and U+0338 is "≮"), halfwidth
# sound marks, other scripts (Hangul jamo compose), typographic and other Unicode
# separators (U+3000 is a space to str.split), controls, a lone surrogate, a byte-order mark.
_FOLDABLE = (
    "abcXYZ019 .,-_!'\"<=>/@[`{\x7f\t\n\x00\x1féÉüßİıΣσςΆάῖ῭ﬁﬀＡ１！。中文字한국어—–“”…\u00a0"
    "\u2009ʼⅣ½²ǅꭰᎠ▸ｶﾞﾟ\u3000\U0001d400\ufeff\u200b\u00ad\x85\u2028\ud800\u0301\u0338\u0308"
    "\u0327\u0345\u093f\u0915\u1100\u1161\u11a8"
)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=_FOLDABLE, max_size=30))
def test_a_text_gets_the_tokens_its_whole_normalised_text_has(text: str) -> None:
    """The tokenizer folds only the runs between ASCII punctuation that need it (a speed-up):
    the tokens are those of folding the whole text at once, whatever characters meet."""
    assert index_tokens(text) == _tokens_of_the_whole(text)
    assert index_tokens(text.upper() + " " + text) == _tokens_of_the_whole(text.upper() + " " + text)


def test_folding_examples() -> None:
    assert index_tokens("Café ﬁnance ＡＢＣ Ⅳ Straße “Quoted”—dash x²") == [
        "cafe", "financ", "abc", "iv", "strass", "quot", "dash", "x2",
    ]  # fmt: skip
    assert index_tokens("a<\u0338b") == ["a", "b"]  # "≮" is no letter
    assert index_tokens("▸ 中文 ▸") == ["中文"]


def test_typographic_punctuation_separates_words_as_ascii_punctuation_does() -> None:
    """No-break and typographic spaces, dashes, quotes, ×, ÷, «» and the rest of Latin-1's
    and General Punctuation's separators split words; Latin-1's superscripts, fractions and
    ordinals are parts of words."""
    plain = index_tokens("river dam")
    kept = (0xAA, 0xB2, 0xB3, 0xB5, 0xB9, 0xBA, 0xBC, 0xBD, 0xBE)
    for code in [*range(0xA0, 0xC0), 0xD7, 0xF7, *range(0x2000, 0x2070)]:
        found = index_tokens(f"River{chr(code)}dam")
        if code in kept:
            assert found != plain, hex(code)
        else:
            assert found == plain, hex(code)


def _vector_reference(title: list[str], text: list[str]) -> str:
    """A PostgreSQL vector literal as defined: each token quoted (a quote doubled, a
    backslash escaped), at its position counted from 1 over the title then the text (the
    largest for all past it), the title's weighted A."""
    from digest.store.postgres.search import MAX_POSITION

    parts = []
    for n, (token, weight) in enumerate([(t, "A") for t in title] + [(t, "") for t in text], 1):
        quoted = token.replace("\\", "\\\\").replace("'", "''")
        parts.append(f"'{quoted}':{min(n, MAX_POSITION)}{weight}")
    return " ".join(parts)


_TOKENS = st.lists(st.text(st.sampled_from("ab'\\é中-"), min_size=1, max_size=4), max_size=8)


@settings(max_examples=300, deadline=None)
@given(_TOKENS, _TOKENS)
def test_a_postgres_vector_literal_quotes_every_token_at_its_position(
    title: list[str], text: list[str]
) -> None:
    """The tokens as ``index_text`` gives them (space-separated) make the literal the
    definition does, whether a token needs escaping or not (most need none: a faster way)."""
    from digest.store.postgres.search import search_vector_of

    assert search_vector_of((" ".join(title), " ".join(text))) == _vector_reference(title, text)


def test_a_postgres_vector_literal_past_the_largest_position_shares_it() -> None:
    from digest.store.postgres.search import MAX_POSITION, search_vector_of

    title, text = ["dam"], [f"w{n}" for n in range(MAX_POSITION + 5)]
    made = search_vector_of((" ".join(title), " ".join(text)))
    assert made == _vector_reference(title, text) and made.endswith(f"'w{MAX_POSITION + 4}':{MAX_POSITION}")
