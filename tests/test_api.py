"""The JSON API at /api/v1, served by the real app on 127.0.0.1 over a real SQLite file:
tokens (none, wrong, read-writing, revoked, failures rate-limited), problem details, pages
that cover a list once, sources and subscribers with the CLI's rules, digests, the OpenAPI
document checked by a validator not ours, and schemathesis driving the live API from it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest.config import Settings
from digest.store import open_store
from digest.web.api.framework import hashed, new_token
from digest.web.api.pages import encode

from .helpers import SEEDS_SOURCE, pulled, rss, run, settings_for, write_config
from .servers import AppServer, FeedServer, Reply

PROBLEM = "application/problem+json"


class Api:
    """A live app with tokens: ``write``, ``read`` and ``revoked``."""

    def __init__(self, app: AppServer, settings: Settings, tokens: dict[str, str]) -> None:
        self.app, self.settings, self.tokens = app, settings, tokens
        self.client = httpx.Client(base_url=app.url("/api/v1"), timeout=60)

    def call(self, method: str, path: str, who: str | None = "write", **options: Any) -> httpx.Response:
        """``who``: a token's name here (write, read, revoked), another token, or None."""
        headers = dict(options.pop("headers", {}))
        if who is not None:
            headers["authorization"] = f"Bearer {self.tokens.get(who, who)}"
        return self.client.request(method, path, headers=headers, **options)

    def ok(self, method: str, path: str, who: str = "write", **options: Any) -> Any:
        answer = self.call(method, path, who, **options)
        assert answer.status_code < 300, (answer.status_code, answer.text)
        return answer.json() if answer.content else None


def _tokens(settings: Settings) -> dict[str, str]:
    made = {"write": new_token(), "read": new_token(), "revoked": new_token()}
    with open_store(settings.database.path) as store:
        for name, secret in made.items():
            store.create_token(name, "read" if name == "read" else "write", hashed(secret))
        store.revoke_token("revoked")
    return made


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("api")
    # (failed attempts are not limited here: schemathesis tries calls without a token on
    # purpose; the limit has a test of its own)
    settings = settings_for(
        folder,
        f'[fetch]\nallow_private = true\n\n[web]\napi_failures = 1000000\n\n[site]\ntitle = "China Watch"\n{SEEDS_SOURCE}',
    )
    pulled(settings)
    tokens = _tokens(settings)
    with AppServer(settings) as app:
        yield Api(app, settings, tokens)


def _problem(answer: httpx.Response, status: int, said: str = "") -> None:
    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["status"] == status and said in body["detail"] and "\n" not in body["detail"], body


def test_the_api_is_off_until_a_token_exists(tmp_path: Path) -> None:
    config = write_config(tmp_path, SEEDS_SOURCE)
    settings = settings_for(tmp_path, SEEDS_SOURCE)
    with AppServer(settings) as app, httpx.Client() as client:
        for path in ("/api/v1/sources", "/api/v1/openapi.json"):
            _problem(client.get(app.url(path)), 404, "the API is off until a token exists")
        made = run("--config", str(config), "tokens", "create", "ops", "--scope", "read", cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        secret = made.stdout.strip()
        assert secret.startswith("dg_") and "not shown again" in made.stderr
        _problem(client.get(app.url("/api/v1/sources")), 401, "a bearer token is needed")
        found = client.get(app.url("/api/v1/sources"), headers={"authorization": f"Bearer {secret}"})
        assert found.status_code == 200 and found.json()["items"][0]["name"] == "seeds"
    listed = json.loads(run("--config", str(config), "tokens", "list", "--json", cwd=tmp_path).stdout)
    assert [(t["name"], t["scope"], t["revoked"]) for t in listed] == [("ops", "read", None)]
    assert listed[0]["last_used"] is not None
    with open_store(settings.database.path) as store:  # only the hash is kept
        assert store.api_tokens()[0].hash == hashed(secret) and secret not in json.dumps(listed)
    assert run("--config", str(config), "tokens", "revoke", "ops", cwd=tmp_path).returncode == 0
    again = run("--config", str(config), "tokens", "revoke", "ops", cwd=tmp_path)
    assert again.returncode == 1 and "no token named 'ops'" in again.stderr


def test_tokens_none_wrong_revoked_and_read_writing(api: Api) -> None:
    answer = api.call("GET", "/sources", who=None)
    _problem(answer, 401, "a bearer token is needed")
    assert answer.headers["www-authenticate"].startswith("Bearer")
    _problem(api.call("GET", "/sources", who="dg_" + "x" * 43), 401, "not valid")
    _problem(api.call("GET", "/sources", who="revoked"), 401, "not valid")
    _problem(api.call("GET", "/sources", who="Basic abc"), 401)
    assert api.call("GET", "/sources", who="read").status_code == 200
    _problem(api.call("DELETE", "/subscribers/1", who="read"), 403, "may only read")
    _problem(api.call("POST", "/sources", who="read", json={"url": "http://x.example/"}), 403)
    _problem(api.call("PUT", "/sources"), 405, "PUT is not allowed")


def test_failed_attempts_are_limited_per_network_and_never_lock_a_right_token_out(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, SEEDS_SOURCE)
    tokens = _tokens(settings)
    with AppServer(settings) as app:
        api = Api(app, settings, tokens)
        for _ in range(settings.web.api_failures):
            _problem(api.call("GET", "/sources", who="dg_wrong"), 401)
        limited = api.call("GET", "/sources", who="dg_wrong")
        _problem(limited, 429, "too many failed attempts")
        assert limited.headers["retry-after"] == "600"
        _problem(api.call("GET", "/sources", who="dg_another"), 429)
        assert api.call("GET", "/sources", who="write").status_code == 200  # its holder is not locked out


def test_pages_of_articles_cover_the_list_once(api: Api) -> None:
    with open_store(api.settings.database.path) as store:
        everything = [a.id for a in store.articles()]
        european = [a.id for a in store.articles(region="europe")]
    for query, expected in (({}, everything), ({"region": "europe"}, european)):
        seen: list[str] = []
        cursor = None
        while True:
            page = api.ok(
                "GET",
                "/articles",
                who="read",
                params={**query, "limit": 7, **({"cursor": cursor} if cursor else {})},
            )
            seen += [a["id"] for a in page["items"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert seen == expected and len(expected) > 7, query
    searched = api.ok("GET", "/articles", who="read", params={"q": "laos", "limit": 1})
    assert "Laos" in searched["items"][0]["title"] + searched["items"][0]["summary"]
    more = api.ok(
        "GET", "/articles", who="read", params={"q": "laos", "limit": 1, "cursor": searched["next"]}
    )
    assert more["items"][0]["id"] != searched["items"][0]["id"]
    for params, said in (
        ({"limit": 0}, "limit: at least 1"),
        ({"limit": 201}, "limit: at most 200"),
        ({"cursor": "nonsense!"}, "cursor: not one this API gave"),
        ({"region": "atlantis"}, "region: expected one of"),
        ({"since": "last tuesday"}, "since: expected an ISO 8601"),
        ({"q": '"unclosed'}, "q:"),
    ):
        _problem(api.call("GET", "/articles", params=params), 400, said)


def test_an_article_shows_the_evidence_behind_its_regions(api: Api) -> None:
    page = api.ok("GET", "/articles", params={"region": "southeast-asia", "limit": 1})
    article = api.ok("GET", f"/articles/{page['items'][0]['id']}")
    assert article["regions"][0] == "southeast-asia"
    assert any(p["region"] == "southeast-asia" and p["count"] >= 1 for p in article["places"])
    _problem(api.call("GET", "/articles/nope"), 404, "no article 'nope'")
    stories = api.ok("GET", "/stories", params={"since": "2000-01-01T00:00:00Z"})
    assert stories["items"] and all(s["articles"] == len(s["members"]) >= 2 for s in stories["items"])


def test_sources_are_added_checked_changed_pulled_and_removed(api: Api) -> None:
    with FeedServer() as feeds:
        items = [
            {"title": f"Hanoi item {i}", "link": f"http://example.org/h/{i}", "guid": f"h{i}"}
            for i in range(3)
        ]
        feeds.routes["/feed.xml"] = Reply(body=rss(items), headers={"Content-Type": "application/rss+xml"})
        added = api.call(
            "POST", "/sources", json={"url": feeds.url("/feed.xml"), "name": "hanoi", "every": "2h"}
        )
        assert added.status_code == 201, added.text
        assert (added.json()["origin"], added.json()["every"]) == ("store", "2h")
        _problem(
            api.call("POST", "/sources", json={"url": feeds.url("/feed.xml")}),
            409,
            "already a source, 'hanoi'",
        )
        _problem(api.call("POST", "/sources", json={"url": feeds.url("/nothing")}), 422, "HTTP 404")
        _problem(api.call("POST", "/sources", json={"url": "/etc/passwd"}), 422, "only http(s) URLs")
        _problem(
            api.call("POST", "/sources", json={"url": feeds.url("/feed.xml"), "colour": "red"}),
            400,
            "unknown key 'colour'",
        )
        _problem(
            api.call("POST", "/sources", content=b"{", headers={"content-type": "application/json"}),
            400,
            "not JSON",
        )
        _problem(api.call("POST", "/sources", content=b"url=x", headers={"content-type": "text/plain"}), 415)
        changed = api.ok(
            "PATCH", "/sources/hanoi", json={"every": "30m", "regions": ["southeast-asia"], "paused": True}
        )
        assert (changed["every"], changed["regions"], changed["paused"]) == ("30m", ["southeast-asia"], True)
        pulled_now = api.ok("POST", "/sources/hanoi/pull")
        assert (pulled_now["new"], pulled_now["error"]) == (3, None)
        shown = api.ok("GET", "/sources/hanoi")
        assert shown["articles"] == 3 and shown["last_status"] == 200
        opml = api.call("GET", "/sources.opml")
        assert opml.headers["content-type"].startswith("text/x-opml") and feeds.url("/feed.xml") in opml.text
        _problem(api.call("PATCH", "/sources/seeds", json={"paused": True}), 409, "from the config file")
        _problem(api.call("DELETE", "/sources/seeds"), 409, "change it there")
        assert api.call("DELETE", "/sources/hanoi").status_code == 204
        _problem(api.call("GET", "/sources/hanoi"), 404, "no source named 'hanoi'")
        _problem(api.call("DELETE", "/sources/hanoi"), 404)
        opml_in = (
            '<?xml version="1.0"?><opml version="2.0"><body><outline text="Wires">'
            f'<outline text="Hue" xmlUrl="{feeds.url("/hue.xml")}"/>'
            f'<outline text="Hue again" xmlUrl="{feeds.url("/hue.xml")}"/></outline></body></opml>'
        )
        done = api.ok(
            "POST", "/sources/import", content=opml_in.encode(), headers={"content-type": "text/x-opml"}
        )
        assert done["added"] == ["Hue"] and "line 1" in done["skipped"][0]
        assert api.ok("GET", "/sources/Hue")["label"] == "Wires"
        _problem(api.call("POST", "/sources/import", content=b"<opml"), 422, "not well-formed XML")


def test_subscribers_keep_the_clis_rules(api: Api) -> None:
    made = api.call(
        "POST", "/subscribers", json={"email": "Ann@Example.org", "regions": ["europe"], "cadence": "daily"}
    )
    assert made.status_code == 201, made.text
    ann = made.json()
    assert (ann["status"], ann["cadence"], ann["email"]) == ("pending", "daily", "Ann@example.org")
    assert list(
        (Path(api.settings.outbox.path)).glob("*.eml")
    )  # the confirmation went out (no SMTP: the outbox)
    assert api.ok("PATCH", f"/subscribers/{ann['id']}", json={"status": "active"})["status"] == "active"
    assert api.ok("PATCH", f"/subscribers/{ann['id']}", json={"topics": ["mekong"], "hour": 6})["topics"] == [
        "mekong"
    ]
    assert (
        api.ok("PATCH", f"/subscribers/{ann['id']}", json={"status": "unsubscribed"})["status"]
        == "unsubscribed"
    )
    _problem(
        api.call("PATCH", f"/subscribers/{ann['id']}", json={"status": "active"}),
        409,
        "only they can subscribe again",
    )
    csv = "email,status\nann@example.org,active\nbob@example.org,active\nnot an address,active\n"
    report = api.ok("POST", "/subscribers/import", content=csv.encode(), headers={"content-type": "text/csv"})
    assert (
        report["added"] == 1
        and report["errors"]
        and any("ann@example.org" in line for line in report["warnings"] + report["errors"])
    )
    assert (
        api.ok("GET", f"/subscribers/{ann['id']}")["status"] == "unsubscribed"
    )  # an import never re-subscribes
    bob = next(
        s
        for s in api.ok("GET", "/subscribers", params={"status": "active"})["items"]
        if s["email"] == "bob@example.org"
    )
    with open_store(api.settings.database.path) as store:
        store.set_subscriber_status(bob["id"], "bounced", at=store.now())
    _problem(
        api.call("POST", "/subscribers", json={"email": "bob@example.org"}), 422, "bounced"
    )  # suppression holds
    assert (
        api.ok("PATCH", f"/subscribers/{bob['id']}", json={"status": "active"})["status"] == "active"
    )  # on purpose
    assert api.ok("GET", f"/subscribers/{bob['id']}/deliveries") == {"items": [], "next": None}
    _problem(
        api.call("POST", "/subscribers", json={"email": "x@example.org", "regions": ["mars"]}),
        400,
        "body.regions[0]: expected one of",
    )
    _problem(api.call("GET", "/subscribers/999999"), 404, "no subscriber 999999")
    assert api.call("DELETE", f"/subscribers/{ann['id']}").status_code == 204
    _problem(api.call("GET", f"/subscribers/{ann['id']}"), 404)
    api.ok("POST", "/subscribers", json={"email": "cy@example.org", "confirmed": True})
    first = api.ok("GET", "/subscribers", params={"limit": 1})
    assert first["next"] is not None
    second = api.ok("GET", "/subscribers", params={"limit": 1, "cursor": first["next"]})
    assert first["items"][0]["id"] < second["items"][0]["id"]


def test_digests_show_what_became_of_them_and_a_preview_sends_nothing(api: Api) -> None:
    api.ok("POST", "/subscribers", json={"email": "dee@example.org", "confirmed": True})
    config = api.settings.database.path.parent / "digest.toml"
    config.write_text(
        f'[database]\npath = "{api.settings.database.path}"\n[outbox]\npath = "{api.settings.outbox.path}"\n{SEEDS_SOURCE}'
    )
    sent = run("--config", str(config), "send", "--everyone", cwd=config.parent)
    assert sent.returncode == 0, sent.stderr
    [digest] = api.ok("GET", "/digests")["items"][:1]
    assert (
        digest["sent"] >= 1
        and digest["status"] == "done"
        and digest["web_copy"].endswith(f"/digests/{digest['id']}")
    )
    assert api.ok("GET", f"/digests/{digest['id']}") == digest
    _problem(api.call("GET", "/digests/nope"), 404)
    dee = next(
        s
        for s in api.ok("GET", "/subscribers", params={"status": "active"})["items"]
        if s["email"] == "dee@example.org"
    )
    assert api.ok("GET", f"/subscribers/{dee['id']}/deliveries")["items"][0]["digest"] == digest["id"]
    preview = api.ok(
        "POST", "/digests/preview", who="read", json={"format": "text", "since": "2000-01-01T00:00:00Z"}
    )
    assert preview["format"] == "text" and "Laos" in preview["body"]
    stats = api.ok("GET", "/stats", params={"days": 2})
    assert sum(stats["articles_per_day"].values()) >= 40 and stats["sources_failing"] == []
    assert api.ok("GET", "/health")["status"] == "ok"


def test_the_openapi_document_is_valid_and_lists_every_operation(api: Api) -> None:
    from openapi_spec_validator import validate

    document = api.client.get("/openapi.json").json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    expected = {
        ("GET", "/sources"), ("POST", "/sources"), ("GET", "/sources/{name}"), ("PATCH", "/sources/{name}"),
        ("DELETE", "/sources/{name}"), ("POST", "/sources/{name}/pull"), ("POST", "/sources/import"),
        ("GET", "/sources.opml"), ("GET", "/articles"), ("GET", "/articles/{id}"), ("GET", "/stories"),
        ("GET", "/subscribers"), ("POST", "/subscribers"), ("GET", "/subscribers/{id}"),
        ("PATCH", "/subscribers/{id}"), ("DELETE", "/subscribers/{id}"), ("POST", "/subscribers/import"),
        ("GET", "/subscribers/{id}/deliveries"), ("GET", "/digests"), ("GET", "/digests/{id}"),
        ("POST", "/digests/preview"), ("GET", "/health"), ("GET", "/stats"),
    }  # fmt: skip
    assert {(m, p.removeprefix("/api/v1")) for m, p in operations} >= expected


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(api: Api, tmp_path: Path) -> None:
    """The live API driven from its own document. Operations that reach a URL they are
    given (adding a source, pulling one, adding a webhook) are left out: generated URLs
    would reach beyond this machine; their own tests serve on 127.0.0.1."""
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", api.app.url("/api/v1/openapi.json"),
         "--header", f"Authorization: Bearer {api.tokens['write']}",
         "--exclude-operation-id", "add_source", "--exclude-operation-id", "pull_source",
         "--exclude-operation-id", "add_webhook",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
         "response_schema_conformance,response_headers_conformance",
         "--max-examples", "15", "--seed", "31", "--no-color", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    # It reached this server, and ran many cases (a run that reached nothing says little).
    assert re.search(rf"Base URL:\s+{re.escape(api.app.url('/'))}", done.stdout), done.stdout[-3000:]
    ran = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert ran and int(ran.group(2)) == int(ran.group(1)) >= 500, done.stdout[-3000:]


def test_hostile_input_is_a_clear_refusal_never_a_server_error(api: Api) -> None:
    """What an outside review sent (each once a 500 with a traceback in the log)."""
    deep = b"[" * 200_000 + b"]" * 200_000
    for method, path, options, status in (
        ("GET", "/subscribers/%C2%B2", {}, 400),  # "²" is a digit to str.isdigit
        ("GET", "/articles?limit=%C2%B2", {}, 400),
        ("GET", "/stats?days=%E2%91%A0", {}, 400),
        ("GET", "/subscribers/--1", {}, 400),
        ("GET", "/subscribers?cursor=" + encode(10**23), {}, 400),
        ("GET", "/articles?since=0001-01-01T00:00:00%2B01:00", {}, 400),
        ("GET", "/stories?since=9999-12-31T23:59:59-01:00", {}, 400),
        ("POST", "/digests/preview", {"json": {"since": "0001-01-01T00:00:00+01:00"}}, 400),
        ("POST", "/digests/preview", {"content": deep, "headers": {"content-type": "application/json"}}, 400),
        ("PATCH", "/sources/seeds", {"json": {"label": "a\u0001b"}}, 409),  # the config's: refused anyway
        ("POST", "/sources", {"json": {"url": "https://x.example/", "every": "0.01s"}}, 422),
    ):
        answer = api.call(method, path, **options)
        assert answer.status_code == status, (path, answer.status_code, answer.text[:300])
        assert answer.headers["content-type"] == PROBLEM
    assert (
        "at least 60 s"
        in api.call("POST", "/sources", json={"url": "https://x.example/", "every": "5s"}).text
    )


def test_a_token_sees_source_urls_without_their_credentials(tmp_path: Path) -> None:
    keyed = "https://user:hunter2@feeds.example.invalid/rss?apikey=SECRETKEY123"
    settings = settings_for(tmp_path, f'{SEEDS_SOURCE}[[sources]]\nname = "keyed"\nurl = "{keyed}"\n')
    tokens = _tokens(settings)
    with AppServer(settings) as app:
        api = Api(app, settings, tokens)
        for path in ("/sources", "/sources/keyed", "/sources.opml"):
            shown = api.call("GET", path, who="read").text
            assert (
                "feeds.example.invalid" in shown and "hunter2" not in shown and "SECRETKEY123" not in shown
            ), path
