"""Newsletters as sources: mail sent by SMTP (aiosmtplib) to `digest run`'s receiver, for
an email source's address, becomes one sanitised article; a sender the source does not
take, and an address no source has, get 550."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from digest import newsletters
from digest.config import load_settings
from digest.store import open_store

from .conftest import write_config
from .test_bounces import Service, _eventually, _free_port
from .test_cli import run

ADDRESS = "news-xyz@in.example.org"
HTML = """<html><head><style>p {color: red}</style><script>alert(1)</script></head><body>
<p><a href="https://letters.example.com/p/issue-42?utm_source=newsletter&amp;utm_medium=email">View this email in your browser</a></p>
<img src="https://track.example.com/open.gif?u=123" width="1" height="1">
<h2>Dams on the Mekong</h2>
<p>Laos and China agreed on <b>two new dams</b>; <a href="https://example.org/mekong" onclick="steal()">the agreement</a>.</p>
<p><img src="https://cdn.example.com/photo.jpg" alt="a dam"></p>
<p><a href="javascript:alert(1)">click</a></p>
</body></html>"""


def _newsletter(subject: str, sender: str = "Ann's Letter <ann@letters.example.com>") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ADDRESS
    msg["Subject"] = subject
    msg["Date"] = "Mon, 23 Nov 2026 07:30:00 +0000"
    msg["Message-ID"] = f"<{abs(hash(subject))}@letters.example.com>"
    msg.set_content("Dams on the Mekong. Laos and China agreed on two new dams.")
    msg.add_alternative(HTML, subtype="html")
    return msg


async def _send(port: int, msg: EmailMessage, *, sender: str, to: str = ADDRESS) -> None:
    await aiosmtplib.send(msg, hostname="127.0.0.1", port=port, sender=sender, recipients=[to], timeout=10)


def test_a_newsletter_becomes_one_sanitised_article(tmp_path: Path) -> None:
    port = _free_port()
    config = write_config(
        tmp_path,
        f'[inbound]\nlisten = "127.0.0.1:{port}"\n[web]\nport = {_free_port()}\n'
        f'[[sources]]\nname = "ann-letter"\nkind = "email"\naddress = "{ADDRESS}"\n'
        'allow_from = ["letters.example.com", "editor@elsewhere.example.net"]\n',
    )
    service = Service(config, tmp_path, port)
    try:
        # The envelope sender of a mailing service is often a subdomain's bounce address.
        asyncio.run(
            _send(port, _newsletter("Issue 42: Dams on the Mekong"), sender="bounce-7@mg.letters.example.com")
        )
        confirm = EmailMessage()
        confirm["From"] = "editor@elsewhere.example.net"
        confirm["Subject"] = "Please confirm your subscription"
        confirm.set_content("Hello,\n\nClick to confirm: https://elsewhere.example.net/confirm?t=abc&x=1\n")
        asyncio.run(_send(port, confirm, sender="editor@elsewhere.example.net"))
        for sender, to in (
            ("someone@evil.example", ADDRESS),  # not a sender this source takes
            ("ann@letters.example.com.evil.example", ADDRESS),
            ("ann@letters.example.com", "other@in.example.org"),  # no such source
        ):
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
                asyncio.run(_send(port, _newsletter("Spam"), sender=sender, to=to))
            assert [r.code for r in refused.value.recipients] == [550]

        # The envelope passes, the From header does not: refused once the message is read.
        with pytest.raises(aiosmtplib.SMTPDataError) as spoofed:
            asyncio.run(
                _send(
                    port,
                    _newsletter("Spoofed", sender="Mallory <m@evil.example>"),
                    sender="ann@letters.example.com",
                )
            )
        assert spoofed.value.code == 550

        def listed() -> list[dict[str, object]]:
            result = run("--config", str(config), "articles", "--json", cwd=tmp_path)
            return json.loads(result.stdout) if result.returncode == 0 else []

        _eventually(lambda: len(listed()) == 2, "two articles")
        found = {a["title"]: a for a in listed()}
        assert set(found) == {"Issue 42: Dams on the Mekong", "Please confirm your subscription"}
        issue = found["Issue 42: Dams on the Mekong"]
        assert issue["url"] == "https://letters.example.com/p/issue-42"  # the web version, untracked
        assert issue["source"] == "ann-letter"
        assert issue["published"] == "2026-11-23T07:30:00+00:00"
        assert "two new dams" in str(issue["summary"]) and "alert" not in str(issue["summary"])
        settings = load_settings(config, env={})
        with open_store(settings.database.path) as store:
            stored = store.article(str(issue["id"]))
            note = store.article(str(found["Please confirm your subscription"]["id"]))
        assert stored is not None and note is not None
        assert stored.author == "Ann's Letter"
        body = stored.summary_html
        assert "<img" not in body and "track.example.com" not in body and "cdn.example.com" not in body
        assert "<script" not in body and "onclick" not in body and "javascript:" not in body
        assert 'href="https://example.org/mekong"' in body and "<b>two new dams</b>" in body
        assert 'href="https://elsewhere.example.net/confirm?t=abc&amp;x=1"' in note.summary_html
        log = service.log.read_text()
        assert "newsletter ann-letter" in log and "Traceback" not in log
    finally:
        service.stop()
    # `digest pull` names it without fetching anything.
    pulled = run("--config", str(config), "pull", "--source", "ann-letter", cwd=tmp_path)
    assert "fed by mail to news-xyz@in.example.org" in pulled.stdout + pulled.stderr


def test_allow_from_and_the_article_of_a_message() -> None:
    allow = ("letters.example.com", "editor@elsewhere.example.net")
    assert newsletters.allowed("<ann@letters.example.com>", allow)
    assert newsletters.allowed("bounce@mg.letters.example.com", allow)
    assert newsletters.allowed("Editor@Elsewhere.example.net", allow)
    for sender in (
        "",
        "<>",
        "x@evil.example",
        "x@letters.example.com.evil.example",
        "x@xletters.example.com",
        "other@elsewhere.example.net",
    ):
        assert not newsletters.allowed(sender, allow), sender
    folded = bytes(_newsletter("A subject")).replace(
        b"Subject: A subject", b"Subject: A  subject\r\n\twith folding"
    )
    item = newsletters.item_of(folded, datetime(2026, 11, 27, tzinfo=UTC))
    assert item.title == "A subject with folding" and item.author == "Ann's Letter"
    assert item.url and item.url.startswith("https://letters.example.com/p/issue-42")
    undated = _newsletter("Old")
    del undated["Date"]
    undated["Date"] = "Sat, 01 Jan 1972 00:00:00 +0000"  # not a plausible date: left out
    assert newsletters.item_of(bytes(undated), datetime(2026, 11, 27, tzinfo=UTC)).published is None
    with pytest.raises(ValueError):
        newsletters.item_of(
            b"Subject: nothing\r\nContent-Type: image/png\r\n\r\nxx", datetime(2026, 11, 27, tzinfo=UTC)
        )
