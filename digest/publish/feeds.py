"""Feeds: Atom 1.0 and RSS 2.0 (feedgen) and JSON Feed 1.1, for the site and each region and theme.

Pure rendering: a :class:`FeedSpec` and its articles in, bytes out. An article's entry id is
a ``tag:`` URI built from the site's host and the article's own id and first-seen date, so
it is the same in every feed and every format, build after build.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, urlsplit

from feedgen.feed import FeedGenerator
from lxml import etree

from digest import __version__
from digest.common import redact
from digest.common.links import article_link, web_url
from digest.common.models import Article
from digest.config import Settings
from digest.grouping.regions import regions
from digest.grouping.themes import taxonomy_for

ATOM_NS = "http://www.w3.org/2005/Atom"
GENERATOR = "digest"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SOURCE_TAG_DATE = "2026"  # in sources' tag: ids (RFC 4151); fixed, so the ids never change


@dataclass(frozen=True)
class FeedSpec:
    """One feed: the whole site (``kind == "site"``), one region or theme, or one search
    (``kind == "search"``, its query in normal form as the slug)."""

    kind: str  # site | region | theme | search
    slug: str | None
    title: str
    name: str = ""  # the region's or theme's own name ("Europe"); empty for the site

    @property
    def prefix(self) -> str:
        """The feed's folder in URLs: "" for the site, "/regions/east-asia" for a region."""
        return "" if self.kind == "site" else f"/{self.kind}s/{self.slug}"

    def path(self, fmt: str) -> str:
        if self.kind == "search":
            return f"/search.{fmt}?q={quote_plus(self.slug or '')}"
        return f"{self.prefix}/feed.{fmt}"

    def page_path(self) -> str:
        if self.kind == "search":
            return f"/search?q={quote_plus(self.slug or '')}"
        return f"{self.prefix}/" if self.prefix else "/"


def feed_specs(settings: Settings) -> list[FeedSpec]:
    """Every feed the site publishes: the site, each region, each theme."""
    site = settings.site.title
    specs = [FeedSpec("site", None, site)]
    specs += [FeedSpec("region", slug, f"{site}: {name}", name) for slug, name in regions().items()]
    specs += [
        FeedSpec("theme", slug, f"{site}: {name}", name)
        for slug, name in taxonomy_for(settings).titles().items()
    ]
    return specs


def entry_id(article: Article, base_url: str) -> str:
    """The article's id in every feed: ``tag:HOST,DATE:articles/ID`` (RFC 4151)."""
    host = urlsplit(base_url).hostname or "localhost"
    return f"tag:{host},{article.first_seen:%Y-%m-%d}:articles/{article.id}"


def feed_updated(articles: Sequence[Article]) -> datetime:
    """The feed's ``<updated>``: its newest entry's update, never the build time."""
    return max((a.updated for a in articles), default=EPOCH)


def content_changed(articles: Sequence[Article]) -> datetime:
    """When the feed's content last changed (its Last-Modified): an entry was stored or
    updated. An article dated last year but found today changes the feed today."""
    return max((max(a.first_seen, a.updated) for a in articles), default=EPOCH)


def render(
    spec: FeedSpec,
    fmt: str,
    articles: Sequence[Article],
    settings: Settings,
    source_urls: Mapping[str, str] | None = None,
) -> bytes:
    """The feed ``spec`` in format ``fmt`` (one of OUTPUTS) with these articles, newest first."""
    return OUTPUTS[fmt].render(spec, articles, settings, source_urls or {})


def _names(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    return regions(), taxonomy_for(settings).titles()


def _xml_feed(
    spec: FeedSpec, fmt: str, articles: Sequence[Article], settings: Settings, source_urls: Mapping[str, str]
) -> bytes:
    base = settings.site.base_url
    region_names, theme_names = _names(settings)
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    fg.id(f"{base}{spec.path('atom')}")
    fg.title(spec.title)
    fg.link(href=f"{base}{spec.path(fmt)}", rel="self", type=CONTENT_TYPES[fmt].split(";")[0])
    fg.link(href=f"{base}{spec.page_path()}", rel="alternate", type="text/html")
    hub = settings.site.websub_hub
    if hub:  # WebSub: readers subscribe at the hub, which we ping after each pull
        fg.link(href=hub, rel="hub")
    fg.description(_description(spec, settings))
    fg.generator(GENERATOR, version=__version__)
    if fmt == "atom":
        # RFC 4287 §4.1.1: entries without an author of their own take the feed's.
        fg.author(name=settings.site.author or settings.site.title)
    fg.updated(feed_updated(articles))
    fg.language("en")
    if fmt == "rss":
        fg.lastBuildDate(feed_updated(articles))
    # feedgen prepends entries by default: add oldest first so the newest ends up on top.
    for article in reversed(articles):
        entry = fg.add_entry()
        entry.id(entry_id(article, base))
        entry.guid(entry_id(article, base), permalink=False)
        entry.title(article.title)
        entry.link(href=article_link(article, base), rel="alternate")
        entry.published(article.published or article.first_seen)
        entry.updated(article.updated)
        if article.summary_html:
            entry.summary(article.summary_html, type="html")
        if article.author:
            if fmt == "rss":
                entry.dc.dc_creator(article.author)
            else:
                entry.author(name=article.author)
        for slug in article.regions:
            entry.category(term=slug, label=region_names.get(slug, slug), scheme=f"{base}/regions/")
        for slug in article.themes:
            entry.category(term=slug, label=theme_names.get(slug, slug), scheme=f"{base}/themes/")
        url = _public(source_urls.get(article.source))
        if fmt == "rss" and url:
            entry.source(url=url, title=article.source)
    if fmt == "rss":
        rss = bytes(fg.rss_str(pretty=False))
        return _with_rss_hub(rss, hub) if hub else rss  # feedgen writes only rel="self" in RSS
    return _with_atom_sources(bytes(fg.atom_str(pretty=False)), articles, base, source_urls)


def _with_atom_sources(
    xml: bytes, articles: Sequence[Article], base: str, source_urls: Mapping[str, str]
) -> bytes:
    """Add ``<source>`` (where an entry came from: an id for the source, its name, and when
    this entry from it last changed) to Atom entries: feedgen writes it for RSS only."""
    root = etree.fromstring(xml)
    by_id = {entry_id(a, base): a for a in articles}
    host = urlsplit(base).hostname or "localhost"
    for entry in root.iterfind(f"{{{ATOM_NS}}}entry"):
        article = by_id[entry.findtext(f"{{{ATOM_NS}}}id", "")]
        source = etree.SubElement(entry, f"{{{ATOM_NS}}}source")
        source_id = f"tag:{host},{SOURCE_TAG_DATE}:sources/{article.source}"
        etree.SubElement(source, f"{{{ATOM_NS}}}id").text = source_id
        etree.SubElement(source, f"{{{ATOM_NS}}}title").text = article.source
        etree.SubElement(source, f"{{{ATOM_NS}}}updated").text = article.updated.isoformat()
        url = _public(source_urls.get(article.source))
        if url:
            etree.SubElement(source, f"{{{ATOM_NS}}}link", rel="self", href=url)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _with_rss_hub(document: bytes, hub: str) -> bytes:
    """An RSS feed with ``<atom:link rel="hub">`` beside its ``rel="self"``."""
    root = etree.fromstring(document)
    channel = root.find("channel")
    assert channel is not None
    etree.SubElement(channel, f"{{{ATOM_NS}}}link", href=hub, rel="hub")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _public(url: str | None) -> str | None:
    """A source's URL as feeds may show it: a web URL, without credentials or query."""
    return redact.url(url, mark=False) if url and web_url(url) else None


def _json_feed(spec: FeedSpec, articles: Sequence[Article], settings: Settings) -> bytes:
    base = settings.site.base_url
    region_names, theme_names = _names(settings)
    items: list[dict[str, Any]] = []
    for article in articles:
        item: dict[str, Any] = {
            "id": entry_id(article, base),
            "url": article_link(article, base),
            "title": article.title,
            "content_html": article.summary_html or "",
            "summary": article.summary_text[:500],
            "date_published": (article.published or article.first_seen).isoformat(),
            "date_modified": article.updated.isoformat(),
            "tags": [region_names.get(s, s) for s in article.regions]
            + [theme_names.get(s, s) for s in article.themes],
            "_digest": {
                "source": article.source,
                "regions": list(article.regions),
                "themes": list(article.themes),
            },
        }
        if article.author:
            item["authors"] = [{"name": article.author}]
        if web_url(article.url):
            item["external_url"] = article.url
        items.append(item)
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": spec.title,
        "home_page_url": f"{base}{spec.page_path()}",
        "feed_url": f"{base}{spec.path('json')}",
        "description": _description(spec, settings),
        "language": "en",
        "items": items,
    }
    if settings.site.websub_hub:
        feed["hubs"] = [{"type": "WebSub", "url": settings.site.websub_hub}]
    return json.dumps(feed, ensure_ascii=False, indent=1).encode()


def _description(spec: FeedSpec, settings: Settings) -> str:
    if spec.kind == "search":
        return f"The newest articles collected by {settings.site.title} matching {spec.slug}"
    about = f": {spec.name}" if spec.name else ""
    return f"The newest articles collected by {settings.site.title}{about}"


Renderer = Callable[[FeedSpec, Sequence[Article], Settings, Mapping[str, str]], bytes]


@dataclass(frozen=True)
class Output:
    """One feed format: what the web answers with it, what pages call it, how to render it."""

    content_type: str
    label: str
    render: Renderer


# The feed formats, in the order pages offer them: a new format is one entry here.
OUTPUTS: dict[str, Output] = {
    "atom": Output(
        "application/atom+xml; charset=utf-8", "Atom", lambda sp, a, st, u: _xml_feed(sp, "atom", a, st, u)
    ),
    "rss": Output(
        "application/rss+xml; charset=utf-8", "RSS", lambda sp, a, st, u: _xml_feed(sp, "rss", a, st, u)
    ),
    "json": Output(
        "application/feed+json; charset=utf-8", "JSON Feed", lambda sp, a, st, u: _json_feed(sp, a, st)
    ),
}
FORMATS = tuple(OUTPUTS)
CONTENT_TYPES = {name: output.content_type for name, output in OUTPUTS.items()}


def opml(settings: Settings, fmt: str = "atom") -> bytes:
    """Every feed as an OPML 2.0 outline list, for importing into a reader."""
    base = settings.site.base_url
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = f"{settings.site.title} feeds"
    body = etree.SubElement(root, "body")
    groups = {"site": body}
    for kind, label in (("region", "Regions"), ("theme", "Themes")):
        groups[kind] = etree.SubElement(body, "outline", text=label, title=label)
    for spec in feed_specs(settings):
        etree.SubElement(
            groups[spec.kind],
            "outline",
            type="rss",
            text=spec.title,
            title=spec.title,
            xmlUrl=f"{base}{spec.path(fmt)}",
            htmlUrl=f"{base}{spec.page_path()}",
        )
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
