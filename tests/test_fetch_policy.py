"""A remote source must not lead digest to local files or internal addresses.

Reproduces the review's attacks through a real HTTP server on 127.0.0.1. No traffic leaves
loopback: names like ``public.test`` are answered by a resolver injected into the fetcher,
which says 127.0.0.1 is public for them; literal private addresses (169.254.169.254,
10.0.0.1) are refused before any connection is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from digest.common.egress import Resolved, policy_for, refusal, system_resolver
from digest.common.errors import FetchError
from digest.intake.fetch import Fetcher
from digest.intake.pull import pull
from digest.store import Store, open_store

from .helpers import rss, settings_for
from .servers import FeedServer, Reply

FEED = rss([{"title": "Public item", "link": "http://example.org/public", "guid": "p1"}])
SECRET = rss([{"title": "SECRET local item", "link": "http://example.org/secret", "guid": "s1"}])


class TestResolver:
    """Answers for ``*.test`` names: ``public.test`` is 127.0.0.1 "as if it were public";
    ``rebind.test`` is public on its first lookup and loopback afterwards. Anything else
    goes to the system resolver (only loopback names are used)."""

    __test__ = False

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[Resolved]:
        self.calls.append(host)
        if host == "public.test":
            return [Resolved("127.0.0.1")]
        if host == "rebind.test":
            first = self.calls.count(host) == 1
            return [Resolved("127.0.0.1", None if first else "a loopback address")]
        if host == "internal.test":
            return [Resolved("127.0.0.1", "a private address")]
        return system_resolver(host, port)


def _pull(tmp_path: Path, body: str, resolver: TestResolver) -> tuple[list[str], Store]:
    settings = settings_for(tmp_path, body)
    store = open_store(settings.database.path)
    with Fetcher(settings.fetch, resolver=resolver) as fetcher:
        reports = pull(settings, store, fetcher=fetcher)
    return [r.error or "" for r in reports], store


def _titles(store: Store) -> list[str]:
    return [a.title for a in store.articles()]


def test_a_page_cannot_lead_to_a_local_file(tmp_path: Path, server: FeedServer) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_bytes(SECRET)
    page = (
        "<html><head><title>x</title>"
        f'<link rel="alternate" type="application/rss+xml" href="{secret.as_uri()}">'
        "</head><body><p>No articles here.</p></body></html>"
    ).encode()
    server.routes["/page"] = Reply(200, page, {"Content-Type": "text/html"})
    errors, store = _pull(
        tmp_path, f'[[sources]]\nname = "s"\nurl = "{server.url("/page")}"\n', TestResolver()
    )
    with store:
        assert not any("SECRET" in t for t in _titles(store))
        assert store.source_state("s").url == server.url("/page")  # never the file:// URL
    assert errors[0], "a page with no articles and no usable feed link is an error"


def test_the_fetcher_refuses_local_urls_for_a_remote_source(tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_bytes(SECRET)
    remote = policy_for("https://news.example.org/feed")
    with Fetcher() as fetcher:
        for where in (secret.as_uri(), str(secret), str(tmp_path)):
            with pytest.raises(FetchError, match="refused: a remote source may not lead to a local file"):
                fetcher.fetch(where, policy=remote)
        # The operator's own local source still reads files.
        assert fetcher.fetch(str(secret)).documents[0].body == SECRET


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://127.0.0.1:{port}/secret", "a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("http://10.0.0.1/admin", "a private address"),
        ("http://[::1]:{port}/secret", "a loopback address"),
        ("http://[::ffff:127.0.0.1]:{port}/secret", "a loopback address"),
        ("http://0.0.0.0:{port}/secret", "the unspecified address"),
        ("http://localhost:{port}/secret", "a loopback address"),
    ],
)
def test_a_public_source_cannot_redirect_to_internal_addresses(
    tmp_path: Path, server: FeedServer, target: str, reason: str
) -> None:
    port = server.httpd.server_address[1]
    server.routes["/feed"] = Reply(302, b"", {"Location": target.format(port=port)})
    server.routes["/secret"] = Reply(200, SECRET, {"Content-Type": "application/rss+xml"})
    resolver = TestResolver()
    errors, store = _pull(
        tmp_path, f'[[sources]]\nname = "s"\nurl = "http://public.test:{port}/feed"\n', resolver
    )
    with store:
        assert _titles(store) == []
        assert "refused to connect to" in errors[0] and reason in errors[0], errors[0]
        assert store.source_state("s").last_error == errors[0]
    assert server.hits("/secret") == 0


def test_the_operator_can_allow_a_sources_own_private_origin_and_no_more(
    tmp_path: Path, server: FeedServer
) -> None:
    """allow_private lets the configured host and port be a private address (an rss-bridge
    on the LAN), and nothing else: a redirect to another host stays refused."""
    port = server.httpd.server_address[1]
    server.routes["/feed"] = Reply(200, FEED, {"Content-Type": "application/rss+xml"})
    server.routes["/away"] = Reply(302, b"", {"Location": f"http://127.0.0.1:{port}/feed"})
    source = f'[[sources]]\nname = "s"\nurl = "http://internal.test:{port}/feed"\n'
    away = f'[[sources]]\nname = "a"\nurl = "http://internal.test:{port}/away"\n'
    for i, body in enumerate((source + "allow_private = true\n", "[fetch]\nallow_private = true\n" + source)):
        folder = tmp_path / str(i)
        folder.mkdir()
        errors, store = _pull(folder, body, TestResolver())
        with store:
            assert errors == [""] and _titles(store) == ["Public item"]
    (tmp_path / "away").mkdir()
    errors, store = _pull(tmp_path / "away", away + "allow_private = true\n", TestResolver())
    store.close()
    assert "refused to connect to 127.0.0.1: a loopback address" in errors[0]


def test_a_source_configured_at_a_loopback_address_may_use_it(tmp_path: Path, server: FeedServer) -> None:
    server.routes["/feed"] = Reply(302, b"", {"Location": "/moved"})
    server.routes["/moved"] = Reply(200, FEED, {"Content-Type": "application/rss+xml"})
    errors, store = _pull(
        tmp_path, f'[[sources]]\nname = "s"\nurl = "{server.url("/feed")}"\n', TestResolver()
    )
    with store:
        assert errors == [""] and _titles(store) == ["Public item"]


def test_names_are_judged_by_the_address_they_resolve_to_at_connect_time(
    tmp_path: Path, server: FeedServer
) -> None:
    port = server.httpd.server_address[1]
    server.routes["/feed"] = Reply(200, FEED, {"Content-Type": "application/rss+xml"})
    # A name that resolves to a private address is refused, though the URL names no address.
    errors, store = _pull(
        tmp_path, f'[[sources]]\nname = "s"\nurl = "http://internal.test:{port}/feed"\n', TestResolver()
    )
    store.close()
    assert "refused to connect to internal.test (127.0.0.1): a private address" in errors[0]
    # DNS rebinding: public on the first lookup, loopback on the next. Each connection is
    # made to the address just checked, with one lookup per connection, so the second
    # connection (a new pull) is refused.
    resolver = TestResolver()
    settings = settings_for(tmp_path, f'[[sources]]\nname = "r"\nurl = "http://rebind.test:{port}/feed"\n')
    with open_store(settings.database.path) as store:
        with Fetcher(settings.fetch, resolver=resolver) as fetcher:
            [first] = pull(settings, store, fetcher=fetcher)
        assert first.ok and resolver.calls == ["rebind.test"]
        with Fetcher(settings.fetch, resolver=resolver) as fetcher:
            [second] = pull(settings, store, fetcher=fetcher, force=True)
        assert second.error and "a loopback address" in second.error
        assert resolver.calls == ["rebind.test", "rebind.test"]
    assert server.hits("/feed") == 1


def test_a_followed_feed_link_obeys_the_same_policy(tmp_path: Path, server: FeedServer) -> None:
    port = server.httpd.server_address[1]
    page = (
        b'<html><head><link rel="alternate" type="application/rss+xml"'
        b' href="http://169.254.169.254/feed.xml"></head><body></body></html>'
    )
    server.routes["/page"] = Reply(200, page, {"Content-Type": "text/html"})
    errors, store = _pull(
        tmp_path, f'[[sources]]\nname = "s"\nurl = "http://public.test:{port}/page"\n', TestResolver()
    )
    with store:
        assert "a link-local address" in errors[0]
        assert store.source_state("s").url == f"http://public.test:{port}/page"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("100.64.0.1", "a private address"),
        ("198.51.100.7", "a private address"),
        ("fec0::1", "a private address"),
        ("3fff::1", "a private address"),
        ("0.0.0.0", "the unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("240.0.0.1", "a private address"),
        ("::1", "a loopback address"),
        ("fe80::1", "a link-local address"),
        ("fc00::1", "a private address"),
        ("::ffff:10.0.0.1", "a private address (inside ::ffff:a00:1)"),
        ("2002:7f00:1::", "a loopback address (inside 2002:7f00:1::)"),
        ("64:ff9b::a9fe:a9fe", "a link-local address (inside 64:ff9b::a9fe:a9fe)"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_which_addresses_are_public(address: str, expected: str | None) -> None:
    assert refusal(address) == expected


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://localhost:{port}/moved"],
)
def test_that_source_may_use_only_its_own_host_among_private_ones(
    tmp_path: Path, server: FeedServer, target: str
) -> None:
    # A local bridge that passes redirects on must not open the rest of the private network.
    port = server.httpd.server_address[1]
    server.routes["/feed"] = Reply(302, b"", {"Location": target.format(port=port)})
    server.routes["/moved"] = Reply(200, FEED, {"Content-Type": "application/rss+xml"})
    errors, store = _pull(
        tmp_path, f'[[sources]]\nname = "s"\nurl = "{server.url("/feed")}"\n', TestResolver()
    )
    store.close()
    assert "refused to connect to" in errors[0] and server.hits("/moved") == 0


def test_links_in_content_get_the_public_rule_even_from_a_trusted_origin(tmp_path: Path) -> None:
    """Full text follows each item's link: a source on a loopback port (or allowed private)
    is trusted for that port alone, so an item linking to another port of the same host, or
    to another private address, has no page fetched, and nothing of it reaches the feeds."""
    with FeedServer() as feeds, FeedServer() as admin:
        admin.routes["/admin/config"] = Reply(
            200,
            b"<html><body><article><p>SECRET admin token s3cr3t-7f3a, the whole page of it.</p></article></body></html>",
        )
        port = feeds.httpd.server_address[1]
        items = [
            {"title": "Other port", "link": admin.url("/admin/config"), "description": "More..."},
            {
                "title": "Link-local",
                "link": "http://169.254.169.254/latest/meta-data/",
                "description": "More...",
            },
        ]
        feeds.routes["/feed.xml"] = Reply(200, rss(items), {"Content-Type": "application/rss+xml"})
        for n, extra in enumerate(("", "allow_private = true\n")):
            folder = tmp_path / str(n)
            folder.mkdir()
            url = (
                f"http://127.0.0.1:{port}/feed.xml" if not extra else f"http://internal.test:{port}/feed.xml"
            )
            body = f'[[sources]]\nname = "s"\nurl = "{url}"\nfull_text = true\n{extra}'
            errors, store = _pull(folder, body, TestResolver())
            with store:
                assert errors == [""], errors
                texts = [a.summary_text for a in store.articles()]
            assert len(texts) == 2 and not any("SECRET" in text for text in texts)
        assert admin.hits("/admin/config") == 0


def test_a_location_that_does_not_parse_is_the_sources_error(tmp_path: Path, server: FeedServer) -> None:
    server.routes["/feed"] = Reply(302, b"", {"Location": "https:x"})
    errors, store = _pull(
        tmp_path, f'[[sources]]\nname = "s"\nurl = "{server.url("/feed")}"\n', TestResolver()
    )
    with store:
        assert "invalid URL" in errors[0] and "unexpected" not in errors[0]
        assert store.source_state("s").next_fetch is not None  # backed off like any failure


def test_the_environments_proxy_is_used_under_the_same_policy(tmp_path: Path, server: FeedServer) -> None:
    # The test server plays the proxy: it sees absolute URLs. Targets are checked here first.
    server.routes["http://public.test/feed.xml"] = Reply(200, FEED, {"Content-Type": "application/rss+xml"})
    server.routes["http://public.test/moved"] = Reply(302, b"", {"Location": "http://10.0.0.1/secret"})
    settings = settings_for(
        tmp_path,
        '[[sources]]\nname = "ok"\nurl = "http://public.test/feed.xml"\n'
        '[[sources]]\nname = "bad"\nurl = "http://public.test/moved"\n',
    )
    proxies = {"http": server.base, "no": "example.org,.internal.example"}
    with open_store(settings.database.path) as store:
        with Fetcher(settings.fetch, resolver=TestResolver(), proxies=proxies) as fetcher:
            ok, bad = pull(settings, store, fetcher=fetcher)
        assert ok.ok and _titles(store) == ["Public item"]
        assert bad.error and "refused to connect to 10.0.0.1: a private address" in bad.error
    # Both through the proxy (in either order: sources are fetched at once).
    assert sorted(r.path for r in server.requests) == [
        "http://public.test/feed.xml",
        "http://public.test/moved",
    ]


def test_no_proxy_names_bypass_the_proxy() -> None:
    from digest.common.http import _bypasses

    assert _bypasses("feeds.example.org", "example.org") and _bypasses("example.org", ".example.org:8080")
    assert _bypasses("anything", "*") and not _bypasses("badexample.org", "example.org")
    assert not _bypasses("feeds.example.org", "")
