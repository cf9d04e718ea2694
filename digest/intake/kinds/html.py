"""HTML listing pages: blog front pages and archives of sites without a usable feed.

Common blog markup (WordPress and other hAtom themes) is recognised by itself; anything
else is read with the CSS selectors of the source's config (item, title, link, summary,
date, author).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urljoin, urlsplit

import lxml.html
from cssselect import SelectorError
from lxml import etree

from digest.common.dates import parse_date
from digest.common.errors import ParseError
from digest.common.models import Document, ParsedItem
from digest.common.sanitize import one_line
from digest.intake.kinds.auto import charset_of
from digest.intake.parsing import Options, Parsed

FEED_TYPES = (
    "application/rss+xml",
    "application/atom+xml",
    "application/feed+json",
    "application/json",
)

# Tried in order; the first that matches anything wins.
ITEM_SELECTORS = ("article", ".hentry", ".h-entry", ".post")
TITLE_SELECTORS = (
    ".entry-title a[rel~=bookmark]", ".entry-title a", ".p-name a", ".entry-title", ".p-name",
    "h1 a", "h2 a", "h3 a", "h1", "h2", "h3",
)  # fmt: skip
LINK_SELECTORS = ("a[rel~=bookmark]", ".u-url", ".more-link")
SUMMARY_SELECTORS = (
    ".entry-content",
    ".entry-summary",
    ".e-content",
    ".p-summary",
    ".summary",
    ".excerpt",
)
DATE_SELECTORS = ("time[datetime]", ".dt-published", ".published", "time")
AUTHOR_SELECTORS = (
    ".author .fn",
    ".author a",
    ".p-author",
    ".byline a",
    "[rel~=author]",
    ".author",
)
# Boilerplate inside excerpts: the "Continue reading" link and screen-reader helpers.
NOISE_SELECTORS = (
    ".more-link",
    ".screen-reader-text",
    ".sharedaddy",
    ".jp-relatedposts",
    "script",
    "style",
)


@dataclass(frozen=True)
class HtmlPage:
    """What a listing page offers: its items, and the feeds it advertises."""

    items: list[ParsedItem]
    feed_links: list[str] = field(default_factory=list)


def parse(document: Document, options: Options) -> Parsed:
    """The registry's entry (``kinds.py``): a document read as a listing page. A page with
    no articles is an error, unless its kind was sniffed and it points to a feed."""
    page = parse_html(document.body, document.content_type, document.url, options.selectors)
    if not page.items and not (options.auto and page.feed_links):
        raise ParseError(
            "no articles found on the page (set selectors for this source: item, title, link, summary, date)"
        )
    return Parsed(page.items, tuple(page.feed_links))


def parse_html(
    body: bytes,
    content_type: str | None,
    base_url: str,
    selectors: Mapping[str, str] | None = None,
) -> HtmlPage:
    """Items on a listing page, with CSS ``selectors`` overriding the built-in guesses."""
    root = _document(body, content_type)
    base = base_url
    base_tag = root.find(".//base[@href]")
    if base_tag is not None:
        base = urljoin(base_url, base_tag.get("href", ""))
    selectors = dict(selectors or {})
    try:
        elements = _select_items(root, selectors.get("item"))
        items = [item for el in elements if (item := _item(el, base, selectors)) is not None]
    except SelectorError as exc:
        raise ParseError(f"invalid CSS selector: {exc}") from exc
    return HtmlPage(items=items, feed_links=advertised_feeds(root, base))


def advertised_feeds(root: lxml.html.HtmlElement, base: str) -> list[str]:
    """Feeds named by ``<link rel="alternate" type="application/rss+xml" href=...>``."""
    found = []
    for link in root.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").split(";")[0].strip().lower()
        href = (link.get("href") or "").strip()
        if "alternate" in rel and kind in FEED_TYPES and href:
            url = urljoin(base, href)
            # A page may point only to feeds on the web, never to a file on our disk.
            if urlsplit(url).scheme.lower() in ("http", "https") and url not in found:
                found.append(url)
    return found


def _document(body: bytes, content_type: str | None) -> lxml.html.HtmlElement:
    charset = charset_of(content_type)
    parser = lxml.html.HTMLParser()
    if charset:
        with contextlib.suppress(LookupError):
            parser = lxml.html.HTMLParser(encoding=charset)
    try:
        return lxml.html.document_fromstring(body, parser=parser)
    except (etree.ParserError, ValueError) as exc:
        raise ParseError(f"not an HTML page: {exc}") from exc


def _select_items(root: lxml.html.HtmlElement, item_selector: str | None) -> list[lxml.html.HtmlElement]:
    for selector in (item_selector,) if item_selector else ITEM_SELECTORS:
        matched = root.cssselect(selector)
        # Nested matches (an <article> inside an <article>) belong to their outer item.
        inside = set(matched)
        outer = [el for el in matched if not any(a in inside for a in el.iterancestors())]
        if outer or item_selector:
            return outer
    return []


def _first(
    element: lxml.html.HtmlElement, configured: str | None, defaults: tuple[str, ...]
) -> lxml.html.HtmlElement | None:
    for selector in (configured,) if configured else defaults:
        found = element.cssselect(selector)
        if found:
            return found[0]
    return None


def _item(element: lxml.html.HtmlElement, base: str, selectors: Mapping[str, str]) -> ParsedItem | None:
    title_el = _first(element, selectors.get("title"), TITLE_SELECTORS)
    title = one_line(title_el.text_content()) if title_el is not None else ""

    link = None
    link_el = _first(element, selectors.get("link"), ())
    candidates = [link_el] if link_el is not None else []
    if title_el is not None:
        candidates.append(title_el if title_el.tag == "a" else title_el.find(".//a[@href]"))
    candidates += [el for sel in LINK_SELECTORS for el in element.cssselect(sel)[:1]]
    for candidate in candidates:
        href = (candidate.get("href") or "").strip() if candidate is not None else ""
        if href and not href.startswith(("#", "javascript:", "mailto:")):
            link = urljoin(base, href)
            break

    summary_el = _first(element, selectors.get("summary"), SUMMARY_SELECTORS)
    content = ""
    if summary_el is not None:
        summary_el = _without_noise(summary_el)
        content = "".join(lxml.html.tostring(child, encoding="unicode") for child in summary_el)
        content = (summary_el.text or "") + content

    date_el = _first(element, selectors.get("date"), DATE_SELECTORS)
    published = None
    if date_el is not None:
        published = parse_date(date_el.get("datetime") or date_el.get("title") or date_el.text_content())

    author_el = _first(element, selectors.get("author"), AUTHOR_SELECTORS)
    author = one_line(author_el.text_content()) if author_el is not None else None

    if not title and not link:
        return None
    return ParsedItem(
        title=title,
        url=link,
        guid=None,
        content_html=content.strip(),
        author=author or None,
        published=published,
        updated=None,
    )


def _without_noise(element: lxml.html.HtmlElement) -> lxml.html.HtmlElement:
    copy = lxml.html.fromstring(lxml.html.tostring(element))
    for selector in NOISE_SELECTORS:
        for noise in cast(list[lxml.html.HtmlElement], copy.cssselect(selector)):
            parent = cast(lxml.html.HtmlElement | None, noise.getparent())
            noise.drop_tree()
            # A paragraph left holding only the "Continue reading" link goes too.
            if (
                parent is not None
                and parent.tag == "p"
                and not parent.text_content().strip()
                and len(parent) == 0
            ):
                parent.drop_tree()
    return copy
