"""What browsers and crawlers ask of every site beyond its pages: an icon, robots.txt, a
description of each page (Lighthouse's best-practices and SEO audits), on the served site
and in the static one."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import httpx

from digest.config import Settings
from digest.publish.site import publish_site
from digest.store import open_store
from digest.subscribers.lifecycle import add, token
from digest.subscribers.tokens import secret_for

from .servers import AppServer


def _description(html: str) -> str:
    found = re.search(r'<meta name="description" content="([^"]*)">', html)
    assert found, "no meta description"
    return found.group(1)


def test_the_icon_robots_and_descriptions_are_served(served_seeds: tuple[AppServer, Settings]) -> None:
    server, settings = served_seeds
    for path in ("/favicon.ico", "/favicon.svg"):  # browsers ask for /favicon.ico unbidden
        icon = httpx.get(server.url(path))
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
        assert icon.content.startswith(b"<svg") and icon.headers["x-content-type-options"] == "nosniff"
    robots = httpx.get(server.url("/robots.txt"))
    assert robots.status_code == 200 and robots.headers["content-type"].startswith("text/plain")
    disallowed = {line.split(": ", 1)[1] for line in robots.text.splitlines() if line.startswith("Disallow")}
    assert {"/confirm/", "/unsubscribe/", "/preferences/", "/search"} <= disallowed  # tokens, endless space
    home = httpx.get(server.url("/")).text
    assert '<link rel="icon" href="' in home and "China Watch: the latest articles" in _description(home)
    with open_store(settings.database.path) as store:
        article = store.articles(limit=1)[0]
    page = httpx.get(server.url(f"/articles/{article.id}")).text
    said = _description(page)
    assert 0 < len(said) <= 160 and said.split()[0] in article.summary_text


def test_the_static_site_has_them_too(served_seeds: tuple[AppServer, Settings], tmp_path: Path) -> None:
    _, settings = served_seeds
    with open_store(settings.database.path) as store:
        publish_site(settings, store, tmp_path / "site")
    assert (tmp_path / "site" / "favicon.svg").read_bytes().startswith(b"<svg")
    assert "Disallow: /unsubscribe/" in (tmp_path / "site" / "robots.txt").read_text()


def _tokenless(html: str) -> str:
    # The subscribe form's signed token is new on every answer; the rest of a page is not.
    return re.sub(r'name="form_token" value="[^"]*"', "", html)


def test_every_html_answer_is_gzipped_once(served_seeds: tuple[AppServer, Settings]) -> None:
    """Pages built for each request (the subscribe form, a subscriber's preferences, a
    message page, a 404) come gzipped like the cached ones, and a cached page is not
    compressed twice; each decompresses to the page a client without gzip gets."""
    server, settings = served_seeds
    with open_store(settings.database.path) as store:
        ann = add(store, "gzip@example.org", confirmed=True)
        preferences = f"/preferences/{token(secret_for(store, None), 'preferences', ann)}"
    answers = (
        ("/subscribe", 200),
        (preferences, 200),
        ("/confirm/not-a-token", 400),
        ("/no/such/page", 404),
        ("/", 200),
    )
    with httpx.Client(base_url=server.url("")) as client:
        for path, status in answers:
            with client.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as packed:
                raw = b"".join(packed.iter_raw())
            plain = client.get(path, headers={"Accept-Encoding": "identity"})
            assert packed.status_code == plain.status_code == status, path
            assert packed.headers.get("content-encoding") == "gzip", path
            assert "accept-encoding" in packed.headers["vary"].lower(), path
            assert "content-encoding" not in plain.headers and plain.text.startswith("<!doctype html>"), path
            assert _tokenless(gzip.decompress(raw).decode()) == _tokenless(plain.text), path
            assert plain.headers["vary"].lower().count("accept-encoding") == 1, path  # said once
    for path in ("/subscribe", "/"):  # built for the request, and from the cache
        for refusing in ("gzip;q=0, identity", "*;q=1, gzip;q=0"):
            refused = httpx.get(server.url(path), headers={"Accept-Encoding": refusing})
            assert refused.status_code == 200 and "content-encoding" not in refused.headers, (path, refusing)
        anything = httpx.get(server.url(path), headers={"Accept-Encoding": "br;q=1, *;q=0.5"})
        assert anything.headers.get("content-encoding") == "gzip", path


def test_the_listening_socket_says_it_is_tcp_so_answers_are_not_delayed() -> None:
    """asyncio turns Nagle off (TCP_NODELAY) on accepted connections only for a socket made
    with IPPROTO_TCP: without it every small answer on a kept-alive connection waited
    about 40 ms for the client's delayed ACK (found by make bench-scale-db)."""
    import socket

    from digest.web.listen import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
