"""OPML 2.0 lists of sources: written for ``digest sources export`` and
``/api/v1/sources.opml``, read for ``digest sources import`` and the API's import.

A file to read is hostile: no DTD, no entities, no network, a size and an outline cap; an
outline with an ``xmlUrl`` is a feed, one without is a category whose text labels the feeds
inside it (nested categories joined by " / "; an outline's own ``category`` attribute wins).
Every problem is found before anything is returned, each named by its line, so an import
takes the whole file or nothing."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from lxml import etree

from digest.common.errors import SourceError

MAX_BYTES = 5 * 1024 * 1024
MAX_OUTLINES = 10_000
MAX_DEPTH = 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Outline:
    """A feed an OPML file lists: where, under what title and category, and on which line."""

    url: str
    title: str | None
    label: str | None
    line: int
    site: str | None = None  # its htmlUrl


@dataclass(frozen=True)
class Listed:
    """A source as an export lists it."""

    name: str
    url: str
    label: str | None = None
    site: str | None = None


def read(data: bytes, where: str = "OPML") -> list[Outline]:
    """The feeds of an OPML file, in document order. Raises SourceError naming the line of
    the first problem (not XML, not OPML, an outline without a usable URL, too big)."""
    if len(data) > MAX_BYTES:
        raise SourceError(f"{where}: larger than {MAX_BYTES // (1024 * 1024)} MB")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"{where}: line {exc.lineno}: not well-formed XML ({exc.msg})") from None
    if root is None or not isinstance(root.tag, str) or root.tag != "opml":
        raise SourceError(f"{where}: not an OPML file (its root element is not <opml>)")
    body = root.find("body")
    if body is None:
        raise SourceError(f"{where}: line {_line(root)}: an OPML file needs a <body>")
    found = list(_outlines(body, (), 0, where))
    if len(found) > MAX_OUTLINES:
        raise SourceError(f"{where}: more than {MAX_OUTLINES:,} feeds")
    return found


def _outlines(parent: etree._Element, labels: tuple[str, ...], depth: int, where: str) -> Iterator[Outline]:
    if depth > MAX_DEPTH:
        raise SourceError(f"{where}: line {_line(parent)}: outlines nested deeper than {MAX_DEPTH}")
    for outline in parent.iterfind("outline"):
        text = _clean(outline.get("title") or outline.get("text"))
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        if not url:
            yield from _outlines(outline, (*labels, text) if text else labels, depth + 1, where)
            continue
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise SourceError(f"{where}: line {_line(outline)}: xmlUrl is not an http(s) URL")
        label = _clean(outline.get("category")) or (" / ".join(labels) if labels else None)
        site = (outline.get("htmlUrl") or "").strip() or None
        yield Outline(url, text, label, _line(outline), site)


def _line(element: etree._Element) -> int:
    line = element.sourceline
    return line if isinstance(line, int) else 0


def _clean(text: str | None) -> str | None:
    """An attribute's text on one line, at most 200 characters (a title or a label),
    without control characters."""
    if not text:
        return None
    cleaned = " ".join(_CONTROL.sub(" ", text).split())[:200]
    return cleaned or None


def _xml(text: str) -> str:
    """Text XML may hold (what a file or an operator gave can hold other characters)."""
    return _NOT_XML.sub("", text)


def write(title: str, sources: Iterable[Listed]) -> bytes:
    """OPML 2.0 listing ``sources``, grouped into one outline per label."""
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = _xml(title)
    body = etree.SubElement(root, "body")
    groups: dict[str, etree._Element] = {}
    for source in sources:
        parent = body
        if source.label:
            label = _xml(source.label)
            if label not in groups:
                groups[label] = etree.SubElement(body, "outline", text=label, title=label)
            parent = groups[label]
        name = _xml(source.name)
        attributes = {"type": "rss", "text": name, "title": name, "xmlUrl": _xml(source.url)}
        if source.site:
            attributes["htmlUrl"] = _xml(source.site)
        etree.SubElement(parent, "outline", attributes)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
