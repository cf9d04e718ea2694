"""The seeds' sample site served as a WordPress site would serve it, from 127.0.0.1: a feed
whose items carry the first paragraph and a "Continue reading" link, and a page for each
post with its whole text (all the seeds hold of it) among navigation, a sidebar, share
buttons and comments. Used by the full-text test and ``benchmarks/fulltext.py``."""

from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .helpers import SEEDS_SOURCE, pulled, rss, settings_for, stored_articles
from .servers import FeedServer, Reply


@dataclass(frozen=True)
class Post:
    title: str
    path: str
    paragraphs: tuple[str, ...]


def seed_posts() -> list[Post]:
    """Each seed article: its title, a local path, and its paragraphs."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(Path(tmp), SEEDS_SOURCE)
        pulled(settings, group=False)
        found = stored_articles(settings)
    posts = []
    for n, article in enumerate(sorted(found, key=lambda a: a.id)):
        slug = urlsplit(article.url or "").path.strip("/").replace("/", "-") or f"post-{n}"
        paragraphs = tuple(p.strip() for p in article.summary_text.split("\n\n") if p.strip())
        posts.append(Post(article.title, f"/{slug}/", paragraphs))
    return posts


def _page(post: Post) -> bytes:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in post.paragraphs)
    return (
        f"<!doctype html><html><head><title>{html.escape(post.title)} | Friends of Socialist China</title></head>"
        '<body><header><nav><a href="/">Home</a> <a href="/about/">About</a> <a href="/join/">Join us</a>'
        ' <a href="/donate/">Donate</a></nav></header>'
        '<aside id="secondary" class="widget-area"><h2 class="widget-title">Recent Posts</h2><ul>'
        '<li><a href="/a/">An older post about trade</a></li><li><a href="/b/">Webinar recording</a></li></ul>'
        '<h2 class="widget-title">Subscribe</h2><form><input name="email"></form></aside>'
        f'<main><article class="post"><h1 class="entry-title">{html.escape(post.title)}</h1>'
        f'<div class="entry-content">{body}</div>'
        '<div class="sharedaddy"><h3>Share this:</h3><a>Facebook</a> <a>X</a> <a>Email</a></div>'
        '</article><div id="comments"><h2>One thought on this post</h2>'
        '<div class="comment-body">Thank you for sharing. Reply</div></div></main>'
        "<footer>© Friends of Socialist China. Proudly powered by WordPress.</footer></body></html>"
    ).encode()


def serve(server: FeedServer, posts: list[Post]) -> str:
    """Put the site on ``server``; the feed's URL."""
    items = []
    for post in posts:
        url = server.url(post.path)
        excerpt = post.paragraphs[0] if post.paragraphs else ""
        more = f'<p><a class="more-link" href="{url}">Continue reading {html.escape(post.title)}</a></p>'
        items.append(
            {
                "title": html.escape(post.title),
                "link": url,
                "guid": url,
                "description": html.escape(f"<p>{html.escape(excerpt)}</p>{more}"),
            }
        )
        server.routes[post.path] = Reply(
            body=_page(post), headers={"Content-Type": "text/html; charset=utf-8"}
        )
    server.routes["/feed/"] = Reply(body=rss(items), headers={"Content-Type": "application/rss+xml"})
    server.routes["/robots.txt"] = Reply(body=b"User-agent: *\nDisallow: /wp-admin/\n")
    return server.url("/feed/")
