"""Feeds: RSS 0.9x/1.0/2.0, Atom 0.3/1.0 (feedparser) and JSON Feed 1.0/1.1.

feedparser is the reference. Plain UTF-8 RSS 2.0 and Atom 1.0 documents, the common case,
go through fastfeedparser first, which is many times faster; anything it might read
differently (another encoding, xml:base, a DOCTYPE, relative links) goes to feedparser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import fastfeedparser

from digest.common.dates import from_struct, parse_date
from digest.common.errors import ParseError
from digest.common.models import Document, ParsedItem
from digest.common.sanitize import html_to_text, plain_title, text_to_html, title_from_text
from digest.intake.kinds.auto import charset_of, looks_like_json
from digest.intake.parsing import Options, Parsed

JSON_FEED_VERSIONS = ("https://jsonfeed.org/version/1", "https://jsonfeed.org/version/1.1")

_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']", re.I)
_RSS2_ROOT = re.compile(rb"<rss\b[^>]*\bversion\s*=\s*[\"']2\.0[\"']", re.I)
_ATOM1_ROOT = re.compile(rb"<feed\b[^>]*\bxmlns\s*=\s*[\"']http://www\.w3\.org/2005/Atom[\"']")
_PROLOG_RISKY = re.compile(rb"<!DOCTYPE|<!ENTITY", re.I)
_CONTROL_REF = re.compile(rb"&#(?:x0*[0-8]|0*[0-8]);", re.I)
# Searched in the lower-cased body: many times faster than a case-blind search.
_NOT_PERMALINK = re.compile(rb"ispermalink\s*=\s*[\"']false")
# Atom entries whose links are not all rel="alternate", or whose text constructs are plain
# text (Atom's default type): fastfeedparser does not tell these apart the way feedparser does.
_ATOM_ENTRY = re.compile(rb"<entry\b")
_ATOM_OTHER_LINK = re.compile(rb"<link\b(?![^>]*\brel\s*=\s*[\"']alternate[\"'])[^>]*>")
_ATOM_TEXT_CONTENT = re.compile(
    rb"<(?:content|summary)\b(?![^>]*\btype\s*=\s*[\"'](?:html|xhtml)[\"'])[^>]*>"
)
_ROOT_WINDOW = 4096
MAX_ITEMS = 10_000


def parse(document: Document, options: Options) -> Parsed:
    """The registry's entry (``kinds.py``): a document read as a feed."""
    items = parse_feed(
        document.body, document.content_type, document.url, fast=options.fast, max_items=options.max_items
    )
    return Parsed(items)


def parse_feed(
    body: bytes, content_type: str | None, base_url: str, *, fast: bool = True, max_items: int = MAX_ITEMS
) -> list[ParsedItem]:
    """Items of an RSS, Atom or JSON feed, newest as the feed orders them.
    Raises ParseError when the bytes are not a feed, or hold more than ``max_items`` items
    (a cheap count first: parsing a million entries would take minutes)."""
    if looks_like_json(body, content_type):
        return parse_json_feed(body, base_url)  # the registry holds it to max_items
    count = body.count(b"<item") + body.count(b"<entry")
    if count > max_items:
        raise ParseError(f"{count} items is over the limit of {max_items} per feed ([fetch] max_items)")
    if fast and fast_path_eligible(body, content_type):
        items = parse_with_fastfeedparser(body, base_url)
        if items is not None:
            return items
    return parse_with_feedparser(body, content_type, base_url)


def fast_path_eligible(body: bytes, content_type: str | None) -> bool:
    """Whether fastfeedparser can be trusted to read ``body`` as feedparser would."""
    head = body[:_ROOT_WINDOW]
    declared = _XML_DECL.match(head)
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        return False
    charset = charset_of(content_type)
    if charset and charset not in ("utf-8", "utf8"):
        return False
    if not (_RSS2_ROOT.search(head) or _ATOM1_ROOT.search(head)):
        return False
    # Plain substring tests first: this runs over every byte of every feed.
    if _PROLOG_RISKY.search(head) or b"xml:base" in body:
        return False
    if b"&#" in body and _CONTROL_REF.search(body):
        return False
    if _ATOM1_ROOT.search(head):
        entry = _ATOM_ENTRY.search(body)
        entries = body[entry.start() :] if entry else b""
        if _ATOM_OTHER_LINK.search(entries) or _ATOM_TEXT_CONTENT.search(entries):
            return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def parse_with_fastfeedparser(body: bytes, base_url: str) -> list[ParsedItem] | None:
    try:
        parsed = fastfeedparser.parse(body, include_tags=False, include_media=False, include_enclosures=False)
    except Exception:  # any failure here just means: ask the reference parser
        return None
    entries = parsed.get("entries", [])
    if not entries:
        return None  # let the reference parser decide whether this is an empty feed or none
    # An item with a non-permalink GUID and no <link>: fastfeedparser takes the GUID as the
    # link, feedparser (rightly) does not.
    not_permalink = bool(_NOT_PERMALINK.search(body.lower()))
    items = []
    for entry in entries:
        link = entry.get("link") or None
        guid = entry.get("id") or None
        # feedparser resolves relative links and permalink GUIDs against the feed's URL, and
        # takes a permalink GUID as the link when there is none: leave those cases to it.
        if link is None or not _absolute(link) or (guid is not None and ":" not in guid):
            return None
        if not_permalink and link == guid:
            return None
        contents = entry.get("content") or []
        html_content = next((c.get("value") for c in contents if c.get("value")), None)
        content = html_content or entry.get("description") or ""
        published = parse_date(entry.get("published")) or parse_date(entry.get("updated"))
        items.append(
            _item(
                title=entry.get("title") or "",
                url=link,
                guid=guid,
                content=content,
                author=entry.get("author") or None,
                published=published,
                updated=parse_date(entry.get("updated")),
            )
        )
    return items


def parse_with_feedparser(body: bytes, content_type: str | None, base_url: str) -> list[ParsedItem]:
    """Items read by feedparser, the reference for every RSS and Atom dialect."""
    import feedparser  # here: most feeds take the fast path, and feedparser is slow to import

    headers = {"content-location": base_url, "content-type": content_type or "application/xml"}
    # Sanitising is done once, later, for every kind of source alike.
    parsed = feedparser.parse(body, response_headers=headers, sanitize_html=False, resolve_relative_uris=True)
    if not parsed.get("version") and not parsed.entries:
        reason = parsed.get("bozo_exception")
        detail = f": {_one_line(str(reason))}" if reason else ""
        raise ParseError(f"not an RSS or Atom feed{detail}")
    return [_from_feedparser(entry, base_url) for entry in parsed.entries]


def _from_feedparser(entry: dict[str, Any], base_url: str) -> ParsedItem:
    contents = entry.get("content") or []
    html_parts = [c for c in contents if "html" in (c.get("type") or "")]
    chosen = (html_parts or contents or [None])[0]
    if chosen is not None and chosen.get("value"):
        content = _as_html(chosen.get("value", ""), chosen.get("type"))
    else:
        detail = entry.get("summary_detail") or {}
        content = _as_html(entry.get("summary") or "", detail.get("type"))
    link = entry.get("link") or _first_link(entry.get("links") or [])
    # dict.get: FeedParserDict.get would map a missing published date to the updated one, and warn.
    published = from_struct(dict.get(entry, "published_parsed")) or from_struct(
        dict.get(entry, "created_parsed")
    )
    updated = from_struct(dict.get(entry, "updated_parsed"))
    return _item(
        title=entry.get("title") or "",
        url=_join(base_url, link) if link else None,
        guid=entry.get("id") or None,
        content=content,
        author=entry.get("author") or None,
        published=published or updated,
        updated=updated,
    )


def parse_json_feed(body: bytes, base_url: str) -> list[ParsedItem]:
    """Items of a JSON Feed (1.0 or 1.1)."""
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(f"not a JSON Feed: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise ParseError("not a JSON Feed: no 'items' list")
    version = data.get("version")
    if version not in JSON_FEED_VERSIONS:
        raise ParseError(
            f"not a JSON Feed: version {version!r} is not one of {', '.join(JSON_FEED_VERSIONS)}"
        )
    home = data.get("home_page_url")
    base = _join(base_url, home) if isinstance(home, str) else base_url
    feed_author = _json_author(data)
    items = []
    for raw in data["items"]:
        if not isinstance(raw, dict):
            continue
        url = _text(raw.get("url")) or _text(raw.get("external_url"))
        html_body = _text(raw.get("content_html"))
        text_body = _text(raw.get("content_text")) or _text(raw.get("summary"))
        content = html_body or (text_to_html(text_body) if text_body else "")
        items.append(
            _item(
                title=_text(raw.get("title")) or "",
                url=_join(base, url) if url else None,
                guid=str(raw["id"]) if raw.get("id") not in (None, "") else None,
                content=content,
                author=_json_author(raw) or feed_author,
                published=parse_date(_text(raw.get("date_published"))),
                updated=parse_date(_text(raw.get("date_modified"))),
            )
        )
    return items


def _item(
    *,
    title: str,
    url: str | None,
    guid: str | None,
    content: str,
    author: str | None,
    published: Any,
    updated: Any,
) -> ParsedItem:
    clean_title = plain_title(title)
    if not clean_title:
        clean_title = title_from_text(html_to_text(content)) or (url or "")
    return ParsedItem(
        title=clean_title,
        url=url.strip() if url else None,
        guid=guid.strip() if guid else None,
        content_html=content,
        author=plain_title(author) if author else None,
        published=published,
        updated=updated,
    )


def _as_html(value: str, kind: str | None) -> str:
    return text_to_html(value) if kind == "text/plain" else value


def _first_link(links: Iterable[Mapping[str, Any]]) -> str | None:
    for link in links:
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return str(link["href"])
    return None


def _json_author(data: Mapping[str, Any]) -> str | None:
    authors = data.get("authors")
    if isinstance(authors, list) and authors and isinstance(authors[0], dict):
        return _text(authors[0].get("name"))
    author = data.get("author")
    return _text(author.get("name")) if isinstance(author, dict) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _absolute(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False  # a malformed link: the reference parser's path keeps it for ingestion to judge
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _join(base: str, link: str) -> str:
    """``link`` resolved against ``base``; a link that does not parse is passed on as it is,
    for ingestion to skip that one item (never the whole feed)."""
    try:
        return urljoin(base, link)
    except ValueError:
        return link


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]
