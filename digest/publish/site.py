"""The public site: HTML pages (Jinja2, ``templates/web``), feeds and OPML, rendered from the store.

Shared by the web app (:mod:`digest.web.app`) and ``digest publish DIR`` (static files). Every value
is escaped by the templates; the one exception, an article's body, was sanitised with an
allow-list when it was stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape

from digest.common import query
from digest.common.errors import SearchTimeout
from digest.common.links import web_url
from digest.common.models import Article
from digest.common.resources import bundled
from digest.config import Settings
from digest.grouping.regions import regions
from digest.grouping.themes import taxonomy_for
from digest.publish import feeds
from digest.publish.feeds import FeedSpec
from digest.store import ArticlesStore, Headline, Store

if TYPE_CHECKING:
    from digest.store.contract import ArticlesAndGrouping, ArticlesAndSources

# The site's icon (browsers ask for one; a missing one is an error in their console).
FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    b'<rect width="32" height="32" rx="6" fill="#0b5cad"/>'
    b'<path d="M9 8h7a8 8 0 0 1 0 16H9z" fill="none" stroke="#fff" stroke-width="3"/></svg>\n'
)
# Crawlers keep out of the per-subscriber pages (their links carry tokens) and the endless
# space of searches; everything else is public.
ROBOTS = (
    b"User-agent: *\nDisallow: /confirm/\nDisallow: /unsubscribe/\nDisallow: /preferences/\n"
    b"Disallow: /search\nDisallow: /digests/\n"
)
LATEST = 20
PER_GROUP_PAGE = 100
INDEX_WINDOW = 1000


class Site:
    """Renders every public page and feed of one configuration."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = Environment(
            loader=FileSystemLoader(str(bundled("templates"))),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.base = urlsplit(settings.site.base_url).path.rstrip("/")
        self.names = {"regions": regions(), "themes": taxonomy_for(settings).titles()}
        self.specs = feeds.feed_specs(settings)

    # --- feeds ------------------------------------------------------------------------------

    def feed_articles(self, store: ArticlesStore, spec: FeedSpec, limit: int | None = None) -> list[Article]:
        """The newest articles of a feed (``[site] feed_entries`` of them unless ``limit``)."""
        limit = limit or self.settings.site.feed_entries
        if spec.kind == "search":
            found = store.search(query.parse(spec.slug or ""), limit=limit)
            return sorted(found, key=lambda a: (a.published or a.first_seen, a.first_seen), reverse=True)
        if spec.kind == "region":
            return store.articles(region=spec.slug, limit=limit)
        if spec.kind == "theme":
            return store.articles(theme=spec.slug, limit=limit)
        return store.articles(limit=limit)

    def feed(self, store: ArticlesAndSources, spec: FeedSpec, fmt: str) -> tuple[bytes, list[Article]]:
        """The feed's bytes, and the articles in it (for its Last-Modified)."""
        articles = self.feed_articles(store, spec)
        return feeds.render(spec, fmt, articles, self.settings, store.source_urls()), articles

    def feeds(self, store: ArticlesAndSources) -> Iterator[tuple[FeedSpec, str, bytes]]:
        """Every feed in every format (each group's articles read once for all formats)."""
        urls = store.source_urls()
        for spec in self.specs:
            articles = self.feed_articles(store, spec)
            for fmt in feeds.FORMATS:
                yield spec, fmt, feeds.render(spec, fmt, articles, self.settings, urls)

    def opml(self) -> bytes:
        return feeds.opml(self.settings)

    def spec(self, kind: str, slug: str | None) -> FeedSpec | None:
        return next((s for s in self.specs if s.kind == kind and s.slug == slug), None)

    # --- pages ------------------------------------------------------------------------------

    def render(self, template: str, store_count: int, **values: object) -> str:
        """Any page of ``templates/web`` with the site's feeds advertised."""
        return self._page(template, store_count, [s for s in self.specs if s.kind == "site"], **values)

    def _page(self, template: str, store_count: int, alternates: list[FeedSpec], **values: object) -> str:
        links = [
            {
                "type": feeds.CONTENT_TYPES[fmt].split(";")[0],
                "title": f"{spec.title} ({label})",
                "href": f"{self.base}{spec.path(fmt)}",
            }
            for spec in alternates
            for fmt, label in ((name, output.label) for name, output in feeds.OUTPUTS.items())
        ]
        return self.env.get_template(f"web/{template}").render(
            site=self.settings.site,
            base=self.base,
            names=self.names,
            count=store_count,
            alternates=links,
            **values,
        )

    def index(self, store: ArticlesAndGrouping) -> str:
        recent = store.headlines(limit=INDEX_WINDOW)  # titles and groups: not a thousand texts
        counts = store.group_totals()  # kept as articles come: not a count over them all
        by_region = self._grouped(recent, "regions", {r.slug: r.articles for r in counts.regions})
        by_theme = self._grouped(recent, "themes", {t.slug: t.articles for t in counts.themes})
        groups = [s for s in self.specs if s.kind == "site"] + [
            s for s in self.specs if s.slug in {g["slug"] for g in by_region + by_theme}
        ]
        return self._page(
            "index.html",
            store.count_articles(),
            groups,
            latest=recent[:LATEST],
            by_region=by_region,
            by_theme=by_theme,
        )

    def _grouped(
        self, articles: list[Headline], field: str, counts: dict[str, int]
    ) -> list[dict[str, object]]:
        names = self.names[field]
        out = []
        for slug, name in names.items():
            members = [a for a in articles if slug in getattr(a, field)]
            if members:
                out.append(
                    {"slug": slug, "name": name, "articles": members, "count": counts.get(slug, len(members))}
                )
        return out

    def group(self, store: ArticlesStore, spec: FeedSpec) -> str:
        articles: list[Headline] | list[Article] = (
            store.headlines(
                limit=PER_GROUP_PAGE,
                region=spec.slug if spec.kind == "region" else None,
                theme=spec.slug if spec.kind == "theme" else None,
            )
            if spec.kind in ("region", "theme")  # a list of headlines: no text read
            else self.feed_articles(store, spec, PER_GROUP_PAGE)
        )
        return self._page(
            "group.html",
            store.count_articles(),
            [spec],
            heading=spec.name or spec.title,
            articles=articles,
            prefix=spec.prefix,
        )

    def search_spec(self, found: query.Query) -> FeedSpec:
        """The feed of a search: its query in normal form names it."""
        text = found.text
        return FeedSpec("search", text, f"{self.settings.site.title}: {text}", text)

    def search(self, store: ArticlesStore, text: str) -> tuple[int, str]:
        """The search page for ``text`` (none: the form alone), best match first, with its
        feeds advertised; and its status (400: a query that cannot be run, and why)."""
        site = [s for s in self.specs if s.kind == "site"]
        count = store.count_articles()
        if not text.strip():
            return 200, self._page("search.html", count, site, query="", found=None, spec=None, error=None)
        try:
            parsed = query.parse(text)
            found = store.search(parsed, limit=PER_GROUP_PAGE)
        except (query.QueryError, SearchTimeout) as exc:
            # A store's message names the database: the visitor is told only what to change.
            # (Any other trouble with the database is not the visitor's to fix: it goes on up.)
            shown = (
                str(exc)
                if isinstance(exc, query.QueryError)
                else "this search took too long; try fewer words"
            )
            return 400, self._page("search.html", count, site, query=text, found=None, spec=None, error=shown)
        spec = self.search_spec(parsed)
        return 200, self._page(
            "search.html", count, [spec], query=parsed.text, found=found, spec=spec, error=None
        )

    def article(self, store: ArticlesStore, article: Article) -> str:
        specs = [s for s in self.specs if s.kind == "site"]
        return self._page(
            "article.html", store.count_articles(), specs, article=article, source_url=web_url(article.url)
        )

    def not_found(self, store_count: int, message: str) -> str:
        return self._page(
            "not_found.html", store_count, [s for s in self.specs if s.kind == "site"], message=message
        )

    # --- static -----------------------------------------------------------------------------

    def files(self, store: Store) -> Iterator[tuple[str, bytes]]:
        """Every file of the public site, as (relative path, bytes)."""
        yield "index.html", self.index(store).encode()
        yield "feeds.opml", self.opml()
        yield "favicon.svg", FAVICON
        yield "robots.txt", ROBOTS
        for spec, fmt, body in self.feeds(store):
            yield spec.path(fmt).lstrip("/"), body
        for spec in self.specs:
            if spec.kind != "site":
                yield f"{spec.prefix.lstrip('/')}/index.html", self.group(store, spec).encode()
        for article in store.articles():
            yield f"articles/{article.id}/index.html", self.article(store, article).encode()


def publish_site(settings: Settings, store: Store, folder: Path) -> int:
    """Write the whole public site under ``folder`` as static files; the number written."""
    site = Site(settings)
    written = 0
    for relative, body in site.files(store):
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        written += 1
    return written
