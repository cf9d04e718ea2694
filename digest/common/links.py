"""The links digest publishes: only http(s) URLs leave as links to elsewhere; an article
without one links to its own page on our site. Used by every output (feeds, pages, email),
so an unsafe link stored by an earlier version is not published either."""

from __future__ import annotations

from urllib.parse import urlsplit

from digest.common.models import Article

WEB_SCHEMES = ("http", "https")


def web_url(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) URL, else None."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in WEB_SCHEMES or not parts.netloc or url != url.strip():
        return None
    return url


def article_page(article: Article, base_url: str) -> str:
    return f"{base_url}/articles/{article.id}"


def article_link(article: Article, base_url: str) -> str:
    """Where a reader goes for an article: its source's web page, or our page of it."""
    return web_url(article.url) or article_page(article, base_url)
