"""Newsletters as sources: mail sent by SMTP (aiosmtplib) to `digest run`'s receiver, for
an email source's address, becomes one sanitised article; a sender the source does not
take, and an address no source has, get 550."""

from __future__ import annotations

import asyncio
import email.policy
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import dkim
import httpx
import pytest

from digest.config import load_settings
from digest.intake import newsletters
from digest.store import open_store

from .helpers import free_port, listed_articles, run, wait_for, write_config
from .servers import DnsServer, Receiving

ADDRESS = "news-xyz@in.example.org"
HTML = f"""<html><head><style>p {{color: red}}</style><script>alert(1)</script></head><body>
<p><a href="https://letters.example.com/p/issue-42?utm_source=newsletter&amp;utm_medium=email">View this email in your browser</a></p>
<img src="https://track.example.com/open.gif?u=123" width="1" height="1">
<h2>Dams on the Mekong</h2>
<p>Laos and China agreed on <b>two new dams</b>; <a href="https://example.org/mekong" onclick="steal()">the agreement</a>.</p>
<p><img src="https://cdn.example.com/photo.jpg" alt="a dam"></p>
<p><a href="javascript:alert(1)">click</a></p>
<p>This email was sent to {ADDRESS}.
<a href="https://letters.example.com/unsubscribe?list=7">Unsubscribe</a> ·
<a href="https://letters.example.com/account?e={ADDRESS.replace("@", "%40")}">Your account</a> ·
<a href="https://letters.example.com/go/8f3a9c2e71b04d5e9a6f2c1d">Share this issue</a></p>
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


def _wire(msg: EmailMessage) -> bytes:
    """The message as it travels: every line ending in CRLF."""
    return msg.as_bytes(policy=email.policy.SMTP)


def _signed(
    msg: EmailMessage | bytes, domain: str, key: bytes, selector: str = "s1", headers: tuple[str, ...] = ()
) -> bytes:
    """The message with a DKIM signature by ``domain`` (dkimpy, as a sending service signs)."""
    raw = _wire(msg) if isinstance(msg, EmailMessage) else msg
    signed = [h.encode() for h in headers or ("from", "to", "subject", "date", "message-id")]
    return dkim.sign(raw, selector.encode(), domain.encode(), key, include_headers=signed) + raw


async def _send(
    port: int, msg: EmailMessage | bytes, *, sender: str, to: str | list[str] = ADDRESS
) -> dict[str, aiosmtplib.SMTPResponse]:
    """Send; the recipients refused (when some were taken)."""
    refused, _ = await aiosmtplib.send(
        msg, hostname="127.0.0.1", port=port, sender=sender, recipients=[to] if isinstance(to, str) else to,
        timeout=10,
    )  # fmt: skip
    return refused


def _site(tmp_path: Path, dns_server: DnsServer, extra: str = "") -> tuple[Path, int, int]:
    port, web = free_port(), free_port()
    config = write_config(
        tmp_path,
        f'[inbound]\nlisten = "127.0.0.1:{port}"\nresolver = "127.0.0.1:{dns_server.port}"\n[web]\nport = {web}\n'
        f'[[sources]]\nname = "ann-letter"\nkind = "email"\naddress = "{ADDRESS}"\n'
        'allow_from = ["letters.example.com", "editor@elsewhere.example.net"]\n' + extra,
    )
    return config, port, web


def test_a_signed_newsletter_becomes_one_sanitised_article_without_the_subscribers_own(
    tmp_path: Path, dns_server: DnsServer
) -> None:
    letters = dns_server.publish_dkim_key("s1", "letters.example.com")
    elsewhere = dns_server.publish_dkim_key("s1", "elsewhere.example.net")
    config, port, web = _site(tmp_path, dns_server)
    service = Receiving(config, tmp_path, port)
    try:
        # The envelope sender of a mailing service is often a subdomain's bounce address.
        issue = _signed(_newsletter("Issue 42: Dams on the Mekong"), "letters.example.com", letters)
        asyncio.run(_send(port, issue, sender="bounce-7@mg.letters.example.com"))
        confirm = EmailMessage()
        confirm["From"] = "editor@elsewhere.example.net"
        confirm["To"] = ADDRESS
        confirm["Subject"] = "Please confirm your subscription"
        confirm["Message-ID"] = "<c1@elsewhere.example.net>"
        confirm.set_content("Hello,\n\nClick to confirm: https://elsewhere.example.net/confirm?t=abc&x=1\n")
        asyncio.run(
            _send(
                port,
                _signed(confirm, "elsewhere.example.net", elsewhere),
                sender="editor@elsewhere.example.net",
            )
        )
        for sender, to in (
            ("someone@evil.example", ADDRESS),  # not a sender this source takes
            ("ann@letters.example.com.evil.example", ADDRESS),
            ("ann@letters.example.com", "other@in.example.org"),  # no such source
        ):
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
                asyncio.run(_send(port, _newsletter("Spam"), sender=sender, to=to))
            assert [r.code for r in refused.value.recipients] == [550]

        def listed() -> list[dict[str, object]]:
            result = run("--config", str(config), "articles", "--json", cwd=tmp_path)
            return json.loads(result.stdout) if result.returncode == 0 else []

        wait_for(lambda: len(listed()) == 2, "two articles", 15)
        found = {a["title"]: a for a in listed()}
        assert set(found) == {"Issue 42: Dams on the Mekong", "Please confirm your subscription"}
        issue_found = found["Issue 42: Dams on the Mekong"]
        assert issue_found["url"] == "https://letters.example.com/p/issue-42"  # the web version, untracked
        assert issue_found["source"] == "ann-letter"
        assert issue_found["published"] == "2026-11-23T07:30:00+00:00"
        assert "two new dams" in str(issue_found["summary"]) and "alert" not in str(issue_found["summary"])
        settings = load_settings(config, env={})
        with open_store(settings.database.path) as store:
            stored = store.article(str(issue_found["id"]))
            note = store.article(str(found["Please confirm your subscription"]["id"]))
        assert stored is not None and note is not None
        assert stored.author == "Ann's Letter"
        body = stored.summary_html
        assert "<img" not in body and "track.example.com" not in body and "cdn.example.com" not in body
        assert "<script" not in body and "onclick" not in body and "javascript:" not in body
        assert 'href="https://example.org/mekong"' in body and "<b>two new dams</b>" in body
        # What is the subscriber's own never reaches the article, nor the public feed.
        feed = httpx.get(f"http://127.0.0.1:{web}/feed.atom", timeout=10).text
        for secret in (
            ADDRESS,
            ADDRESS.replace("@", "%40"),
            "/unsubscribe",
            "/account",
            "8f3a9c2e71b04d5e",
            "confirm?t=abc",
        ):
            assert secret not in body and secret not in note.summary_html and secret not in feed, secret
        assert "Unsubscribe" in body and "Share this issue" in body  # the words stay, not the links
        # The operator still has the confirmation link: the log names what was taken out.
        log = service.text()
        assert "https://elsewhere.example.net/confirm?t=abc&x=1" in log
        assert "newsletter ann-letter" in log and "Traceback" not in log
    finally:
        service.stop()
    # `digest pull` names it without fetching anything.
    pulled = run("--config", str(config), "pull", "--source", "ann-letter", cwd=tmp_path)
    assert "fed by mail to news-xyz@in.example.org" in pulled.stdout + pulled.stderr


def test_a_newsletter_must_prove_its_sender(tmp_path: Path, dns_server: DnsServer) -> None:
    """A stranger who read the address off the feed (it is no secret) and forges the From of
    an allowed sender is refused: without a signature, with a key DNS does not publish, or
    signed by a domain of their own; so is a From naming two addresses."""
    letters = dns_server.publish_dkim_key("s1", "letters.example.com")
    evil = dns_server.publish_dkim_key("s1", "evil.example")
    config, port, _ = _site(tmp_path, dns_server)
    service = Receiving(config, tmp_path, port)
    try:
        forged = _newsletter("Forged")
        attempts = {
            "unsigned": bytes(forged),
            "an unpublished key": _signed(forged, "letters.example.com", evil, selector="s2"),
            "the wrong key": _signed(forged, "letters.example.com", evil),
            "another domain": _signed(forged, "evil.example", evil),
            "altered after signing": _signed(_newsletter("Honest"), "letters.example.com", letters).replace(
                b"two new dams", b"six new dams"
            ),
            "two senders": _signed(
                _newsletter("Two", sender="ann@letters.example.com, m@evil.example"),
                "letters.example.com",
                letters,
            ),
        }
        for what, message in attempts.items():
            with pytest.raises(aiosmtplib.SMTPDataError) as refused:
                asyncio.run(_send(port, message, sender="ann@letters.example.com"))
            assert refused.value.code == 550, what
        # One signed copy to the same address twice: the second RCPT is refused, one article.
        honest = _signed(_newsletter("Honest"), "letters.example.com", letters)
        twice = asyncio.run(
            _send(port, honest, sender="ann@letters.example.com", to=[ADDRESS, ADDRESS.upper()])
        )
        assert [response.code for response in twice.values()] == [550]
        assert [a["title"] for a in listed_articles(config=config)] == ["Honest"]
        assert "s1._domainkey.letters.example.com" in dns_server.asked  # asked of the test's DNS only
    finally:
        service.stop()


def test_unauthenticated_mail_is_kept_out_of_the_feeds_when_the_operator_takes_it(
    tmp_path: Path, dns_server: DnsServer
) -> None:
    config, port, web = _site(tmp_path, dns_server, "allow_unauthenticated = true\n")
    service = Receiving(config, tmp_path, port)
    try:
        asyncio.run(_send(port, _newsletter("Unsigned but wanted"), sender="ann@letters.example.com"))
        dropped = lambda: run("--config", str(config), "articles", "--dropped", "--json", cwd=tmp_path)  # noqa: E731
        wait_for(lambda: "Unsigned but wanted" in dropped().stdout, "kept among the dropped", 15)
        assert "not authenticated" in dropped().stdout
        assert listed_articles(config=config) == []
        assert "Unsigned but wanted" not in httpx.get(f"http://127.0.0.1:{web}/feed.atom", timeout=10).text
    finally:
        service.stop()


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
    folded = _wire(_newsletter("A subject")).replace(
        b"Subject: A subject", b"Subject: A  subject\r\n\twith folding"
    )
    item = newsletters.item_of(folded, datetime(2026, 11, 27, tzinfo=UTC))
    assert item.title == "A subject with folding" and item.author == "Ann's Letter"
    assert item.url and item.url.startswith("https://letters.example.com/p/issue-42")
    undated = _newsletter("Old")
    del undated["Date"]
    undated["Date"] = "Sat, 01 Jan 1972 00:00:00 +0000"  # not a plausible date: left out
    assert newsletters.item_of(_wire(undated), datetime(2026, 11, 27, tzinfo=UTC)).published is None
    with pytest.raises(ValueError):
        newsletters.item_of(
            b"Subject: nothing\r\nContent-Type: image/png\r\n\r\nxx", datetime(2026, 11, 27, tzinfo=UTC)
        )


def test_every_check_of_a_sender_reads_one_plain_address_and_one_copy_of_each_field() -> None:
    """What an outside review forged past DKIM: a From read two ways (an unclosed quote), a
    bare CR that splits lines for Python and not for dkimpy, and fields added above a
    genuinely signed message. Each is refused before anything is read or believed."""
    honest = _wire(_newsletter("Issue 42"))
    for forged_from in (
        '"ann@letters.example.com<@attacker.example',
        "ann@letters.example.com, m@evil.example",
        "ann@letters.example.com@attacker.example",
        "(" * 500 + "ann@letters.example.com",
        "a" * 2000 + "@letters.example.com",
    ):
        raw = honest.replace(b"From: Ann's Letter <ann@letters.example.com>", f"From: {forged_from}".encode())
        with pytest.raises(ValueError):
            newsletters.one_sender(newsletters.headers_of(raw))
    assert newsletters.one_sender(newsletters.headers_of(honest)) == "ann@letters.example.com"
    assert not newsletters.allowed("ann@letters.example.com<@attacker.example", ("letters.example.com",))
    for broken in (
        b"X-Mailer: x\rFrom: Ann <ann@letters.example.com>\r\n" + honest,  # a bare CR
        honest.replace(b"\r\nSubject:", b"\nSubject:"),  # a bare LF
        b"Subject: Ann's letter has moved\r\n" + honest,  # a second Subject above
        b"Content-Type: text/html\r\n" + honest,
        b"Message-ID: <43@letters.example.com>\r\n" + honest,
    ):
        with pytest.raises(ValueError):
            newsletters.headers_of(broken)
        with pytest.raises(ValueError):
            newsletters.item_of(broken, datetime(2026, 11, 27, tzinfo=UTC))


def test_a_signature_counts_only_if_it_covers_what_the_article_is_made_of(dns_server: DnsServer) -> None:
    from digest.intake import mailauth

    key = dns_server.publish_dkim_key("s1", "letters.example.com")
    answers = dict(dns_server.records)
    full = _signed(_newsletter("Issue 42"), "letters.example.com", key)
    no_subject = _signed(_newsletter("Issue 42"), "letters.example.com", key, headers=("from", "date"))
    assert mailauth.verified_signers(full, answers) == ["letters.example.com"]
    assert mailauth.verified_signers(no_subject, answers) == []  # a subject anyone could have set
    headers = newsletters.headers_of(full)
    assert mailauth.key_names(headers, "ann@letters.example.com") == ["s1._domainkey.letters.example.com"]
    assert mailauth.key_names(headers, "ann@elsewhere.example.net") == []  # DNS asked for aligned keys only
    assert mailauth.aligned("letters.example.com", "ann@news.letters.example.com")
    assert not mailauth.aligned("news.letters.example.com", "ann@letters.example.com")
    assert not mailauth.aligned("com", "ann@letters.com")


def test_the_subscribers_own_never_survives_in_any_form() -> None:
    import base64

    token = base64.urlsafe_b64encode(f'{{"s":"{ADDRESS}","u":987654321}}'.encode()).decode().rstrip("=")
    personal = {
        "https://substack.com/redirect/2/eyJ1Ijo5ODc2NTQzMjF9.kX-9q-Zr_3vT-aB1cD2eF3gH4iJ5kL6mN7oP8",
        "https://news.example.com/c/48213907716523019",
        "https://news.example.com/s/Ab3dE9xY2z1",
        f"https://news.example.com/share?x={token}",
        "https://news.example.com/share?x=news-xyz%25252540in.example.org",
        "https://news.example.com/u/news-xyz/in.example.org/",
        "https://letters.example.com/unsubscribe",
        "mailto:list@letters.example.com?subject=unsubscribe",
    }
    public = {"https://example.org/2026/laos-and-china-open-the-railway", "https://example.org/mekong.html"}
    body = "".join(f'<p><a href="{url}">link {n}</a></p>' for n, url in enumerate(sorted(personal | public)))
    body += f'<p><a href="https://example.org/a" title="sent to {ADDRESS}">read</a></p>'
    body += "<p>Sent to news-xyz<span></span>@in.example.org today.</p>"
    html, removed = newsletters.strip_personal(body, ADDRESS)
    assert set(removed) == personal
    assert all(f'href="{url}"' in html for url in public)
    assert ADDRESS not in html and "news-xyz" not in html and "Sent to" in html and "today." in html
