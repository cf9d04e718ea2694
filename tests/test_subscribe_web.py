"""The subscriber pages over real HTTP: subscribe, confirm, unsubscribe (one-click POST),
preferences, with confirmations landing in the outbox."""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from digest.config import Settings
from digest.mail.send import Mailer
from digest.store import open_store
from digest.subscribers.tokens import make, secret_for

from .helpers import SEEDS_SOURCE, free_port, pulled, settings_for, smtp_section, wait_for
from .servers import AppServer, SmtpSink


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[AppServer, Settings, Path]]:
    settings = settings_for(tmp_path, f'[outbox]\npath = "out"\n{SEEDS_SOURCE}')
    pulled(settings)
    with AppServer(settings) as server:
        yield server, settings, tmp_path / "out"


def _client(server: AppServer) -> httpx.Client:
    """A client that sends what a browser sends on our forms: the page's Origin."""
    return httpx.Client(base_url=server.url(""), headers={"Origin": server.url("")})


def store_signups(settings: Settings) -> list[dict[str, object]]:
    with open_store(settings.database.path) as store:
        return store.signups()


def _token(client: httpx.Client) -> str:
    match = re.search(r'name="form_token" value="([^"]+)"', client.get("/subscribe").text)
    assert match
    return match.group(1)


def _confirmations(outbox: Path) -> list[Path]:
    return [p for p in outbox.iterdir() if p.name.startswith("confirm-")] if outbox.is_dir() else []


def _confirm_link(outbox: Path) -> str:
    [mail] = wait_for(lambda: _confirmations(outbox), "a confirmation in the outbox", 10, every=0.05)
    text = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default).get_content()
    match = re.search(r"http://\S+/confirm/\S+", text)
    assert match, text
    return match.group(0)


def _path(link: str) -> str:
    return link.split("127.0.0.1:8080")[1]


def test_double_opt_in(site: tuple[AppServer, Settings, Path]) -> None:
    server, settings, outbox = site
    with _client(server) as client:
        form = client.get("/subscribe")
        assert (
            form.status_code == 200 and 'name="email"' in form.text and 'value="southeast-asia"' in form.text
        )
        answer = client.post(
            "/subscribe",
            data={"email": "Ann@Example.org", "region": ["europe", "africa"], "form_token": _token(client)},
        )
        assert answer.status_code == 200 and "Check your inbox" in answer.text
        path = _path(_confirm_link(outbox))
        with open_store(settings.database.path) as store:
            row = store.subscriber(email="Ann@example.org")
        assert row is not None and row.status == "pending" and list(row.regions) == ["europe", "africa"]
        shown = client.get(path)  # a GET (a link scanner) only shows the button
        assert shown.status_code == 200 and "<button" in shown.text
        with open_store(settings.database.path) as store:
            assert store.subscriber(email="ann@example.org").status == "pending"  # type: ignore[union-attr]
        assert "Subscribed" in client.post(path).text
        with open_store(settings.database.path) as store:
            assert store.subscriber(email="ann@example.org").status == "active"  # type: ignore[union-attr]
        # Asking again gives the same answer and sends nothing new: nothing is revealed.
        again = client.post("/subscribe", data={"email": "ann@example.org", "form_token": _token(client)})
        assert again.text == answer.text.replace("Ann@Example.org", "ann@example.org").replace(
            "Ann@example.org", "ann@example.org"
        )
        wait_for(lambda: not store_signups(settings), "the sign-up queue sent", 10, every=0.05)
        assert len(_confirmations(outbox)) == 1


def test_bad_input_and_bad_tokens(site: tuple[AppServer, Settings, Path]) -> None:
    server, settings, _ = site
    with _client(server) as client:
        bad = client.post("/subscribe", data={"email": "not an address", "form_token": _token(client)})
        assert bad.status_code == 400 and "is not a valid email address" in bad.text
        foreign = client.post("/subscribe", data={"email": "jörg@example.org", "form_token": _token(client)})
        assert foreign.status_code == 400 and "is not a valid email address" in foreign.text
        wrong_region = client.post(
            "/subscribe", data={"email": "x@example.org", "region": "atlantis", "form_token": _token(client)}
        )
        assert wrong_region.status_code == 400
        with open_store(settings.database.path) as store:
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
    from digest.subscribers.lifecycle import add

    with open_store(settings.database.path) as store:
        row = add(store, "bob@example.org", confirmed=True)
        mailer = Mailer(store, settings)
        unsubscribe_url, preferences_url = mailer.links(row)
    unsubscribe_path, preferences_path = _path(unsubscribe_url), _path(preferences_url)
    with _client(server) as client:
        page = client.get(preferences_path)
        assert page.status_code == 200 and "bob@example.org" in page.text
        saved = client.post(preferences_path, data={"theme": ["party-relations", "trade-investment"]})
        assert "Saved" in saved.text
        with open_store(settings.database.path) as store:
            assert list(store.subscriber(email="bob@example.org").themes) == [  # type: ignore[union-attr]
                "party-relations",
                "trade-investment",
            ]  # type: ignore[index]
        shown = client.get(unsubscribe_path)  # a GET (a link scanner) changes nothing
        assert "Unsubscribe" in shown.text and "<button" in shown.text
        with open_store(settings.database.path) as store:
            assert store.subscriber(email="bob@example.org").status == "active"  # type: ignore[union-attr]
        done = client.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and "Unsubscribed" in done.text
        with open_store(settings.database.path) as store:
            assert store.subscriber(email="bob@example.org").status == "unsubscribed"  # type: ignore[union-attr]


def test_subscribe_is_rate_limited(site: tuple[AppServer, Settings, Path]) -> None:
    server, _, _ = site
    with _client(server) as client:
        codes = [
            client.post(
                "/subscribe", data={"email": "same@example.org", "form_token": _token(client)}
            ).status_code
            for _ in range(5)
        ]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429


def test_limits_count_an_ipv6_client_by_its_64_and_an_ipv4_one_by_its_address(
    site: tuple[AppServer, Settings, Path],
) -> None:
    """One host holds a whole /64: thirty addresses of one /64 are one client to the form's
    limit and to the search's, as to the SMTP receiver's; two IPv4 neighbours are two."""
    server, _, _ = site

    def signups(clients: list[str]) -> list[int]:
        with _client(server) as client:
            return [
                client.post(
                    "/subscribe",
                    data={"email": f"reader{n}@example.org", "form_token": _token(client)},
                    headers={"X-Forwarded-For": address},  # as behind a proxy
                ).status_code
                for n, address in enumerate(clients)
            ]

    one_64 = signups([f"2001:db8:1:2:{n:x}::{n + 1:x}" for n in range(30)])
    assert one_64[:10] == [200] * 10 and set(one_64[10:]) == {429}
    neighbours = signups([f"198.51.100.{n}" for n in range(1, 13)])
    assert neighbours == [200] * 12
    with httpx.Client(base_url=server.url("")) as client:
        searched = [
            client.get(
                "/search", params={"q": f"laos {n}"}, headers={"X-Forwarded-For": f"2001:db8:9:9::{n:x}"}
            )
            for n in range(62)
        ]
    assert [a.status_code for a in searched][:60] == [200] * 60 and searched[60].status_code == 429


def test_web_copies_of_digests(site: tuple[AppServer, Settings, Path]) -> None:
    import asyncio

    from digest.mail.send import send_all
    from digest.subscribers.lifecycle import add

    server, settings, _ = site
    with open_store(settings.database.path) as store:
        add(store, "ann@example.org", confirmed=True)
        [report] = asyncio.run(send_all(store, settings))
    with _client(server) as client:
        listing = client.get("/digests/")
        assert listing.status_code == 200 and f"/digests/{report.digest_id}" in listing.text
        assert "sent" not in listing.text  # how many people got it is nobody's business
        copy = client.get(f"/digests/{report.digest_id}")
        assert copy.status_code == 200 and "new articles" in copy.text and "ann@example.org" not in copy.text
        assert ("digest", report.digest_id) in server.app.state.cache._entries  # kept like other pages
        again = client.get(f"/digests/{report.digest_id}", headers={"If-None-Match": copy.headers["etag"]})
        assert again.status_code == 304
        assert client.get("/digests/nope").status_code == 404


def test_forms_resist_cross_site_requests_and_pages_carry_security_headers(
    site: tuple[AppServer, Settings, Path],
) -> None:
    from digest.subscribers.lifecycle import add

    server, settings, _ = site
    with open_store(settings.database.path) as store:
        unsubscribe, preferences = Mailer(store, settings).links(
            add(store, "bob@example.org", confirmed=True)
        )
    with httpx.Client(base_url=server.url("")) as bare:  # no Origin, no Referer
        form = {"email": "x@example.org", "form_token": _token(bare)}
        assert bare.post("/subscribe", data=form).status_code == 403
        assert bare.post(_path(preferences), data={"theme": ["party-relations"]}).status_code == 403
        referred = bare.post("/subscribe", data=form, headers={"Referer": server.url("/subscribe")})
        assert referred.status_code == 200
        elsewhere = bare.post("/subscribe", data=form, headers={"Referer": "https://evil.example/x"})
        assert elsewhere.status_code == 403
        # RFC 8058: a mail provider's one-click POST carries neither, and must work.
        one_click = bare.post(_path(unsubscribe), data={"List-Unsubscribe": "One-Click"})
        assert one_click.status_code == 200 and "Unsubscribed" in one_click.text
    with _client(server) as client:
        assert client.post("/subscribe", data={"email": "x@example.org"}).status_code == 403  # no form token
        null = client.post("/subscribe", data={"email": "x@example.org", "form_token": _token(client)},
                           headers={"Origin": "null"})  # fmt: skip
        assert null.status_code == 403
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
            # same-origin, not no-referrer: with no-referrer, browsers send "Origin: null" on a
            # form POST, and the forms need a real Origin. Other sites still get no referrer.
            assert (
                headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "same-origin"
            )
        huge = client.post(
            "/subscribe",
            content=b"email=" + b"a" * 200_000,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert huge.status_code == 413


def test_a_removed_subscribers_links_are_dead_for_whoever_comes_next(
    site: tuple[AppServer, Settings, Path],
) -> None:
    from digest.subscribers.lifecycle import add, token

    server, settings, _ = site
    base = settings.site.base_url
    with open_store(settings.database.path) as store:
        ann = add(store, "ann@example.org", confirmed=True)
        carol = add(store, "carol@example.org")  # pending: has a confirmation link
        ann_unsubscribe, ann_preferences = Mailer(store, settings).links(ann)
        carol_confirm = f"{base}/confirm/{token(secret_for(store, None), 'confirm', carol)}"
        assert store.delete_subscriber("ann@example.org") and store.delete_subscriber("carol@example.org")
        eve = add(store, "eve@example.org", confirmed=True)
        victim = add(store, "victim@example.org")  # signed up by someone else, never confirmed
    assert {eve.id, victim.id}.isdisjoint({ann.id, carol.id})  # ids are never reused
    with _client(server) as client:
        page = client.get(_path(ann_preferences))
        assert page.status_code == 400 and "eve@example.org" not in page.text
        assert client.post(_path(ann_preferences), data={"theme": ["party-relations"]}).status_code == 400
        done = client.post(_path(ann_unsubscribe), data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 400
        assert client.post(_path(carol_confirm)).status_code == 400  # no double opt-in bypass
    with open_store(settings.database.path) as store:
        assert store.subscriber(email="eve@example.org").status == "active"  # type: ignore[union-attr]
        assert store.subscriber(email="eve@example.org").themes == ()  # type: ignore[union-attr]
        assert store.subscriber(email="victim@example.org").status == "pending"  # type: ignore[union-attr]


def test_a_confirm_link_confirms_one_pending_sign_up_once(site: tuple[AppServer, Settings, Path]) -> None:
    server, settings, outbox = site

    def status() -> str:
        with open_store(settings.database.path) as store:
            return str(store.subscriber(email="ann@example.org").status)  # type: ignore[union-attr]

    with _client(server) as client:
        client.post("/subscribe", data={"email": "ann@example.org", "form_token": _token(client)})
        first = _path(_confirm_link(outbox))
        for _ in range(3):  # link scanners open it: nothing changes
            assert "<button" in client.get(first).text
        assert status() == "pending"
        assert client.post(first).status_code == 200 and status() == "active"
        assert client.post(first).status_code == 400  # used: dead
        with open_store(settings.database.path) as store:
            row = store.subscriber(email="ann@example.org")
            unsubscribe, _ = Mailer(store, settings).links(row)  # type: ignore[arg-type]
        client.post(_path(unsubscribe), data={"List-Unsubscribe": "One-Click"})
        assert status() == "unsubscribed"
        # Replaying the old confirmation cannot re-subscribe someone who left...
        assert client.post(first).status_code == 400 and status() == "unsubscribed"
        # ...but signing up again sends a new link, which works once.
        for old in _confirmations(outbox):
            old.unlink()
        client.post("/subscribe", data={"email": "ann@example.org", "form_token": _token(client)})
        second = _path(_confirm_link(outbox))
        assert second != first and client.post(first).status_code == 400
        assert client.post(second).status_code == 200 and status() == "active"


def test_the_subscribe_answer_is_the_same_for_everyone_and_confirmations_survive_a_restart(
    tmp_path: Path,
) -> None:
    import asyncio
    import statistics
    from datetime import timedelta

    from digest.common.dates import to_iso, utcnow
    from digest.mail.confirmations import drain
    from digest.subscribers.lifecycle import add

    port = free_port()  # nothing listens here: the SMTP server is down
    settings = settings_for(tmp_path, smtp_section(port, timeout="2s") + SEEDS_SOURCE)
    with open_store(settings.database.path) as store:
        for n in range(21):
            add(store, f"known{n}@example.org", confirmed=True)
    clients = iter(range(1, 10_000))

    def post(client: httpx.Client, address: str) -> tuple[int, str, float]:
        form = {"email": address, "form_token": _token(client)}
        headers = {"X-Forwarded-For": f"198.51.100.{next(clients) % 250 + 1}"}  # as behind a proxy
        started = time.perf_counter()
        answer = client.post("/subscribe", data=form, headers=headers)
        took = time.perf_counter() - started
        return answer.status_code, answer.text.replace(address, "ADDRESS"), took

    with AppServer(settings) as server, _client(server) as client:
        known = post(client, "known20@example.org")
        new = post(client, "new@example.org")
        assert known[:2] == new[:2] and known[0] == 200  # same status, same page
        timings: dict[str, list[float]] = {"known": [], "new": []}
        for n in range(20):
            for kind in ("known", "new"):
                status, _, took = post(client, f"{kind}{n}@example.org")
                assert status == 200
                timings[kind].append(took)

        def tried() -> bool:  # by the queue, on its own clock, while the server is down
            with open_store(settings.database.path) as store:
                return any(r.attempts >= 1 for r in store.signups())

        wait_for(tried, "a sign-up tried while the server is down", 10, every=0.05)
    known_ms, new_ms = (statistics.median(timings[k]) * 1000 for k in ("known", "new"))
    print(f"median answer: {known_ms:.2f} ms for a subscribed address, {new_ms:.2f} ms for a new one")
    assert abs(known_ms - new_ms) < 2 + 0.25 * min(known_ms, new_ms), (known_ms, new_ms)
    new_addresses = {"new@example.org"} | {f"new{n}@example.org" for n in range(20)}
    with open_store(settings.database.path) as store:
        assert new_addresses <= {r.email for r in store.signups()}  # nothing lost
    # The server is back and the process restarted: once the retries fall due (the clock is
    # moved, not waited for), the restarted service sends the queue by itself, once each.
    with SmtpSink(port=port) as sink, AppServer(settings):
        with open_store(settings.database.path) as store:
            store.conn.execute("UPDATE signups SET next_try = ?", [to_iso(utcnow() - timedelta(seconds=1))])
        wait_for(
            lambda: not store_signups(settings), "the queue sent once the server is back", 30, every=0.05
        )
        with open_store(settings.database.path) as store:  # nothing left: a drain now sends nothing
            later = utcnow() + timedelta(hours=2)
            assert asyncio.run(drain(lambda: store, settings, now=later, run=_inline)) == 0
            assert store.subscriber(email="new@example.org").status == "pending"  # type: ignore[union-attr]
    assert sorted(sink.recipients()) == sorted(new_addresses)  # once each, none to known addresses


async def _inline(function: Callable[..., object], *args: object) -> object:
    return function(*args)


def test_hostile_tokens_and_origins_get_a_plain_refusal(site: tuple[AppServer, Settings, Path]) -> None:
    import base64

    server, _, _ = site
    deep = base64.urlsafe_b64encode(b"[" * 3000).decode().rstrip("=") + ".x"  # nesting to crash a parser
    huge = base64.urlsafe_b64encode(b'{"p":"unsubscribe","s":1000000000000000000000000000000,"v":2}')
    forged = [deep, huge.decode().rstrip("=") + ".x"]  # an id too large for SQLite, looked up unsigned
    with _client(server) as client:
        for path in [
            f"/{kind}/{token}" for token in forged for kind in ("confirm", "unsubscribe", "preferences")
        ]:
            answer = client.get(path)
            assert answer.status_code == 400 and "content-security-policy" in answer.headers, path
        form = {"email": "x@example.org", "form_token": deep}
        assert client.post("/subscribe", data=form).status_code == 403
        # Same host, other scheme: not our page.
        https = server.url("").replace("http://", "https://")
        other = client.post(
            "/subscribe",
            data={"email": "x@example.org", "form_token": _token(client)},
            headers={"Origin": https},
        )
        assert other.status_code == 403
        odd_host = client.get("/", headers={"Host": "127.0.0.1:x@evil.example"})
        assert odd_host.status_code == 400


def test_the_confirmed_page_says_the_rhythm_the_next_delivery_and_links_the_preferences(
    site: tuple[AppServer, Settings, Path],
) -> None:
    server, settings, outbox = site
    with _client(server) as client:
        chosen = {"cadence": "daily", "timezone": "Asia/Tokyo", "hour": "7", "weekday": "mon"}
        sent = {"email": "kim@example.org", "topic": ["Laos OR Mekong", ""], **chosen}
        answer = client.post("/subscribe", data={**sent, "form_token": _token(client)})
        assert answer.status_code == 200, answer.text
        shown = client.get(_path(_confirm_link(outbox)))
        done = client.post(_path(_confirm_link(outbox)))
        assert done.status_code == 200 and "Subscribed" in done.text
        # pages of one subscriber's (the address, the preferences link) are kept by no cache
        assert shown.headers["cache-control"] == done.headers["cache-control"] == "no-store"
        # the rhythm chosen and when it first comes, in the reader's own zone
        assert "daily digest" in done.text
        when = re.search(
            r"(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday) \d+ \w+ \d{4}, 07:00 \(Asia/Tokyo\)",
            done.text,
        )
        assert when, done.text
        # and the way to change it
        link = re.search(r'href="(http://127\.0\.0\.1:8080/preferences/[^"]+)"', done.text)
        assert link, done.text
        prefs = client.get(_path(link.group(1)))
        assert prefs.status_code == 200 and "kim@example.org" in prefs.text
        assert prefs.headers["cache-control"] == "no-store"
        leave = client.get(_path(link.group(1)).replace("/preferences/", "/unsubscribe/"))
        assert leave.headers["cache-control"] == "no-store"  # even for a link that is not valid
        assert "Laos OR Mekong" in prefs.text  # the topic as typed
    with open_store(settings.database.path) as store:
        kim = store.subscriber(email="kim@example.org")
    assert kim is not None and kim.topics == ("Laos OR Mekong",)
