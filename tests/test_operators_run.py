"""A real `digest run` driven through its API, on SQLite and on PostgreSQL: a source added
through the API is pulled within a minute without a restart, paused, resumed and removed;
an OPML file of 50 feeds served on 127.0.0.1 is imported and pulled; tokens (none, wrong,
read-writing, revoked) are refused; the articles are told to a webhook receiver. On
PostgreSQL a second worker on the same database takes the changes up too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import pgcluster

from .helpers import SEEDS_SOURCE, free_port, rss, run, within
from .servers import FeedServer, Reply, Running, WebhookReceiver

SECRET = "a webhook secret of more than 24 characters"


def _feed(prefix: str, count: int) -> Reply:
    items = [{"title": f"{prefix} report {i} from Jakarta", "link": f"http://example.org/{prefix}/{i}",
              "guid": f"{prefix}-{i}"} for i in range(count)]  # fmt: skip
    return Reply(body=rss(items), headers={"Content-Type": "application/rss+xml"})


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return '[database]\npath = "test.db"\n'
    return f'[database]\nurl = "{pgcluster.database_for(str(tmp_path))}"\n'


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=60)
        self.token = token

    def call(self, method: str, path: str, token: str | None = None, **options: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {token or self.token}"}
        headers.update(options.pop("headers", {}))
        return self.http.request(method, path, headers=headers, **options)

    def up(self) -> bool:
        try:
            return self.call("GET", "/health").status_code == 200
        except httpx.HTTPError:
            return False

    def articles(self, source: str) -> int:
        return len(self.call("GET", "/articles", params={"source": source, "limit": 200}).json()["items"])


def _config(folder: Path, database: str, port: int, receiver: WebhookReceiver) -> Path:
    body = (
        f"[web]\nport = {port}\n\n[fetch]\nallow_private = true\n\n"
        '[schedule]\npull_every = "1h"\nsources_every = "2s"\n\n'
        f'{SEEDS_SOURCE}\n[[webhooks_out]]\nurl = "{receiver.url("/hook")}"\nsecret = "{SECRET}"\n'
        'events = ["article.new"]\nallow_private = true\n'
    )
    path = folder / "digest.toml"
    path.write_text(database + body, encoding="utf-8")
    return path


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


def test_a_running_service_takes_up_sources_managed_through_its_api(
    database: str, tmp_path: Path, feeds: FeedServer
) -> None:
    feeds.routes["/wire.xml"] = _feed("wire", 3)
    for n in range(50):
        feeds.routes[f"/f{n}.xml"] = _feed(f"f{n}", 2)
    with WebhookReceiver() as receiver:
        port = free_port()
        config = _config(tmp_path, database, port, receiver)
        tokens = {}
        for name, scope in (("ops", "write"), ("viewer", "read"), ("old", "write")):
            made = run("--config", str(config), "tokens", "create", name, "--scope", scope, cwd=tmp_path)
            assert made.returncode == 0, made.stderr
            tokens[name] = made.stdout.strip()
        assert run("--config", str(config), "tokens", "revoke", "old", cwd=tmp_path).returncode == 0
        service = Running(config, tmp_path)
        try:
            api = Client(port, tokens["ops"])
            service.ready(api.up, 30, "digest run did not answer")
            _tokens_are_checked(api, tokens)
            _a_source_comes_goes_and_pauses(api, service, feeds)
            _fifty_feeds_come_in_by_opml(api, feeds)

            def told(source: str) -> int:
                return [json.loads(m.body)["data"]["source"] for m in receiver.received].count(source)

            # article.new, each article once
            assert within(lambda: all(told(f"f{n}") == 2 for n in range(50)), 60)
            assert told("wire") == 5
            if "url" in database:  # a second worker on the database takes changes up as well
                _another_worker_takes_changes_up(config, tmp_path, api, feeds)
        finally:
            code, _ = service.stop()
        assert code == 0, service.text()[-3000:]


def _tokens_are_checked(api: Client, tokens: dict[str, str]) -> None:
    assert api.http.get("/sources").status_code == 401  # none
    assert api.call("GET", "/sources", token="dg_wrong").status_code == 401
    assert api.call("GET", "/sources", token=tokens["old"]).status_code == 401  # revoked
    assert api.call("GET", "/sources", token=tokens["viewer"]).status_code == 200
    refused = api.call("POST", "/sources", token=tokens["viewer"], json={"url": "http://x.example/"})
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"


def _a_source_comes_goes_and_pauses(api: Client, service: Running, feeds: FeedServer) -> None:
    added = api.call("POST", "/sources", json={"url": feeds.url("/wire.xml"), "name": "wire", "every": "1m"})
    assert added.status_code == 201, added.text
    assert within(lambda: api.articles("wire") == 3, 60), service.text()[-3000:]  # no restart
    assert api.call("PATCH", "/sources/wire", json={"paused": True}).json()["paused"]
    # Taken up: its pulls are off the schedule (a resumed source is pulled at once, below).
    assert within(lambda: service.count("sources", "wire: paused") == 1, 60), service.text()[-3000:]
    feeds.routes["/wire.xml"] = _feed("wire", 5)
    api.call("PATCH", "/sources/wire", json={"paused": False})
    # Pulled again when next due (its minute from the last pull: a pause and a resume are
    # no way around a source's interval).
    assert within(lambda: api.articles("wire") == 5, 90), service.text()[-3000:]
    assert service.count("sources", "wire: changed") == 1
    assert api.call("DELETE", "/sources/wire").status_code == 204
    assert within(lambda: service.count("sources", "wire: removed") == 1, 60)
    assert api.articles("wire") == 5  # its articles stay
    listed = api.call("GET", "/sources", params={"limit": 200}).json()["items"]
    assert "wire" not in {s["name"] for s in listed}


def _fifty_feeds_come_in_by_opml(api: Client, feeds: FeedServer) -> None:
    outlines = "".join(f'<outline text="f{n}" xmlUrl="{feeds.url(f"/f{n}.xml")}"/>' for n in range(50))
    opml = f'<?xml version="1.0"?><opml version="2.0"><body><outline text="Fifty">{outlines}</outline></body></opml>'
    done = api.call("POST", "/sources/import", content=opml.encode(), headers={"content-type": "text/x-opml"})
    assert done.status_code == 200, done.text
    assert len(done.json()["added"]) == 50 and done.json()["skipped"] == []

    def all_pulled() -> bool:
        listed = api.call("GET", "/sources", params={"limit": 200}).json()["items"]
        fifty = [s for s in listed if s["label"] == "Fifty"]
        return len(fifty) == 50 and all(s["articles"] == 2 for s in fifty)

    assert within(all_pulled, 60)


def _another_worker_takes_changes_up(config: Path, folder: Path, api: Client, feeds: FeedServer) -> None:
    other_port = free_port()
    other_config = folder / "other.toml"
    other_config.write_text(
        config.read_text().replace(f"port = {api.http.base_url.port}", f"port = {other_port}")
    )
    other = Running(other_config, folder)
    try:
        other.ready(lambda: Client(other_port, api.token).up(), 30, "the second worker did not answer")
        feeds.routes["/late.xml"] = _feed("late", 1)
        assert (
            api.call("POST", "/sources", json={"url": feeds.url("/late.xml"), "name": "late"}).status_code
            == 201
        )
        assert within(lambda: other.count("sources", "late: added") == 1, 60), other.text()[-3000:]
        assert within(lambda: api.articles("late") == 1, 60)
        assert api.call("DELETE", "/sources/late").status_code == 204
        assert within(lambda: other.count("sources", "late: removed") == 1, 60), other.text()[-3000:]
    finally:
        other.stop()
