"""The web app over real HTTP on 127.0.0.1 (uvicorn in a thread)."""

from __future__ import annotations

import email.utils
import gzip
import html
import time
from collections.abc import Iterator
from pathlib import Path

import feedparser
import httpx
import pytest

from digest.config import Settings
from digest.store import SourceSpec, Store, open_store

from .helpers import SEEDS, SEEDS_SOURCE, pulled, rss, run, settings_for, stored_articles, write_config
from .servers import AppServer, FeedServer, Reply, Serving


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/feed.atom", "application/atom+xml; charset=utf-8"),
        ("/feed.rss", "application/rss+xml; charset=utf-8"),
        ("/feed.json", "application/feed+json; charset=utf-8"),
        ("/feeds.opml", "text/x-opml; charset=utf-8"),
        ("/regions/europe/feed.rss", "application/rss+xml; charset=utf-8"),
        ("/themes/party-relations/feed.json", "application/feed+json; charset=utf-8"),
        ("/regions/southeast-asia/", "text/html; charset=utf-8"),
        ("/healthz", "application/json"),
    ],
)
def test_routes_answer_with_the_right_content_type(
    served_seeds: tuple[AppServer, Settings], client: httpx.Client, path: str, content_type: str
) -> None:
    server, _ = served_seeds
    response = client.get(server.url(path))
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type


def test_feeds_answer_conditional_requests(
    served_seeds: tuple[AppServer, Settings], client: httpx.Client
) -> None:
    server, _ = served_seeds
    first = client.get(server.url("/feed.atom"))
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert "max-age" in first.headers["cache-control"]
    assert client.get(server.url("/feed.atom"), headers={"If-None-Match": etag}).status_code == 304
    assert client.get(server.url("/feed.atom"), headers={"If-Modified-Since": modified}).status_code == 304
    assert client.get(server.url("/feed.atom"), headers={"If-None-Match": 'W/"other"'}).status_code == 200
    assert (
        client.get(
            server.url("/feed.atom"), headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
        ).status_code
        == 200
    )


def test_gzip_and_head(served_seeds: tuple[AppServer, Settings], client: httpx.Client) -> None:
    server, _ = served_seeds
    with httpx.stream("GET", server.url("/feed.rss"), headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
        assert response.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in response.headers["vary"].lower()
    plain = client.get(server.url("/feed.rss"), headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(raw) == plain.content and len(raw) < len(plain.content) / 2
    head = client.head(server.url("/feed.rss"))
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == plain.headers["etag"]


def test_unknown_things_get_a_helpful_404(
    served_seeds: tuple[AppServer, Settings], client: httpx.Client
) -> None:
    server, _ = served_seeds
    for path, words in [
        ("/regions/atlantis/feed.atom", "no region called 'atlantis'"),
        ("/themes/astrology/", "no theme called 'astrology'"),
        ("/articles/nope", "no article with the id 'nope'"),
        ("/feed.xml", "feed.atom, feed.rss or feed.json"),
        ("/no/such/page", "Nothing lives at /no/such/page"),
    ]:
        response = client.get(server.url(path))
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert words in html.unescape(response.text), path
        assert 'href="/regions/europe/"' in response.text  # where to go instead


def test_home_page_lists_groups_and_advertises_feeds(
    served_seeds: tuple[AppServer, Settings], client: httpx.Client
) -> None:
    server, _ = served_seeds
    page = client.get(server.url("/")).text
    assert "<title>China Watch</title>" in page
    assert (
        '<link rel="alternate" type="application/atom+xml" title="China Watch (Atom)" href="/feed.atom">'
        in page
    )
    assert 'href="/regions/southeast-asia/feed.rss"' in page and "By region" in page and "By theme" in page
    newest = feedparser.parse(client.get(server.url("/feed.atom")).content).entries[0].title
    assert html.escape(newest, quote=False) in page


def test_article_page_shows_the_sanitised_article(
    served_seeds: tuple[AppServer, Settings], client: httpx.Client
) -> None:
    server, settings = served_seeds
    article = next(a for a in stored_articles(settings) if a.title == "Xi meets Lao president")
    page = client.get(server.url(f"/articles/{article.id}"))
    assert page.status_code == 200
    assert "<h1>Xi meets Lao president</h1>" in page.text
    assert "<li>Thongloun Sisoulith" in page.text  # the body's list survived sanitising
    assert client.get(server.url(f"/articles/{article.id}/")).status_code == 200


def test_feeds_change_after_a_pull_and_titles_are_escaped(
    server: FeedServer, tmp_path: Path, client: httpx.Client
) -> None:
    server.routes["/f.xml"] = Reply(200, rss([{"title": "First", "link": "https://x.org/1"}]))
    settings = settings_for(tmp_path, f'[[sources]]\nname = "f"\nurl = "{server.url("/f.xml")}"\n')
    pulled(settings)
    with AppServer(settings) as app_server:
        before = client.get(app_server.url("/feed.atom"))
        evil = "&lt;img src=x onerror=alert(1)&gt; Second"
        server.routes["/f.xml"] = Reply(
            200,
            rss([{"title": evil, "link": "https://x.org/2"}, {"title": "First", "link": "https://x.org/1"}]),
        )
        pulled(settings)
        time.sleep(1.1)  # the app looks for changes at most once a second
        after = client.get(app_server.url("/feed.atom"))
        page = client.get(app_server.url("/")).text
    assert after.headers["etag"] != before.headers["etag"]
    assert len(feedparser.parse(after.content).entries) == 2
    assert "<img" not in page and "onerror=alert" not in page


def test_no_open_redirects(served_seeds: tuple[AppServer, Settings], client: httpx.Client) -> None:
    server, _ = served_seeds
    for path in (
        "//evil.example/",
        "//evil.example/%2e%2e",
        "/regions/europe",
        "/\\evil.example",
        "/%2F%2Fevil.example",
    ):
        response = client.get(server.url(path), follow_redirects=False)
        location = response.headers.get("location", "")
        assert "evil.example" not in location, (path, location)
        if response.is_redirect:
            assert location.startswith(server.url("/")) or location.startswith("/"), location


def test_requests_for_unknown_ids_do_not_grow_the_server(tmp_path: Path) -> None:
    config = write_config(tmp_path, SEEDS_SOURCE)
    assert run("--config", str(config), "pull", cwd=tmp_path).returncode == 0
    with Serving(config, tmp_path) as serving, httpx.Client(timeout=10) as client:
        for n in range(200):  # warm up: imports, templates, allocator pools
            client.get(serving.url(f"/articles/{'w' * 8000}{n}"))
        before = serving.memory()
        for n in range(3000):
            answer = client.get(serving.url(f"/articles/{'x' * 8000}{n}"))
            assert answer.status_code == 404
        grown = serving.memory() - before
    # Each 404 kept would hold its 8 KB id twice and a ~10 KB page: 3,000 of them ~ 60 MB.
    assert grown < 12 * 1024 * 1024, f"grew {grown / 1e6:.1f} MB"


def test_the_page_cache_keeps_the_recent_pages_within_its_byte_limit(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, f'[web]\ncache_bytes = 60000\n[[sources]]\nname = "s"\nurl = "{SEEDS}"\n'
    )
    pulled(settings)
    ids = [a.id for a in stored_articles(settings)]
    with AppServer(settings) as server, httpx.Client(timeout=10) as client:
        cache = server.app.state.cache
        for n in range(50):
            assert client.get(server.url(f"/articles/unknown-{n}")).status_code == 404
        assert len(cache) == 0  # unknown ids are never kept
        sizes = []
        for article_id in ids:
            assert client.get(server.url(f"/articles/{article_id}")).status_code == 200
            sizes.append(cache.bytes)
        assert max(sizes) <= 60000 and 0 < len(cache) < len(ids)
        kept = {key[1] for key in cache._entries}
        assert ids[-1] in kept and ids[0] not in kept  # the least recently used went first


def test_a_page_rendered_across_a_commit_is_not_kept(tmp_path: Path) -> None:
    from digest.web.app import Cache, Rendered

    settings = settings_for(tmp_path, "")
    open_store(settings.database.path).close()
    cache = Cache(settings)
    builds: list[int] = []

    def build(store: Store) -> Rendered:
        builds.append(1)
        if len(builds) == 1:  # a pull commits while this page is being rendered
            with open_store(settings.database.path) as other:
                other.put_setting("changed", "yes")
        return Rendered.of(f"page {len(builds)}".encode(), "text/plain")

    assert cache.get(("page",), build).body == b"page 1"  # served to the request that built it...
    assert cache.get(("page",), build).body == b"page 2"  # ...but not kept
    assert cache.get(("page",), build).body == b"page 2" and len(builds) == 2


def test_the_server_answers_only_for_its_own_hosts_with_security_headers_on_every_answer(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path,
        '[site]\nbase_url = "https://news.example.org"\n[web]\nallowed_hosts = ["digest.internal"]\n'
        + SEEDS_SOURCE,
    )
    assert run("--config", str(config), "pull", cwd=tmp_path).returncode == 0
    with Serving(config, tmp_path) as serving, httpx.Client(timeout=10) as client:
        url = serving.url("/regions/europe")
        spoofed = client.get(url, headers={"Host": "evil.example"}, follow_redirects=False)
        assert spoofed.status_code == 400 and "evil.example" not in spoofed.headers.get("location", "")
        for host in ("news.example.org", "digest.internal:8443", f"127.0.0.1:{serving.port}", "localhost"):
            answer = client.get(url, headers={"Host": host}, follow_redirects=False)
            assert answer.status_code == 307, host
            assert answer.headers["location"].endswith("/regions/europe/"), host
            assert "evil" not in answer.headers["location"]
        huge = client.post(
            serving.url("/subscribe"),
            content=b"email=" + b"a" * 200_000,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        for answer in (spoofed, huge, client.get(serving.url("/nowhere"))):
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], answer.status_code
            assert answer.headers["x-content-type-options"] == "nosniff", answer.status_code
        assert huge.status_code == 413


def test_last_modified_moves_when_an_older_dated_article_arrives(
    server: FeedServer, tmp_path: Path, client: httpx.Client
) -> None:
    newer = {"title": "Newer", "link": "https://x.org/new", "pubDate": "Tue, 24 Nov 2026 08:00:00 +0000"}
    older = {"title": "Older", "link": "https://x.org/old", "pubDate": "Mon, 02 Mar 2026 08:00:00 +0000"}
    server.routes["/f.xml"] = Reply(200, rss([newer]))
    settings = settings_for(tmp_path, f'[[sources]]\nname = "f"\nurl = "{server.url("/f.xml")}"\n')
    pulled(settings)
    with AppServer(settings) as app_server:
        before = client.get(app_server.url("/feed.atom"))
        time.sleep(1.1)  # Last-Modified counts whole seconds
        server.routes["/f.xml"] = Reply(200, rss([newer, older]))
        pulled(settings)
        time.sleep(1.1)  # the app looks for changes at most once a second
        # A reader that sends only If-Modified-Since must see the new article.
        after = client.get(
            app_server.url("/feed.atom"), headers={"If-Modified-Since": before.headers["last-modified"]}
        )
    assert after.status_code == 200 and len(feedparser.parse(after.content).entries) == 2
    assert email.utils.parsedate_to_datetime(
        after.headers["last-modified"]
    ) > email.utils.parsedate_to_datetime(before.headers["last-modified"])


def test_searches_and_other_bookkeeping_never_empty_the_page_cache(tmp_path: Path) -> None:
    """A search writes a rate-limit hit; that emptied every cached page and feed at the next
    check, and kept no search page (issue 30). Only what pages show empties the cache."""
    from digest.web.cache import RECHECK

    settings = settings_for(tmp_path, f'[[sources]]\nname = "s"\nurl = "{SEEDS}"\n')
    pulled(settings)
    with AppServer(settings) as server, httpx.Client(base_url=server.url(""), timeout=10) as client:
        entries = server.app.state.cache._entries

        def kept(path: str) -> object:
            return next(value for key, value in entries.items() if path in "".join(key))

        assert client.get("/feed.atom").status_code == 200
        feed = kept("feed")
        for query in ("laos", "mekong", "laos OR mekong", "laos"):
            assert client.get("/search", params={"q": query}).status_code == 200
        time.sleep(RECHECK + 0.3)
        assert client.get("/feed.atom").status_code == 200
        assert kept("feed") is feed  # the same rendering: not built again
        assert client.get("/search", params={"q": "laos"}).status_code == 200
        assert any("laos" in "".join(key) for key in entries)  # the search page is kept too
        with open_store(settings.database.path) as store:  # what pages show changes
            store.sync_sources([SourceSpec("other", "https://other.example/feed", "feed")])
        time.sleep(RECHECK + 0.3)
        assert client.get("/feed.atom").status_code == 200
        assert kept("feed") is not feed
