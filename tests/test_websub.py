"""WebSub, the publisher side: with [site] websub_hub our feeds name the hub (Atom and RSS
parsed back with feedparser, Atom still valid RFC 4287; JSON Feed's hubs), and a hub
written here (on 127.0.0.1) is pinged once per site feed after a pull that changed them,
and not after one that did not."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import feedparser
import pytest
from lxml import etree

from .conftest import SEEDS, SHARED, require, write_config
from .test_cli import run


class Hub:
    """A WebSub hub that records publish pings."""

    def __init__(self) -> None:
        self.pings: list[dict[str, list[str]]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                hub.pings.append(parse_qs(self.rfile.read(length).decode()))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hub"


@pytest.fixture
def hub() -> Iterator[Hub]:
    found = Hub()
    found.thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()


def test_our_feeds_name_the_hub_and_pulls_ping_it(tmp_path: Path, hub: Hub) -> None:
    config = write_config(
        tmp_path,
        f'[site]\nbase_url = "https://news.example.org"\nwebsub_hub = "{hub.url}"\n'
        f'[[sources]]\nname = "seeds"\nurl = "{SEEDS}"\n',
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
    require(SHARED / "schemas" / "atom.rng", "the Atom RELAX NG schema")
    schema = etree.RelaxNG(etree.parse(str(SHARED / "schemas" / "atom.rng")))
    assert schema.validate(etree.parse(str(tmp_path / "f.atom"))), schema.error_log
    written = run(
        "--config", str(config), "feed", "--format", "json", "-o", str(tmp_path / "f.json"), cwd=tmp_path
    )
    assert json.loads((tmp_path / "f.json").read_text())["hubs"] == [{"type": "WebSub", "url": hub.url}]


def test_without_a_hub_the_feeds_name_none_and_nothing_is_pinged(tmp_path: Path) -> None:
    config = write_config(tmp_path, f'[[sources]]\nname = "seeds"\nurl = "{SEEDS}"\n')
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
        f'[site]\nwebsub_hub = "http://127.0.0.1:9/hub"\n[[sources]]\nname = "seeds"\nurl = "{SEEDS}"\n',
    )
    pulled = run("--config", str(config), "pull", cwd=tmp_path)
    assert (
        pulled.returncode == 0 and "warning: WebSub hub" in pulled.stderr and "Traceback" not in pulled.stderr
    )
