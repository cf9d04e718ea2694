"""Search on PostgreSQL: the ``tsvector`` of an article and the ``tsquery`` of a query, both
made from :func:`digest.common.query.index_tokens` and given to the server as literals of lexemes
(its own parser reads neither), and the refresh of stored vectors (a migration, a copy in)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from digest.common.query import Query, Term, index_text, index_tokens

Conn = psycopg.Connection[dict[str, Any]]

MAX_POSITION = 16_383  # PostgreSQL's largest; later words share it (phrases there match loosely)


def _lexeme(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def search_vector(title: str, text: str) -> str:
    """The ``tsvector`` literal of an article: its tokens with their positions, the title's
    weighted A. A literal, so PostgreSQL stores the tokens as given."""
    return search_vector_of((index_text(title), index_text(text)))


def search_vector_of(tokens: tuple[str, str]) -> str:
    """:func:`search_vector` of the title's and the text's tokens, as ``index_text`` gives them."""
    title, text = tokens[0].split(), tokens[1].split()
    if len(title) + len(text) > MAX_POSITION or any("'" in t or "\\" in t for t in tokens):
        parts: list[str] = []
        position = 0
        for weight, words in (("A", title), ("", text)):
            for token in words:
                position = min(position + 1, MAX_POSITION)
                parts.append(f"{_lexeme(token)}:{position}{weight}")
        return " ".join(parts)
    # Most texts: nothing to escape, every position its own (a pull's largest share here).
    after = len(title) + 1
    return " ".join(
        [
            *(f"'{token}':{n}A" for n, token in enumerate(title, 1)),
            *(f"'{token}':{n}" for n, token in enumerate(text, after)),
        ]
    )


def tsquery(query: Query) -> tuple[str, list[Any]]:
    """A parsed query as a tsquery expression and its parameter: each term the phrase of its
    tokens (``<->``), joined by the query's own structure, given to PostgreSQL as a literal
    of lexemes, so nothing a reader typed is read as tsquery syntax, and the words are
    tokenized exactly as the articles were."""

    def phrase(term: Term) -> str:
        return "(" + " <-> ".join(_lexeme(t) for t in index_tokens(" ".join(term.words))) + ")"

    def choice(terms: tuple[Term, ...]) -> str:
        return "(" + " | ".join(phrase(t) for t in terms) + ")"

    wanted = " & ".join(choice(c) for c in query.all_of)
    if query.none_of:
        wanted = f"{wanted} & !{choice(query.none_of)}"
    return "?::tsquery", [wanted]


def refresh_search(conn: Conn, ids: Sequence[str] | None = None) -> None:
    """Make the search vectors of these articles (all: ``None``) from their text, in batches."""
    where, args = ("WHERE id = ANY(?)", [list(ids)]) if ids is not None else ("", [])
    with conn.cursor(name="digest_search") as reading:
        reading.itersize = 500
        rows = reading.execute(f"SELECT id, title, summary_text FROM articles {where}", args)
        batch: list[tuple[str, str]] = []
        for row in rows:
            batch.append((search_vector(row["title"], row["summary_text"]), row["id"]))
            if len(batch) >= 500:
                _write_vectors(conn, batch)
                batch = []
        if batch:
            _write_vectors(conn, batch)


def _write_vectors(conn: Conn, batch: list[tuple[str, str]]) -> None:
    # One statement a batch: each UPDATE of articles runs its tracking trigger once.
    conn.execute(
        "UPDATE articles a SET search = v.search::tsvector FROM unnest(%b::text[], %b::text[])"
        " AS v(search, id) WHERE a.id = v.id",
        [[vector for vector, _ in batch], [article_id for _, article_id in batch]],
    )
