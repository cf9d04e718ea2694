"""Fetching over real HTTP on 127.0.0.1: conditional GET, redirects, errors, limits."""

from __future__ import annotations

import gzip
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.config import FetchSettings
from digest.errors import FetchError
from digest.sources.fetch import Fetcher, retry_after

from .conftest import FeedServer, Reply, Seen

FAST = FetchSettings(timeout=1.0, deadline=2.0, max_bytes=64 * 1024)


def test_conditional_get_sends_validators_and_honours_304(server: FeedServer) -> None:
    def feed(seen: Seen) -> Reply:
        if seen.headers.get("if-none-match") == '"v1"':
            return Reply(304)
        return Reply(200, b"<rss/>", {"ETag": '"v1"', "Last-Modified": "Tue, 01 Sep 2026 10:00:00 GMT"})

    server.routes["/feed"] = feed
    with Fetcher(FAST) as fetcher:
        first = fetcher.fetch(server.url("/feed"))
        assert first.documents[0].body == b"<rss/>"
        assert (first.etag, first.last_modified) == ('"v1"', "Tue, 01 Sep 2026 10:00:00 GMT")
        second = fetcher.fetch(server.url("/feed"), etag=first.etag, last_modified=first.last_modified)
    assert second.not_modified and second.documents == ()
    assert server.requests[1].headers["if-modified-since"] == "Tue, 01 Sep 2026 10:00:00 GMT"
    assert server.requests[0].headers["user-agent"].startswith("digest/")


def test_permanent_redirects_are_reported_temporary_ones_are_not(server: FeedServer) -> None:
    server.routes["/old"] = Reply(301, headers={"Location": "/new"})
    server.routes["/moved"] = Reply(308, headers={"Location": server.url("/new")})
    server.routes["/temp"] = Reply(302, headers={"Location": "/old"})
    server.routes["/new"] = Reply(200, b"<rss/>")
    with Fetcher(FAST) as fetcher:
        assert fetcher.fetch(server.url("/old")).permanent_url == server.url("/new")
        assert fetcher.fetch(server.url("/moved")).permanent_url == server.url("/new")
        temporary = fetcher.fetch(server.url("/temp"))
    assert temporary.permanent_url is None
    assert temporary.documents[0].url == server.url("/new")


def test_redirect_loops_and_other_schemes_are_refused(server: FeedServer) -> None:
    server.routes["/a"] = Reply(302, headers={"Location": "/b"})
    server.routes["/b"] = Reply(302, headers={"Location": "/a"})
    server.routes["/file"] = Reply(302, headers={"Location": "file:///etc/passwd"})
    with Fetcher(FAST) as fetcher:
        with pytest.raises(FetchError, match="redirect loop"):
            fetcher.fetch(server.url("/a"))
        with pytest.raises(FetchError, match="refused"):
            fetcher.fetch(server.url("/file"))


def test_gone_and_errors(server: FeedServer) -> None:
    server.routes["/gone"] = Reply(410)
    server.routes["/broken"] = Reply(500)
    with Fetcher(FAST) as fetcher:
        assert fetcher.fetch(server.url("/gone")).gone
        with pytest.raises(FetchError, match="HTTP 500") as info:
            fetcher.fetch(server.url("/broken"))
        assert info.value.status == 500
        with pytest.raises(FetchError, match="HTTP 404"):
            fetcher.fetch(server.url("/missing"))


def test_429_and_503_carry_retry_after(server: FeedServer) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    server.routes["/busy"] = Reply(429, headers={"Retry-After": "120"})
    server.routes["/down"] = Reply(503, headers={"Retry-After": later.strftime("%a, %d %b %Y %H:%M:%S GMT")})
    with Fetcher(FAST) as fetcher:
        with pytest.raises(FetchError) as busy:
            fetcher.fetch(server.url("/busy"))
        with pytest.raises(FetchError) as down:
            fetcher.fetch(server.url("/down"))
    assert busy.value.status == 429 and busy.value.retry_after is not None
    assert abs((busy.value.retry_after - datetime.now(UTC)).total_seconds() - 120) < 5
    assert down.value.retry_after is not None
    assert abs((down.value.retry_after - later).total_seconds()) < 2


def test_gzip_is_decoded_and_the_size_cap_applies_after_decompression(server: FeedServer) -> None:
    server.routes["/small"] = Reply(200, b"<rss>" + b"x" * 1000 + b"</rss>", gzip=True)
    server.routes["/bomb"] = Reply(200, b"\0" * (10 * 1024 * 1024), gzip=True)
    server.routes["/big"] = Reply(200, b"y" * (FAST.max_bytes + 1))
    with Fetcher(FAST) as fetcher:
        small = fetcher.fetch(server.url("/small"))
        assert small.documents[0].body.startswith(b"<rss>x")
        assert server.requests[0].headers["accept-encoding"].startswith("gzip")
        for path in ("/bomb", "/big"):
            with pytest.raises(FetchError, match="size cap"):
                fetcher.fetch(server.url(path))
    assert len(gzip.compress(b"\0" * (10 * 1024 * 1024))) < FAST.max_bytes  # it really was a bomb


def test_a_slow_server_hits_the_timeout_and_a_trickling_one_the_deadline(server: FeedServer) -> None:
    def silent(seen: Seen) -> Reply:
        time.sleep(3)
        return Reply(200, b"late")

    server.routes["/silent"] = silent
    server.routes["/trickle"] = Reply(200, b"z" * 100, trickle=0.05)  # 5 s in all, a byte at a time
    with Fetcher(FAST) as fetcher:
        started = time.monotonic()
        with pytest.raises(FetchError, match="timed out"):
            fetcher.fetch(server.url("/silent"))
        silent_took, started = time.monotonic() - started, time.monotonic()
        with pytest.raises(FetchError, match="longer than 2s"):
            fetcher.fetch(server.url("/trickle"))
        trickle_took = time.monotonic() - started
    # Before the server answers (3 s) and before the trickle ends (5 s): the limits cut them.
    assert silent_took < 2.9 and trickle_took < 4.5, (silent_took, trickle_took)


def test_unreachable_host_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Fetcher(FAST) as fetcher, pytest.raises(FetchError, match="cannot connect"):
        fetcher.fetch(f"http://127.0.0.1:{port}/feed")


def test_local_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.xml").write_text("<rss/>")
    (tmp_path / ".hidden").write_text("skip")
    with Fetcher(FAST) as fetcher:
        folder = fetcher.fetch(str(tmp_path))
        assert [d.name for d in folder.documents] == ["a.xml", "b.txt"]
        assert folder.documents[0].content_type in ("application/xml", "text/xml")
        single = fetcher.fetch((tmp_path / "b.txt").as_uri())
        assert single.documents[0].body == b"second"
        with pytest.raises(FetchError, match="no such file"):
            fetcher.fetch(str(tmp_path / "nope"))
        (tmp_path / "empty").mkdir()
        with pytest.raises(FetchError, match="no files"):
            fetcher.fetch(str(tmp_path / "empty"))
        (tmp_path / "huge.txt").write_bytes(b"h" * (FAST.max_bytes + 1))
        with pytest.raises(FetchError, match="size cap"):
            fetcher.fetch(str(tmp_path / "huge.txt"))


def test_retry_after_parsing() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert retry_after("60", now) == now + timedelta(seconds=60)
    assert retry_after("Wed, 25 Nov 2026 08:00:00 GMT", now) == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None
