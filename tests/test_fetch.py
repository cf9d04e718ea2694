"""Fetching over real HTTP on 127.0.0.1: conditional GET, redirects, errors, limits."""

from __future__ import annotations

import gzip
import os
import subprocess
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.common.errors import FetchError
from digest.config import FetchSettings
from digest.intake.fetch import Fetcher, retry_after

from .helpers import free_port, start, write_config
from .servers import FeedServer, Reply, Seen

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


def _stacked(size: int, layers: int) -> bytes:
    """``size`` zero bytes gzipped ``layers`` times, built a piece at a time (never held)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1024 * 1024)
    body = b"".join(packer.compress(block) for _ in range(size // len(block))) + packer.flush()
    for _ in range(layers - 1):
        body = gzip.compress(body, 9)
    return body


def test_one_content_coding_is_read_and_stacked_or_unknown_ones_refused(server: FeedServer) -> None:
    text = b"<rss>" + b"x" * 1000 + b"</rss>"
    raw_deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    server.routes["/deflate"] = Reply(200, zlib.compress(text), {"Content-Encoding": "deflate"})
    server.routes["/raw"] = Reply(
        200, raw_deflate.compress(text) + raw_deflate.flush(), {"Content-Encoding": "deflate"}
    )
    server.routes["/identity"] = Reply(200, text, {"Content-Encoding": "identity"})
    bomb = _stacked(512 * 1024 * 1024, 2)  # 512 MiB in two layers: about a kilobyte
    assert len(bomb) < 2048
    server.routes["/stacked"] = Reply(200, bomb, {"Content-Encoding": "gzip, gzip"})
    server.routes["/br"] = Reply(200, b"\x0b\x02\x80hello\x03", {"Content-Encoding": "br"})
    server.routes["/broken"] = Reply(200, b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"})
    # Bytes after the stream's end: zlib would copy them again at each piece (quadratic).
    server.routes["/tail"] = Reply(200, gzip.compress(text) + b"\0" * 50_000, {"Content-Encoding": "gzip"})
    with Fetcher(FAST) as fetcher:
        for path in ("/deflate", "/raw", "/identity"):
            assert fetcher.fetch(server.url(path)).documents[0].body == text, path
        assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"  # no more than is read
        for path, refusal in (
            ("/stacked", "one layer of gzip or deflate only"),
            ("/br", "content coding 'br' refused"),
            ("/broken", "the gzip coding is damaged"),
            ("/tail", "data after the end of the gzip stream"),
        ):
            with pytest.raises(FetchError, match=refusal):
                fetcher.fetch(server.url(path))


def test_a_stacked_or_single_gzip_bomb_never_takes_a_pull_past_its_cap(
    server: FeedServer, tmp_path: Path
) -> None:
    """`digest pull` itself, its peak memory read by the kernel: the cap bounds what a few
    bytes expand to before any of it is held (it peaked at over 1 GiB before)."""
    server.routes["/ok.xml"] = Reply(200, b'<rss version="2.0"><channel><title>t</title></channel></rss>')
    server.routes["/stacked.xml"] = Reply(
        200, _stacked(512 * 1024 * 1024, 2), {"Content-Encoding": "gzip, gzip"}
    )
    server.routes["/single.xml"] = Reply(200, _stacked(256 * 1024 * 1024, 1), {"Content-Encoding": "gzip"})

    def peak_of_pull(path: str) -> tuple[int, str]:
        folder = tmp_path / path.strip("/.")
        folder.mkdir()
        config = write_config(folder, f'[[sources]]\nname = "s"\nurl = "{server.url(path)}"\n')
        process = start("--config", str(config), "pull", cwd=folder, stderr=subprocess.PIPE)
        assert process.stderr is not None
        errors = process.stderr.read().decode()  # to the end: the process has exited
        _, status, usage = os.wait4(process.pid, 0)  # reaped here, for its own peak
        process.returncode = os.waitstatus_to_exitcode(status)
        return usage.ru_maxrss * 1024, errors

    baseline, _ = peak_of_pull("/ok.xml")
    for path in ("/stacked.xml", "/single.xml"):
        peak, errors = peak_of_pull(path)
        assert "refused" in errors or "size cap" in errors, errors
        # The default cap is 10 MiB: beyond the baseline, room for it and a copy, no more.
        assert peak < baseline + 40 * 1024 * 1024, (path, peak, baseline)


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
    port = free_port()  # nobody listens there
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
