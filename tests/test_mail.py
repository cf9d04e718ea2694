"""Email digests end to end: a real SMTP server (aiosmtpd) on 127.0.0.1, the ledger, faults."""

from __future__ import annotations

import asyncio
import ssl
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme

from digest.common.dates import utcnow
from digest.common.errors import SendError
from digest.config import Settings
from digest.intake.pull import pull
from digest.mail.channels import transport_for
from digest.mail.compose import Outgoing
from digest.mail.send import Mailer, send_all
from digest.store import Store, open_store
from digest.subscribers.lifecycle import add, bindings, unsubscribe
from digest.subscribers.tokens import read, secret_for

from .helpers import SEEDS_SOURCE, rss, settings_for, silent_port, smtp_section
from .servers import AppServer, FeedServer, Reply, SmtpSink


def _settings(tmp_path: Path, sink: SmtpSink, extra: str = "", sources: str = "") -> Settings:
    smtp = smtp_section(sink.port, sender="Digest <digest@news.example.org>", timeout="5s")
    return settings_for(
        tmp_path, f'[site]\nbase_url = "https://news.example.org"\n{smtp}{extra}{sources or SEEDS_SOURCE}'
    )


def _people(store: Store) -> dict[str, int]:
    ids = {}
    ids["ann"] = add(store, "ann@example.org", confirmed=True).id
    ids["bob"] = add(store, "bob@example.org", regions=["europe"], confirmed=True).id
    ids["carol"] = add(store, "carol@example.org").id  # pending
    ids["dave"] = add(store, "dave@example.org", confirmed=True).id
    unsubscribe(store, ids["dave"])
    return ids


def _send(store: Store, settings: Settings, **kwargs: object) -> list:  # type: ignore[type-arg]
    return asyncio.run(send_all(store, settings, **kwargs))  # type: ignore[arg-type]


def _by_rcpt(sink: SmtpSink) -> dict[str, list[EmailMessage]]:
    found: dict[str, list[EmailMessage]] = {}
    for rcpts, message in sink.messages:
        for rcpt in rcpts:
            found.setdefault(rcpt, []).append(message)
    return found


def test_digest_reaches_each_active_subscriber_once_with_their_selection(
    smtp: SmtpSink, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, smtp)
    with open_store(settings.database.path) as store:
        pull(settings, store)
        ids = _people(store)
        [report] = _send(store, settings)
        secret = secret_for(store, None)
        europe = {a.title for a in store.articles(region="europe")}
    assert (report.sent, report.failed, report.deferred) == (2, 0, 0)
    received = _by_rcpt(smtp)
    assert sorted(received) == [
        "ann@example.org",
        "bob@example.org",
    ]  # not pending carol, not unsubscribed dave
    bob = received["bob@example.org"][0]
    assert bob["From"] == "Digest <digest@news.example.org>" and bob["To"] == "bob@example.org"
    assert bob["Message-ID"].endswith("@news.example.org>")
    assert bob["List-Id"] == "Digest <digest.news.example.org>"
    assert bob["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = bob["List-Unsubscribe"].strip("<>").rsplit("/", 1)[1]
    with open_store(settings.database.path) as store:
        assert read(secret, token, "unsubscribe", bindings(store, "unsubscribe")) == ids["bob"]
    assert bob["Subject"].split(":")[0].endswith("new articles")
    text = bob.get_body(("plain",)).get_content()
    html = bob.get_body(("html",)).get_content()
    assert "<script" not in html and "style=" in html  # CSS inlined, nothing active
    assert "https://news.example.org/digests/" in html and "bob@example.org" in text
    titles_in_mail = [t for t in europe if t in text]
    assert titles_in_mail  # bob's digest holds his region's articles...
    ann_text = received["ann@example.org"][0].get_body(("plain",)).get_content()
    assert ann_text.count("\n* ") > text.count("\n* ")  # ...and fewer than ann's, who gets everything
    # Each message declared its true size (RFC 1870) before it was sent.
    assert [options for options, _ in smtp.sizes] == [f"SIZE={size}" for _, size in smtp.sizes]


@pytest.mark.parametrize("crlf", [True, False])
def test_lines_of_dots_arrive_as_they_were(smtp: SmtpSink, tmp_path: Path, crlf: bool) -> None:
    lines = [
        b"From: a@example.org",
        b"To: b@example.org",
        b"Subject: dots",
        b"",
        b".NET",
        b"..",
        b".",
        b"end",
    ]
    data = b"\r\n".join(lines) + b"\r\n"
    message = Outgoing("a@example.org", ("b@example.org",), data, crlf=crlf)

    async def send() -> str:
        async with transport_for(_settings(tmp_path, smtp)) as channel:
            return await channel.send(message, "dots")

    assert asyncio.run(send()).startswith("2.0.0")
    assert smtp.raw == [data]  # a lone "." did not end it early; no dot was lost or added


def test_a_rerun_sends_nothing_and_new_articles_go_out_once(
    server: FeedServer, smtp: SmtpSink, tmp_path: Path
) -> None:
    server.routes["/f.xml"] = Reply(
        200, rss([{"title": "First story", "link": "https://x.org/1", "description": "One."}])
    )
    settings = _settings(tmp_path, smtp, sources=f'[[sources]]\nname = "f"\nurl = "{server.url("/f.xml")}"\n')
    with open_store(settings.database.path) as store:
        pull(settings, store)
        add(store, "ann@example.org", confirmed=True)
        _send(store, settings)
        assert _send(store, settings) == []  # nothing new: no email
        server.routes["/f.xml"] = Reply(
            200,
            rss(
                [
                    {"title": "Second story", "link": "https://x.org/2", "description": "Two."},
                    {"title": "First story", "link": "https://x.org/1", "description": "One."},
                ]
            ),
        )
        pull(settings, store)
        later = utcnow() + timedelta(seconds=2)
        [report] = _send(store, settings, now=later)
    assert report.sent == 1
    first, second = (m.get_body(("plain",)).get_content() for _, m in smtp.messages)
    assert "First story" in first and "Second story" in second and "First story" not in second


def test_faults_then_a_second_run_leaves_everyone_with_exactly_one_digest(
    smtp: SmtpSink, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, smtp, extra="")
    with open_store(settings.database.path) as store:
        pull(settings, store)
        for n in range(8):
            add(store, f"reader{n}@example.org", confirmed=True)
        smtp.reject = {"reader3@example.org"}  # 550: failed for good, not retried
        smtp.fail_after = 3  # then 421 to everything
        smtp.drop_next = 1  # and one dropped connection on the way
        mailer_backoff = {"transport": None}
        [first] = _send(store, settings, **{k: v for k, v in mailer_backoff.items() if v})
        # 3 accepted before the 421s, reader3 refused for good, the other 4 left pending.
        assert (first.sent, first.failed, first.deferred) == (3, 1, 4)
        smtp.fail_after = None  # the server recovers
        reports = _send(store, settings)
        ledger = store.conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall()
    counts = {rcpt: len(msgs) for rcpt, msgs in _by_rcpt(smtp).items()}
    assert counts == {f"reader{n}@example.org": 1 for n in range(8) if n != 3}
    assert reports[0].sent == 4 and not reports[0].deferred  # the resumed digest finished
    # reader3, never delivered, is in the next digest too, refused again (a second strike).
    assert [(r.sent, r.failed) for r in reports[1:]] == [(0, 1)]
    assert dict(ledger) == {"sent": 7, "failed": 2}


def test_a_dead_server_stops_the_run_and_loses_nothing(tmp_path: Path) -> None:
    with SmtpSink() as sink:
        settings = _settings(tmp_path, sink)
    with open_store(settings.database.path) as store:  # the server is gone now
        pull(settings, store)
        add(store, "ann@example.org", confirmed=True)
        with pytest.raises(SendError, match=f"cannot connect to 127.0.0.1:{sink.port}"):
            _send(store, settings)
        pending = store.conn.execute("SELECT count(*) FROM deliveries WHERE status = 'pending'").fetchone()[0]
        assert pending == 1
        with SmtpSink(port=sink.port) as back:  # it comes back: the next run resumes
            [report] = _send(store, settings)
    assert report.sent == 1 and back.recipients() == ["ann@example.org"]


def test_starttls_and_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the client trusts the test CA
    with SmtpSink(tls_context=server_context, users={"digest": "s3cret"}) as sink:
        text = smtp_section(sink.port, security="starttls", username="digest", timeout="5s") + SEEDS_SOURCE
        good = settings_for(tmp_path, text, env={"DIGEST_SMTP_PASSWORD": "s3cret"})
        bad = settings_for(tmp_path, text, env={"DIGEST_SMTP_PASSWORD": "wrong"})
        with open_store(good.database.path) as store:
            pull(good, store)
            add(store, "ann@example.org", confirmed=True)
            with pytest.raises(SendError, match=f"SMTP 127.0.0.1:{sink.port}: authentication failed: 535"):
                _send(store, bad)
            [report] = _send(store, good)
        assert report.sent == 1 and sink.recipients() == ["ann@example.org"]


def test_source_html_is_sanitised_and_headers_stay_clean(
    server: FeedServer, smtp: SmtpSink, tmp_path: Path
) -> None:
    evil = "<![CDATA[<p onclick='x()'>Hi<script>steal()</script><a href='javascript:bad()'>link</a></p>]]>"
    title = "Bad&#13;&#10;Bcc: victim@example.org title"
    server.routes["/f.xml"] = Reply(
        200, rss([{"title": title, "link": "https://x.org/e", "description": evil}])
    )
    settings = _settings(tmp_path, smtp, sources=f'[[sources]]\nname = "f"\nurl = "{server.url("/f.xml")}"\n')
    with open_store(settings.database.path) as store:
        pull(settings, store)
        add(store, "ann@example.org", confirmed=True)
        _send(store, settings)
    [(rcpts, message)] = smtp.messages
    assert rcpts == ["ann@example.org"] and message["Bcc"] is None
    raw = message.as_string()
    for bad in ("<script", "steal()", "onclick", "javascript:"):
        assert bad not in raw
    assert "Bad Bcc: victim@example.org title" in message.get_body(("plain",)).get_content()


def test_outbox_when_no_smtp_is_configured(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, f'[outbox]\npath = "out"\n{SEEDS_SOURCE}')
    with open_store(settings.database.path) as store:
        pull(settings, store)
        add(store, "ann@example.org", confirmed=True)
        [report] = _send(store, settings)
        assert _send(store, settings) == []
        digest_id = store.digests()[0].digest.id
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert report.sent == 1 and files == [f"{digest_id}-1.eml"]


def test_each_distinct_selection_is_rendered_once(
    smtp: SmtpSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.mail import compose

    calls = []
    real = compose.render

    def counting(*args: object, **kwargs: object) -> compose.Rendered:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(compose, "render", counting)
    settings = _settings(tmp_path, smtp)
    with open_store(settings.database.path) as store:
        pull(settings, store)
        for n in range(6):
            add(store, f"all{n}@example.org", confirmed=True)
            add(store, f"eu{n}@example.org", regions=["europe"], confirmed=True)
        [report] = _send(store, settings)
    assert report.sent == 12 and len(calls) == 2


def test_preferences_filter_by_theme(tmp_path: Path, smtp: SmtpSink) -> None:
    settings = _settings(tmp_path, smtp)
    with open_store(settings.database.path) as store:
        pull(settings, store)
        row = add(store, "tess@example.org", themes=["party-relations"], confirmed=True)
        assert row.themes == ("party-relations",)
        _send(store, settings)
        party = {a.title for a in store.articles(theme="party-relations")}
    text = smtp.messages[0][1].get_body(("plain",)).get_content()
    listed = [line[2:] for line in text.splitlines() if line.startswith("* ")]
    also = [line[4:].rsplit(": http", 1)[0] for line in text.splitlines() if line.startswith("  - ")]
    assert sorted(listed + also) == sorted(party)  # every article on the theme, and no other


def test_a_silent_or_tls_refusing_server_is_one_clear_error(tmp_path: Path) -> None:
    with silent_port() as port:  # it takes the connection and never greets
        for security, words in (("none", "cannot connect"), ("tls", "cannot connect")):
            text = smtp_section(port, security=security, timeout="1s") + SEEDS_SOURCE
            settings = settings_for(tmp_path, text)
            with open_store(settings.database.path) as store:
                if store.count_articles() == 0:
                    pull(settings, store)
                    add(store, "ann@example.org", confirmed=True)
                with pytest.raises(SendError, match=words):
                    _send(store, settings)
                assert (
                    store.conn.execute("SELECT count(*) FROM deliveries WHERE status = 'pending'").fetchone()[
                        0
                    ]
                    == 1
                )


def test_content_cannot_reach_a_subscribers_links_or_address(
    server: FeedServer, smtp: SmtpSink, tmp_path: Path
) -> None:
    # The review's attack: an item carrying the personalisation markers in its link, title
    # and text, hoping each subscriber's copy fills in their own links and address.
    bait = "https://evil.example/t?u=@@UNSUBSCRIBE_URL@@&p=@@PREFERENCES_URL@@&e=@@EMAIL@@"
    server.routes["/f.xml"] = Reply(
        200,
        rss(
            [
                {
                    "title": "Win a prize @@EMAIL@@ @@UNSUBSCRIBE_URL@@",
                    "link": bait.replace("&", "&amp;"),
                    "description": "Go to @@PREFERENCES_URL@@ now, @@EMAIL@@.",
                }
            ]
        ),
    )
    settings = _settings(tmp_path, smtp, sources=f'[[sources]]\nname = "f"\nurl = "{server.url("/f.xml")}"\n')
    with open_store(settings.database.path) as store:
        pull(settings, store)
        for name in ("ann", "bob"):
            add(store, f"{name}@example.org", confirmed=True)
        [report] = _send(store, settings)
    assert report.sent == 2
    for address, [message] in _by_rcpt(smtp).items():
        unsubscribe = message["List-Unsubscribe"].strip("<>")
        token = unsubscribe.rsplit("/", 1)[1]
        for part in ("plain", "html"):
            body = message.get_body((part,)).get_content()
            # The subscriber's own links and address appear only where the template put them
            # (the footer), once each; the source's text keeps its markers as plain text.
            assert body.count(token) == 1, (address, part)
            assert body.count("/preferences/") == 1, (address, part)
            assert body.count(address) == 1, (address, part)
            assert "@@UNSUBSCRIBE_URL@@" in body and "@@EMAIL@@" in body


def test_a_big_digest_says_how_many_and_links_them_all(
    server: FeedServer, smtp: SmtpSink, tmp_path: Path
) -> None:
    import hashlib

    import httpx

    # 100 unrelated articles (distinct words, so no two are one story).
    titles = [
        " ".join(hashlib.sha256(f"{n}-{k}".encode()).hexdigest()[:7] for k in range(3)) for n in range(100)
    ]
    items = [{"title": t, "link": f"https://x.org/{n}", "description": t} for n, t in enumerate(titles)]
    server.routes["/f.xml"] = Reply(200, rss(items))
    settings = _settings(tmp_path, smtp, sources=f'[[sources]]\nname = "f"\nurl = "{server.url("/f.xml")}"\n')
    with open_store(settings.database.path) as store:
        pull(settings, store)
        add(store, "ann@example.org", confirmed=True)
        [report] = _send(store, settings)
    [(_, message)] = smtp.messages
    assert message["Subject"].startswith("100 new articles")
    text = message.get_body(("plain",)).get_content()
    shown = sum(f"* {t}" in text for t in titles)
    assert 0 < shown < 100  # a size limit is fine...
    view = f"https://news.example.org/digests/{report.digest_id}"
    assert f"{100 - shown} more" in text and view in text  # ...but it says so, and where the rest is
    with AppServer(settings) as app, httpx.Client() as client:
        copy = client.get(app.url(f"/digests/{report.digest_id}"))
    assert all(f">{t}</a>" in copy.text for t in titles)  # the web copy lists them all


def test_a_long_deferral_never_sends_one_article_twice(
    server: FeedServer, smtp: SmtpSink, tmp_path: Path
) -> None:
    first = {"title": "Alpha story", "link": "https://x.org/a", "description": "A."}
    second = {"title": "Bravo story", "link": "https://x.org/b", "description": "B."}
    server.routes["/f.xml"] = Reply(200, rss([first]))
    settings = _settings(tmp_path, smtp, sources=f'[[sources]]\nname = "f"\nurl = "{server.url("/f.xml")}"\n')
    with open_store(settings.database.path) as store:
        pull(settings, store)
        add(store, "ann@example.org", confirmed=True)
        smtp.fail_after = 0  # the server answers 421 to everything, through two sends
        _send(store, settings)
        server.routes["/f.xml"] = Reply(200, rss([second, first]))
        pull(settings, store)
        _send(store, settings)
        assert smtp.messages == []
        smtp.fail_after = None  # it recovers
        _send(store, settings)
        assert _send(store, settings) == []
    bodies = [m.get_body(("plain",)).get_content() for _, m in smtp.messages]
    assert sum("Alpha story" in b for b in bodies) == 1 and sum("Bravo story" in b for b in bodies) == 1


def test_each_digest_starts_where_the_last_one_delivered_ended(
    server: FeedServer, smtp: SmtpSink, tmp_path: Path
) -> None:
    stories = [
        {"title": f"{word} story", "link": f"https://x.org/{word}", "description": word}
        for word in ("Alpha", "Bravo", "Charlie")
    ]
    settings = _settings(tmp_path, smtp, sources=f'[[sources]]\nname = "f"\nurl = "{server.url("/f.xml")}"\n')
    with open_store(settings.database.path) as store:
        add(store, "ann@example.org", confirmed=True)
        for n in range(1, 4):  # three digests, one new story before each
            server.routes["/f.xml"] = Reply(200, rss(stories[:n]))
            pull(settings, store)
            _send(store, settings)
    bodies = [m.get_body(("plain",)).get_content() for _, m in smtp.messages]
    assert [[w for w in ("Alpha", "Bravo", "Charlie") if f"{w} story" in b] for b in bodies] == [
        ["Alpha"],
        ["Bravo"],
        ["Charlie"],  # from the latest delivered digest, not the first
    ]


def test_someone_who_unsubscribes_after_planning_gets_nothing(smtp: SmtpSink, tmp_path: Path) -> None:
    settings = _settings(tmp_path, smtp)
    with open_store(settings.database.path) as store:
        pull(settings, store)
        ann = add(store, "ann@example.org", confirmed=True)
        add(store, "bob@example.org", confirmed=True)
        mailer = Mailer(store, settings)
        digest_id = asyncio.run(mailer.plan())
        assert digest_id is not None
        unsubscribe(store, ann.id)  # between planning and sending
        from digest.mail.channels import transport_for

        async def deliver() -> object:
            async with transport_for(settings) as channel:
                return await mailer.deliver(digest_id, channel)

        report = asyncio.run(deliver())
        counts = store.delivery_counts(digest_id)
    assert smtp.recipients() == ["bob@example.org"]
    assert (report.sent, report.skipped) == (1, 1) and counts == {"sent": 1, "failed": 1}  # type: ignore[attr-defined]
