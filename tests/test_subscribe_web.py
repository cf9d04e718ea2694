"""The subscriber pages over real HTTP: subscribe, confirm, unsubscribe (one-click POST),
preferences, with confirmations landing in the outbox."""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from digest.config import Settings
from digest.ingest import pull
from digest.mail.send import Mailer
from digest.store import Store
from digest.tokens import make, secret_for

from .conftest import SEEDS, AppServer, settings_for


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[AppServer, Settings, Path]]:
    settings = settings_for(
        tmp_path, f'[outbox]\npath = "out"\n[[sources]]\nname = "seeds"\nurl = "{SEEDS}"\n'
    )
    with Store.open(settings.database.path) as store:
        pull(settings, store)
    with AppServer(settings) as server:
        yield server, settings, tmp_path / "out"


def _token(client: httpx.Client) -> str:
    match = re.search(r'name="form_token" value="([^"]+)"', client.get("/subscribe").text)
    assert match
    return match.group(1)


def _confirm_link(outbox: Path) -> str:
    [mail] = [p for p in outbox.iterdir() if p.name.startswith("confirm-")]
    text = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default).get_content()
    match = re.search(r"http://\S+/confirm/\S+", text)
    assert match, text
    return match.group(0)


def test_double_opt_in(site: tuple[AppServer, Settings, Path]) -> None:
    server, settings, outbox = site
    with httpx.Client(base_url=server.url("")) as client:
        form = client.get("/subscribe")
        assert (
            form.status_code == 200 and 'name="email"' in form.text and 'value="southeast-asia"' in form.text
        )
        answer = client.post(
            "/subscribe",
            data={"email": "Ann@Example.org", "region": ["europe", "africa"], "form_token": _token(client)},
        )
        assert answer.status_code == 200 and "Check your inbox" in answer.text
        with Store.open(settings.database.path) as store:
            row = store.subscriber(email="Ann@example.org")
        assert (
            row is not None
            and row["status"] == "pending"
            and json.loads(row["regions"]) == ["europe", "africa"]
        )
        link = _confirm_link(outbox)
        path = link.split("127.0.0.1:8080")[1]
        assert "Subscribed" in client.get(path).text
        with Store.open(settings.database.path) as store:
            assert store.subscriber(email="ann@example.org")["status"] == "active"  # type: ignore[index]
        # Asking again gives the same answer and sends nothing new: nothing is revealed.
        again = client.post("/subscribe", data={"email": "ann@example.org", "form_token": _token(client)})
        assert again.text == answer.text.replace("Ann@Example.org", "ann@example.org").replace(
            "Ann@example.org", "ann@example.org"
        )
        assert len([p for p in outbox.iterdir() if p.name.startswith("confirm-")]) == 1


def test_bad_input_and_bad_tokens(site: tuple[AppServer, Settings, Path]) -> None:
    server, settings, _ = site
    with httpx.Client(base_url=server.url("")) as client:
        bad = client.post("/subscribe", data={"email": "not an address", "form_token": _token(client)})
        assert bad.status_code == 400 and "is not a valid email address" in bad.text
        wrong_region = client.post(
            "/subscribe", data={"email": "x@example.org", "region": "atlantis", "form_token": _token(client)}
        )
        assert wrong_region.status_code == 400
        with Store.open(settings.database.path) as store:
            secret = secret_for(store, None)
            expired = make(secret, "confirm", 1, ttl=-10)
        for path in (
            f"/confirm/{expired}",
            "/confirm/garbage",
            "/unsubscribe/x.y",
            f"/preferences/{make(b'other-secret', 'preferences', 1)}",
        ):
            response = client.get(path)
            assert response.status_code == 400 and "not valid" in response.text, path


def test_one_click_unsubscribe_and_preferences(site: tuple[AppServer, Settings, Path]) -> None:
    server, settings, _ = site
    from digest.subscribers import add

    with Store.open(settings.database.path) as store:
        row = add(store, "bob@example.org", confirmed=True)
        mailer = Mailer(store, settings)
        unsubscribe_url, preferences_url = mailer.links(int(str(row["id"])))
    unsubscribe_path = unsubscribe_url.split("127.0.0.1:8080")[1]
    preferences_path = preferences_url.split("127.0.0.1:8080")[1]
    with httpx.Client(base_url=server.url("")) as client:
        page = client.get(preferences_path)
        assert page.status_code == 200 and "bob@example.org" in page.text
        saved = client.post(preferences_path, data={"theme": ["party-relations", "trade-investment"]})
        assert "Saved" in saved.text
        with Store.open(settings.database.path) as store:
            assert json.loads(store.subscriber(email="bob@example.org")["themes"]) == [
                "party-relations",
                "trade-investment",
            ]  # type: ignore[index]
        shown = client.get(unsubscribe_path)  # a GET (a link scanner) changes nothing
        assert "Unsubscribe" in shown.text and "<button" in shown.text
        with Store.open(settings.database.path) as store:
            assert store.subscriber(email="bob@example.org")["status"] == "active"  # type: ignore[index]
        done = client.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and "Unsubscribed" in done.text
        with Store.open(settings.database.path) as store:
            assert store.subscriber(email="bob@example.org")["status"] == "unsubscribed"  # type: ignore[index]


def test_subscribe_is_rate_limited(site: tuple[AppServer, Settings, Path]) -> None:
    server, _, _ = site
    with httpx.Client(base_url=server.url("")) as client:
        codes = [
            client.post(
                "/subscribe", data={"email": "same@example.org", "form_token": _token(client)}
            ).status_code
            for _ in range(5)
        ]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429


def test_web_copies_of_digests(site: tuple[AppServer, Settings, Path]) -> None:
    import asyncio

    from digest.mail.send import send_all
    from digest.subscribers import add

    server, settings, _ = site
    with Store.open(settings.database.path) as store:
        add(store, "ann@example.org", confirmed=True)
        [report] = asyncio.run(send_all(store, settings))
    with httpx.Client(base_url=server.url("")) as client:
        listing = client.get("/digests/")
        assert listing.status_code == 200 and f"/digests/{report.digest_id}" in listing.text
        copy = client.get(f"/digests/{report.digest_id}")
        assert copy.status_code == 200 and "new articles" in copy.text and "ann@example.org" not in copy.text
        assert client.get("/digests/nope").status_code == 404


def test_forms_resist_cross_site_requests_and_pages_carry_security_headers(
    site: tuple[AppServer, Settings, Path],
) -> None:
    server, _, _ = site
    with httpx.Client(base_url=server.url("")) as client:
        assert client.post("/subscribe", data={"email": "x@example.org"}).status_code == 403  # no form token
        forged = client.post("/subscribe", data={"email": "x@example.org", "form_token": "a.b"})
        assert forged.status_code == 403
        cross = client.post(
            "/subscribe",
            data={"email": "x@example.org", "form_token": _token(client)},
            headers={"Origin": "https://evil.example"},
        )
        assert cross.status_code == 403
        for path in ("/", "/feed.atom", "/subscribe", "/nowhere"):
            headers = client.get(path).headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"], path
            assert (
                headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
            )
        huge = client.post(
            "/subscribe",
            content=b"email=" + b"a" * 200_000,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert huge.status_code == 413
