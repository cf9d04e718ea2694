"""The source kinds, each mapped to the parser that reads it. Every parser takes a fetched
document and the same :class:`Options` and returns one :class:`Parsed`; the limits apply
the same way on every path (a feed a page points to included).

Adding a kind is its name in :data:`digest.common.models.PARSED_KINDS` (the configuration's choices,
``auto`` and these, come from there) and a module ``digest/intake/kinds/<kind>.py`` with a
``parse(document, options)``. Parsers are imported when first used, so naming the kinds
costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from digest.common.errors import ParseError
from digest.common.models import PARSED_KINDS, Document, ParsedItem

# kind → module with its parse(document, options)
KINDS: dict[str, str] = {kind: f"digest.intake.kinds.{kind}" for kind in PARSED_KINDS}
AUTO = "auto"  # not a kind of its own: the bytes say which
CHOICES = (AUTO, *KINDS)
MAX_ITEMS = 10_000


@dataclass(frozen=True)
class Options:
    """What every parser is told: how far to go, and what the source's config adds."""

    max_items: int = MAX_ITEMS
    fast: bool = True  # the fast feed path where it reads as the reference parser does
    selectors: Mapping[str, str] = field(default_factory=dict)
    auto: bool = False  # the kind was sniffed: a page that only points to a feed is fine


@dataclass(frozen=True)
class Parsed:
    """Items of one document, and the feeds it points to (HTML pages only)."""

    items: list[ParsedItem]
    feed_links: tuple[str, ...] = ()
    base_url: str | None = None  # where relative links point, when not the document's URL


Parser = Callable[[Document, Options], Parsed]


def parser(kind: str) -> Parser:
    """The parser of ``kind`` (one of KINDS)."""
    parse: Parser = importlib.import_module(KINDS[kind]).parse
    return parse


def parse_document(document: Document, kind: str, options: Options) -> Parsed:
    """``document`` read as ``kind`` (``auto``: as its bytes say), within the limits."""
    if kind == AUTO:
        from digest.intake.kinds.auto import detect_kind

        kind, options = detect_kind(document.body, document.content_type), replace(options, auto=True)
    parsed = parser(kind)(document, options)
    if len(parsed.items) > options.max_items:
        raise ParseError(
            f"{len(parsed.items)} items is over the limit of {options.max_items} per document"
            " ([fetch] max_items)"
        )
    return parsed
