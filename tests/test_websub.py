"""WebSub, the publisher side: with [site] websub_hub our feeds name the hub (Atom and RSS
parsed back with feedparser, Atom still valid RFC 4287; JSON Feed's hubs), and a hub
written here (on 127.0.0.1) is pinged once per site feed after a pull that changed them,
and not after one that did not."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs

import feedparser
import httpx
import pytest
from lxml import etree

from digest.intake import websub
from digest.intake.pull import pull
from digest.store import open_store

from .helpers import (
    SEEDS_SOURCE,
    atom_schema,
    free_port,
    pulled,
    rss,
    run,
    settings_for,
    within,
    write_config,
)
from .servers import AppServer, FeedServer, HttpServer, Reply


class Hub:
    """A WebSub hub: records publish pings; takes subscriptions, verifying each intent at
    its callback (a challenge to echo, a short lease), then pushes what it is given."""

    def __init__(self, lease: int = 120) -> None:
        self.pings: list[dict[str, list[str]]] = []
        self.subscriptions: list[dict[str, str]] = []
        self.verified: list[bool] = []
        self.pages: dict[str, bytes] = {}  # what it serves to GET: a feed on the hub's own origin
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = hub.pages.get(self.path)
                self.send_response(404 if body is None else 200)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                if form.get("hub.mode") == ["subscribe"]:
                    request = {k: v[0] for k, v in form.items()}
                    hub.subscriptions.append(request)
                    self.send_response(202)
                    self.end_headers()
                    threading.Thread(target=hub.verify, args=(request, lease), daemon=True).start()
                    return
                hub.pings.append(form)
                self.send_response(204)
                self.end_headers()

        self.http = HttpServer(Handler)

    @property
    def url(self) -> str:
        return self.http.url("/hub")

    def page_url(self, path: str) -> str:
        return self.http.url(path)

    def verify(self, request: dict[str, str], lease: int) -> None:
        challenge = secrets.token_hex(8)
        try:
            answer = httpx.get(
                request["hub.callback"],
                params={
                    "hub.mode": "subscribe",
                    "hub.topic": request["hub.topic"],
                    "hub.challenge": challenge,
                    "hub.lease_seconds": str(lease),
                },
                timeout=5,
            )
        except httpx.HTTPError:
            self.verified.append(False)
            return
        self.verified.append(answer.status_code == 200 and answer.text == challenge)

    def push(self, body: bytes, *, secret: str | None = None) -> int:
        request = self.subscriptions[-1]
        signature = hmac.new((secret or request["hub.secret"]).encode(), body, hashlib.sha256).hexdigest()
        answer = httpx.post(
            request["hub.callback"],
            content=body,
            headers={"Content-Type": "application/rss+xml", "X-Hub-Signature": f"sha256={signature}"},
            timeout=5,
        )
        return answer.status_code

    def __enter__(self) -> Hub:
        self.http.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.__exit__(*exc)


@pytest.fixture
def hub() -> Iterator[Hub]:
    with Hub() as found:
        yield found


def test_our_feeds_name_the_hub_and_pulls_ping_it(tmp_path: Path, hub: Hub) -> None:
    config = write_config(
        tmp_path,
        f'[site]\nbase_url = "https://news.example.org"\nwebsub_hub = "{hub.url}"\n{SEEDS_SOURCE}',
    )
    pulled = run("--config", str(config), "pull", cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    assert [p["hub.mode"] for p in hub.pings] == [["publish"]] * 3
    assert sorted(p["hub.url"][0] for p in hub.pings) == [
        "https://news.example.org/feed.atom",
        "https://news.example.org/feed.json",
        "https://news.example.org/feed.rss",
    ]
    again = run("--config", str(config), "pull", cwd=tmp_path)
    assert again.returncode == 0 and len(hub.pings) == 3  # nothing changed: no ping

    for fmt in ("atom", "rss"):
        written = run(
            "--config", str(config), "feed", "--format", fmt, "-o", str(tmp_path / f"f.{fmt}"), cwd=tmp_path
        )
        assert written.returncode == 0, written.stderr
        parsed = feedparser.parse((tmp_path / f"f.{fmt}").read_bytes())
        rels = {link["rel"]: link["href"] for link in parsed.feed.links}
        assert rels["hub"] == hub.url and rels["self"] == f"https://news.example.org/feed.{fmt}", rels
    schema = atom_schema()
    assert schema.validate(etree.parse(str(tmp_path / "f.atom"))), schema.error_log
    written = run(
        "--config", str(config), "feed", "--format", "json", "-o", str(tmp_path / "f.json"), cwd=tmp_path
    )
    assert json.loads((tmp_path / "f.json").read_text())["hubs"] == [{"type": "WebSub", "url": hub.url}]


def test_without_a_hub_the_feeds_name_none_and_nothing_is_pinged(tmp_path: Path) -> None:
    config = write_config(tmp_path, SEEDS_SOURCE)
    assert run("--config", str(config), "pull", cwd=tmp_path).returncode == 0
    written = run(
        "--config", str(config), "feed", "--format", "rss", "-o", str(tmp_path / "f.rss"), cwd=tmp_path
    )
    assert written.returncode == 0
    assert "hub" not in {
        link["rel"] for link in feedparser.parse((tmp_path / "f.rss").read_bytes()).feed.links
    }


def test_a_dead_hub_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f'[site]\nwebsub_hub = "http://127.0.0.1:9/hub"\n{SEEDS_SOURCE}',
    )
    pulled = run("--config", str(config), "pull", cwd=tmp_path)
    assert (
        pulled.returncode == 0 and "warning: WebSub hub" in pulled.stderr and "Traceback" not in pulled.stderr
    )


def test_a_source_whose_feed_names_a_hub_is_pushed_to(tmp_path: Path, server: FeedServer, hub: Hub) -> None:
    # A loopback source is trusted for its own port only: a hub its feed names on another
    # loopback port is not asked (the feed is content). Here the hub serves the feed itself.
    feed_url = hub.page_url("/feed.xml")
    atom = 'xmlns:atom="http://www.w3.org/2005/Atom"'

    def feed(*titles: str, topic: str = feed_url) -> bytes:
        items = [
            {"title": t, "link": f"https://example.org/{n}", "guid": f"g-{t}"} for n, t in enumerate(titles)
        ]
        head = f'<atom:link rel="hub" href="{hub.url}"/><atom:link rel="self" href="{topic}"/>'
        return rss(items, extra_ns=atom, channel_extra=head)

    server.routes["/elsewhere.xml"] = Reply(body=feed("On another port", topic=server.url("/elsewhere.xml")))
    (tmp_path / "x").mkdir()
    elsewhere = settings_for(
        tmp_path / "x", f'[[sources]]\nname = "x"\nurl = "{server.url("/elsewhere.xml")}"\n'
    )
    [report] = pulled(elsewhere).values()
    assert report.new == 1 and "Refused" in " ".join(report.warnings) and hub.subscriptions == []
    hub.pages["/feed.xml"] = feed("Laos and China sign a rail deal")
    port = free_port()
    settings = settings_for(
        tmp_path,
        f'[site]\nbase_url = "http://127.0.0.1:{port}"\n[[sources]]\nname = "wire"\nurl = "{feed_url}"\n',
    )
    with AppServer(settings, port=port), open_store(settings.database.path) as store:
        [report] = pull(settings, store)
        assert report.new == 1 and not report.warnings, report.warnings
        within(lambda: hub.verified, 5, every=0.05)
        assert hub.verified == [True]  # the challenge came back
        [asked] = hub.subscriptions
        base, _, token = asked["hub.callback"].rpartition("/")
        assert asked["hub.topic"] == feed_url and base == f"http://127.0.0.1:{port}/websub/wire"
        assert len(token) == 32  # the callback names a token only the hub was told
        found = websub.subscription(store, "wire")
        assert found is not None and found.state == "active" and found.secret == asked["hub.secret"]

        # A signed push is stored at once; a wrongly signed one is ignored.
        started = time.monotonic()
        assert hub.push(feed("Laos and China sign a rail deal", "Vietnam and China talk trade")) == 202
        within(lambda: len(store.articles()) >= 2, 1.0 - (time.monotonic() - started), every=0.02)
        assert {a.title for a in store.articles()} == {
            "Laos and China sign a rail deal",
            "Vietnam and China talk trade",
        }
        assert hub.push(feed("A forged item"), secret="not-the-secret") == 202
        time.sleep(0.3)
        assert "A forged item" not in {a.title for a in store.articles()}

        # Nobody else's verification is answered: not without the token, not for another
        # topic, and not again once the hub verified (a replay cannot stretch the lease).
        forged = {
            "hub.mode": "subscribe",
            "hub.topic": feed_url,
            "hub.challenge": "x",
            "hub.lease_seconds": "99999999",
        }
        for url, params in (
            (f"{base}/{'0' * 32}", forged),
            (asked["hub.callback"], {**forged, "hub.topic": "https://evil.example/feed"}),
            (asked["hub.callback"], forged),
            (asked["hub.callback"], {**forged, "hub.mode": "denied"}),
        ):
            assert httpx.get(url, params=params, timeout=5).status_code == 404
        after = websub.subscription(store, "wire")
        assert after is not None and after.state == "active" and after.lease_until == found.lease_until
        odd = httpx.post(
            asked["hub.callback"],
            content=b"<rss/>",
            headers={"X-Hub-Signature": "sha256=\u00e9".encode()},
            timeout=5,
        )
        assert odd.status_code == 202  # acknowledged, ignored: not a 500

        # The lease (120 s) ends within a day: the next pull renews it, with the same secret.
        pull(settings, store, force=True)
        assert len(hub.subscriptions) == 2 and hub.subscriptions[1]["hub.secret"] == asked["hub.secret"]
        renewing = websub.subscription(store, "wire")
        assert renewing is not None and renewing.state == "active"  # pushes go on meanwhile
        within(lambda: len(hub.verified) >= 2, 5, every=0.05)
        assert hub.verified == [True, True]
