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
    parts: list[str] = []
    position = 0
    for weight, words in (("A", tokens[0].split()), ("", tokens[1].split())):
        for token in words:
            position = min(position + 1, MAX_POSITION)
            parts.append(f"{_lexeme(token)}:{position}{weight}")
    return " ".join(parts)


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
    with conn.cursor() as writing:
        writing.executemany("UPDATE articles SET search = ?::tsvector WHERE id = ?", batch)
