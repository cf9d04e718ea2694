"""Outgoing webhooks against a real receiver on 127.0.0.1: each event once, signed as
Standard Webhooks sign them (checked here by the spec's recipe, not digest's code), again
after the receiver answered 500, from a durable queue that two looks never fill twice;
the fetch policy holds for endpoints; subscribers' status changes are said whatever made
them; endpoints added through the API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest.common.dates import utcnow
from digest.config import load_settings
from digest.publish.events import collect
from digest.service.webhooks import RETRIES, deliver
from digest.store import open_store
from digest.web.api.framework import hashed, new_token

from .helpers import SEEDS_SOURCE, run, write_config
from .servers import AppServer, Received, WebhookReceiver

KEY = secrets.token_bytes(32)
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def _verified(message: Received, key: bytes = KEY) -> dict[str, Any]:
    """The body, once its signature is checked as the Standard Webhooks spec says."""
    mid, stamp = message.headers["webhook-id"], message.headers["webhook-timestamp"]
    expected = base64.b64encode(
        hmac.new(key, f"{mid}.{stamp}.".encode() + message.body, hashlib.sha256).digest()
    )
    given = [
        part.split(",", 1)[1]
        for part in message.headers["webhook-signature"].split()
        if part.startswith("v1,")
    ]
    assert any(hmac.compare_digest(g.encode(), expected) for g in given), message.headers
    assert abs(int(stamp) - utcnow().timestamp()) < 600
    found: dict[str, Any] = json.loads(message.body)
    return found


def _config(folder: Path, receiver: WebhookReceiver, **keys: str) -> Path:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    return write_config(
        folder,
        f'{SEEDS_SOURCE}\n[[webhooks_out]]\nurl = "{receiver.url("/hook")}"\nsecret = "{SECRET}"\n'
        f"allow_private = true\n{extra}",
    )


def test_each_event_arrives_once_signed_and_again_after_a_500(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        receiver.answers = [500]  # the first message is refused once
        config = _config(tmp_path, receiver, events=["article.new", "story.new", "subscriber.confirmed"])
        pulled = run("--config", str(config), "pull", cwd=tmp_path)
        assert pulled.returncode == 0, pulled.stderr
        assert "1 to retry" in pulled.stderr  # said, and left to the queue
        first = [_verified(m) for m in receiver.received]
        kinds = [body["type"] for body in first]
        assert kinds.count("article.new") == 40 and "story.new" in kinds
        ids = [m.headers["webhook-id"] for m in receiver.received]
        assert len(set(ids)) == len(ids)  # one message each
        refused = receiver.received[0]
        assert refused.status == 500
        settings = load_settings(config)
        with open_store(settings.database.path) as store:
            assert collect(store, settings, utcnow()) == len(ids)  # found again: queued once
            too_soon = deliver(store, settings, "test", utcnow())
            assert (too_soon.delivered, len(receiver.received)) == (0, len(ids))  # waits out its backoff
            later = deliver(store, settings, "test", utcnow() + timedelta(seconds=RETRIES[0] + 1))
            assert later.delivered == 1
        again = receiver.received[-1]
        assert again.headers["webhook-id"] == refused.headers["webhook-id"] and again.body == refused.body
        assert again.status == 200 and _verified(again)["type"] == first[0]["type"]
        article = next(b for b in first if b["type"] == "article.new")["data"]
        assert article["link"].endswith(f"/articles/{article['id']}") and article["regions"]

        added = run(
            "--config", str(config), "subscribers", "add", "ann@example.org", "--confirmed", cwd=tmp_path
        )
        assert added.returncode == 0, added.stderr
        pulled = run("--config", str(config), "pull", cwd=tmp_path)  # (a one-off command tells them)
        assert pulled.returncode == 0
        confirmed = [_verified(m) for m in receiver.received if b"subscriber.confirmed" in m.body]
        assert [c["data"]["email"] for c in confirmed] == ["ann@example.org"]
        assert not any(b"subscriber.unsubscribed" in m.body for m in receiver.received)  # not asked for
        total = len(receiver.received)
        with open_store(settings.database.path) as store:
            deliver(store, settings, "test", utcnow() + timedelta(days=2))
        assert len(receiver.received) == total  # nothing left to send


def test_a_wrong_key_does_not_verify(tmp_path: Path) -> None:
    """The check above can fail: a message verified with another key is refused."""
    with WebhookReceiver() as receiver:
        config = _config(tmp_path, receiver, events=["subscriber.confirmed"])
        assert (
            run(
                "--config", str(config), "subscribers", "add", "b@example.org", "--confirmed", cwd=tmp_path
            ).returncode
            == 0
        )
        assert run("--config", str(config), "pull", cwd=tmp_path).returncode == 0
        [message] = receiver.received
        _verified(message)
        with pytest.raises(AssertionError):
            _verified(message, secrets.token_bytes(32))


def test_an_endpoint_on_a_private_address_is_refused_unless_allowed(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        config = write_config(
            tmp_path,
            f'{SEEDS_SOURCE}\n[[webhooks_out]]\nurl = "{receiver.url("/hook")}"\nsecret = "{SECRET}"\n'
            'events = ["article.new"]\n',
        )
        pulled = run("--config", str(config), "pull", cwd=tmp_path)
        assert pulled.returncode == 0 and "40 to retry" in pulled.stderr
        assert receiver.received == []
        settings = load_settings(config)
        with open_store(settings.database.path) as store:
            errors = {e.last_error for e in store.queued_events()}
        assert len(errors) == 1 and "a loopback address" in str(errors.pop())


def test_bad_webhook_settings_say_what_and_where(tmp_path: Path) -> None:
    for body, said in (
        ('[[webhooks_out]]\nurl = "ftp://x.example/"\nsecret = "' + SECRET + '"\n', "webhooks_out[0].url"),
        ('[[webhooks_out]]\nurl = "https://x.example/"\nsecret = "short"\n', "the secret must be"),
        ('[[webhooks_out]]\nurl = "https://x.example/"\nsecret_env = "NOPE_UNSET"\n', "NOPE_UNSET is not set"),
        ('[[webhooks_out]]\nurl = "https://x.example/"\nsecret = "' + SECRET + '"\nevents = ["article.old"]\n',
         "'article.old' is not one of"),
    ):  # fmt: skip
        config = write_config(tmp_path, body)
        done = run("--config", str(config), "sources", "list", cwd=tmp_path)
        assert done.returncode == 1 and said in done.stderr and done.stderr.count("\n") == 1, (
            said,
            done.stderr,
        )


def test_endpoints_are_added_and_removed_through_the_api(tmp_path: Path) -> None:
    from .helpers import settings_for

    settings = settings_for(tmp_path, f"[fetch]\nallow_private = true\n{SEEDS_SOURCE}")
    token = new_token()
    with open_store(settings.database.path) as store:
        store.create_token("ops", "write", hashed(token))
    with (
        WebhookReceiver() as receiver,
        AppServer(settings) as app,
        httpx.Client(base_url=app.url("/api/v1")) as client,
    ):
        auth = {"authorization": f"Bearer {token}"}
        made = client.post(
            "/webhooks", headers=auth, json={"url": receiver.url("/in"), "events": ["subscriber.confirmed"]}
        )
        assert made.status_code == 201, made.text
        hook = made.json()
        assert hook["secret"].startswith("whsec_") and hook["events"] == ["subscriber.confirmed"]
        listed = client.get("/webhooks", headers=auth).json()["items"]
        assert [(w["id"], w["origin"]) for w in listed] == [(hook["id"], "api")] and "secret" not in listed[0]
        assert client.post("/webhooks", headers=auth, json={"url": receiver.url("/in")}).status_code == 409
        assert (
            client.post(
                "/subscribers", headers=auth, json={"email": "c@example.org", "confirmed": True}
            ).status_code
            == 201
        )
        with open_store(settings.database.path) as store:
            collect(store, settings, utcnow())
            assert deliver(store, settings, "test", utcnow()).delivered == 1
        [message] = receiver.received
        key = base64.b64decode(hook["secret"].removeprefix("whsec_"))
        assert _verified(message, key)["data"]["email"] == "c@example.org"
        assert client.delete(f"/webhooks/{hook['id']}", headers=auth).status_code == 204
        assert client.delete(f"/webhooks/{hook['id']}", headers=auth).status_code == 404
