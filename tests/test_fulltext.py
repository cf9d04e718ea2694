"""Full text for excerpt-only sources: a WordPress-like site served from 127.0.0.1 (a feed
of excerpts with more-links; article pages with navigation, sidebars, share buttons and
comments). Stored articles hold the post's text without the chrome; a page that 404s,
times out, or robots.txt forbids keeps its excerpt; a host gets at most [fetch] per_host
requests at once; a re-pull fetches no page again."""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path

import pytest

from digest.intake.pull import pull
from digest.store import open_store

from .helpers import pulled, rss, settings_for, stored_articles
from .servers import FeedServer, Reply, Seen

POSTS = {
    "laos-friendship": (
        "China and Laos designate 2026 as friendship year",
        [
            "Laos and China agreed on Monday to designate 2026 as a year of friendship, the foreign"
            " ministries of both countries said in a joint statement issued in Vientiane.",
            "The two sides will hold cultural events throughout the year, including exhibitions and"
            " exchanges of students between universities in Kunming and Luang Prabang.",
            "The railway between the two capitals carried a record number of passengers last year,"
            " and both governments pledged to extend its freight services to Thailand.",
        ],
    ),
    "uruguay-ties": (
        "China and Uruguay pledge closer cooperation",
        [
            "Uruguay's president met Chinese officials in Beijing to discuss a free trade agreement"
            " that Montevideo has sought for years despite objections from its Mercosur partners.",
            "Beef and soybean exports dominate the trade between the two countries, and Chinese"
            " companies are building a new deep-water port near Montevideo.",
        ],
    ),
    "missing": ("A post whose page is gone", []),
    "slow": ("A post whose page never finishes", []),
    "members": ("A post robots.txt keeps us from", []),
}
CHROME = (
    '<header><nav class="menu"><a href="/">Home</a> <a href="/about/">About us</a>'
    ' <a href="/contact/">Contact</a></nav></header>'
    '<aside class="sidebar"><h3>Recent posts</h3><ul><li><a href="/x/">An older post on trade</a></li>'
    '<li><a href="/y/">Subscribe to our newsletter</a></li></ul></aside>'
)


def _page(slug: str) -> bytes:
    title, paragraphs = POSTS[slug]
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<!doctype html><html><head><title>{title} | China Watch</title></head><body>{CHROME}"
        f'<main><article class="post"><h1 class="entry-title">{title}</h1>'
        f'<div class="entry-content">{body}</div>'
        '<div class="sharedaddy"><h3>Share this:</h3><a href="#">Share on Facebook</a> <a href="#">Share on X</a></div>'
        '</article><section id="comments"><h2>2 thoughts on this post</h2>'
        '<div class="comment">Great analysis, thank you! Reply</div>'
        '<div class="comment">I disagree with the second point. Reply</div></section></main>'
        "<footer>© 2026 China Watch. Powered by WordPress.</footer></body></html>"
    ).encode()


def _feed(server: FeedServer) -> bytes:
    items = []
    for slug, (title, paragraphs) in POSTS.items():
        path = f"/members/{slug}/" if slug == "members" else f"/2026/{slug}/"
        excerpt = (paragraphs[0] if paragraphs else "A short excerpt of this post")[:120]
        items.append(
            {
                "title": title,
                "link": server.url(path),
                "guid": server.url(path),
                "description": html.escape(
                    f'<p>{excerpt} […]</p><p><a class="more-link" href="{server.url(path)}">Continue reading →</a></p>'
                ),
            }
        )
    return rss(items)


def test_excerpts_become_full_posts_politely(tmp_path: Path, server: FeedServer) -> None:
    in_flight, most = 0, 0
    lock = threading.Lock()

    def counted(reply: Reply, seconds: float = 0.3):  # type: ignore[no-untyped-def]
        def answer(seen: Seen) -> Reply:
            nonlocal in_flight, most
            with lock:
                in_flight += 1
                most = max(most, in_flight)
            time.sleep(seconds)  # long enough for requests to overlap, were more allowed
            with lock:
                in_flight -= 1
            return reply

        return answer

    server.routes["/feed.xml"] = Reply(body=_feed(server), headers={"Content-Type": "application/rss+xml"})
    server.routes["/robots.txt"] = Reply(body=b"User-agent: *\nDisallow: /members/\n")
    for slug in ("laos-friendship", "uruguay-ties"):
        server.routes[f"/2026/{slug}/"] = counted(
            Reply(body=_page(slug), headers={"Content-Type": "text/html"})
        )
    server.routes["/2026/missing/"] = counted(Reply(404, b"not found"))
    server.routes["/2026/slow/"] = counted(Reply(body=_page("laos-friendship")), 2.5)  # past the timeout
    settings = settings_for(
        tmp_path,
        '[fetch]\ntimeout = "1s"\ndeadline = "2s"\nper_host = 2\npage_delay = 0.1\n'
        f'[[sources]]\nname = "blog"\nurl = "{server.url("/feed.xml")}"\nfull_text = true\n',
    )
    [report] = pulled(settings).values()
    assert report.new == 5, report.summary()
    by_title = {a.title: a for a in stored_articles(settings)}
    laos = by_title["China and Laos designate 2026 as friendship year"]
    for paragraph in POSTS["laos-friendship"][1]:
        assert paragraph in laos.summary_text
    for chrome in (
        "Recent posts",
        "About us",
        "Share on",
        "Great analysis",
        "Powered by WordPress",
        "Continue reading",
    ):
        assert chrome not in laos.summary_text, chrome
    assert laos.summary_html.startswith("<p>") and "<h3>" not in laos.summary_html
    assert "Beef and soybean" in by_title["China and Uruguay pledge closer cooperation"].summary_text
    for kept in (
        "A post whose page is gone",
        "A post whose page never finishes",
        "A post robots.txt keeps us from",
    ):
        assert "A short excerpt of this post" in by_title[kept].summary_text, kept
    said = " | ".join(report.warnings)
    assert "404" in said and "robots.txt does not allow it" in said and said.count("kept the excerpt") == 3
    assert server.hits("/members/members/") == 0  # robots.txt honoured: never asked for
    assert server.hits("/robots.txt") == 1  # read once a pull
    assert most == 2  # per_host requests at once, and no more

    # A re-pull of the same feed fetches no page again.
    before = {path: server.hits(path) for path in ("/2026/laos-friendship/", "/2026/uruguay-ties/")}
    [again] = pulled(settings, force=True).values()
    assert again.new == 0 and not again.warnings
    assert (
        {path: server.hits(path) for path in before}
        == before
        == {"/2026/laos-friendship/": 1, "/2026/uruguay-ties/": 1}
    )


def test_the_seeds_served_as_wordpress_keep_their_full_posts(tmp_path: Path, server: FeedServer) -> None:
    from .wordpress_site import seed_posts, serve

    posts = seed_posts()
    assert len(posts) == 40 and sum(len(p.paragraphs) > 1 for p in posts) >= 30
    feed = serve(server, posts)
    stored = {}
    for full in (False, True):
        folder = tmp_path / f"full-{full}"
        folder.mkdir()
        settings = settings_for(
            folder,
            "[fetch]\npage_delay = 0.01\n"
            f'[[sources]]\nname = "fosc"\nurl = "{feed}"\nfull_text = {str(full).lower()}\n',
        )
        [report] = pulled(settings).values()
        assert report.new == 40 and not report.warnings, report.warnings
        stored[full] = {a.title: a for a in stored_articles(settings)}
    for post in posts:
        excerpt, whole = stored[False][post.title], stored[True][post.title]
        assert excerpt.summary_text.strip() == post.paragraphs[0]  # the feed alone: one paragraph
        for paragraph in post.paragraphs:
            assert paragraph in whole.summary_text  # every paragraph of the post
        for chrome in (
            "Recent Posts",
            "Join us",
            "Share this",
            "Thank you for sharing",
            "powered by WordPress",
        ):
            assert chrome not in whole.summary_text


def test_a_changed_item_asks_for_its_page_conditionally(tmp_path: Path, server: FeedServer) -> None:
    asked: list[str | None] = []

    def page(seen: Seen) -> Reply:
        asked.append(seen.headers.get("if-none-match"))
        if seen.headers.get("if-none-match") == '"v1"':
            return Reply(304)
        return Reply(body=_page("laos-friendship"), headers={"Content-Type": "text/html", "ETag": '"v1"'})

    url = server.url("/2026/laos-friendship/")

    def feed(excerpt: str) -> bytes:
        more = f'<p><a class="more-link" href="{url}">Continue reading</a></p>'
        return rss([{"title": "China and Laos designate 2026 as friendship year", "link": url, "guid": url,
                     "description": html.escape(f"<p>{excerpt}</p>{more}")}])  # fmt: skip

    server.routes["/feed.xml"] = Reply(body=feed("Laos and China agreed on Monday"))
    server.routes["/2026/laos-friendship/"] = page
    settings = settings_for(
        tmp_path, f'[[sources]]\nname = "blog"\nurl = "{server.url("/feed.xml")}"\nfull_text = true\n'
    )
    with open_store(settings.database.path) as store:
        pull(settings, store)
        server.routes["/feed.xml"] = Reply(body=feed("Laos and China agreed on Monday (updated)"))
        [report] = pull(settings, store, force=True)
        [article] = store.articles()
    assert report.updated == 1 and asked == [None, '"v1"']  # the second time, conditionally
    assert POSTS["laos-friendship"][1][2] in article.summary_text  # 304: the full text stands


def test_a_pull_fetches_a_bounded_number_of_pages_newest_first(
    tmp_path: Path, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.intake import fulltext

    from .wordpress_site import seed_posts, serve

    monkeypatch.setattr(fulltext, "MAX_PAGES", 5)
    feed = serve(server, seed_posts())
    settings = settings_for(
        tmp_path,
        f'[fetch]\npage_delay = 0.01\n[[sources]]\nname = "fosc"\nurl = "{feed}"\nfull_text = true\n',
    )
    [report] = pulled(settings).values()
    assert report.new == 40  # nothing is lost: the rest keep their excerpt
    pages = sum(server.hits(path) for path in server.routes if path not in ("/feed/", "/robots.txt"))
    assert pages == 5
    assert any("35 older items kept their excerpt" in w for w in report.warnings), report.warnings


def test_what_the_rules_dropped_is_not_fetched_again_until_the_rule_goes(
    tmp_path: Path, server: FeedServer
) -> None:
    from .wordpress_site import seed_posts, serve

    feed = serve(server, seed_posts())
    config = f'[fetch]\npage_delay = 0.01\n[[sources]]\nname = "fosc"\nurl = "{feed}"\nfull_text = true\n'

    def pages() -> int:
        return sum(server.hits(path) for path in server.routes if path not in ("/feed/", "/robots.txt"))

    settings = settings_for(tmp_path, config + 'drop = ["Laos"]\n')
    with open_store(settings.database.path) as store:
        [first] = pull(settings, store)
        assert first.dropped > 0 and pages() == 40  # judged on the full text: every page once
        pull(settings, store, force=True)
        assert pages() == 40  # the dropped are remembered: their pages are not fetched again
    settings = settings_for(tmp_path, config)  # the rule goes
    with open_store(settings.database.path) as store:
        [back] = pull(settings, store, force=True)
        assert back.new == first.dropped and pages() == 40 + first.dropped
        assert all(len(a.summary_text.split()) > 60 for a in store.articles() if "Laos" in a.title)


def test_each_host_a_redirect_leads_to_is_asked_by_its_own_robots_txt(tmp_path: Path) -> None:
    """An article page that redirects to another host: that host's robots.txt is read and
    obeyed before its page is asked for, as the first host's was."""
    from digest.common.egress import Resolved
    from digest.intake.fetch import Fetcher

    def public(host: str, port: int) -> list[Resolved]:  # *.test: loopback, judged public here
        return [Resolved("127.0.0.1")]

    with FeedServer() as blog, FeedServer() as other:
        here, there = (
            f"http://{name}.test:{s.httpd.server_address[1]}"
            for name, s in (("blog", blog), ("other", other))
        )
        item = {
            "title": "A post that moved away",
            "link": f"{here}/2026/moved/",
            "guid": "moved",
            "description": "A short excerpt of this post […]",
        }
        blog.routes["/feed.xml"] = Reply(body=rss([item]), headers={"Content-Type": "application/rss+xml"})
        blog.routes["/robots.txt"] = Reply(body=b"User-agent: *\nAllow: /\n")
        blog.routes["/2026/moved/"] = Reply(302, b"", {"Location": f"{there}/private/moved/"})
        other.routes["/robots.txt"] = Reply(body=b"User-agent: *\nDisallow: /private/\n")
        other.routes["/private/moved/"] = Reply(
            body=_page("laos-friendship"), headers={"Content-Type": "text/html"}
        )
        settings = settings_for(
            tmp_path, f'[[sources]]\nname = "blog"\nurl = "{here}/feed.xml"\nfull_text = true\n'
        )
        with open_store(settings.database.path) as store, Fetcher(settings.fetch, resolver=public) as fetcher:
            [report] = pull(settings, store, fetcher=fetcher)
            [article] = store.articles()
        assert "robots.txt does not allow it" in " | ".join(report.warnings), report.warnings
        assert "A short excerpt of this post" in article.summary_text
        assert other.hits("/robots.txt") == 1 and other.hits("/private/moved/") == 0
