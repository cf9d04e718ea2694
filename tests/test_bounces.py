"""Bounces and complaints come back to `digest run`'s own SMTP server ([inbound]) and act on
the subscribers they are about: real digests go out to an aiosmtpd sink with VERP senders;
real reports (RFC 3464, RFC 5965, and the prose of Exim, Postfix, qmail and Exchange) are
then sent by SMTP to the receiver, at those senders."""

from __future__ import annotations

import base64
import smtplib
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest.feedback import bounces

from . import bounce_mail
from .helpers import (
    SEEDS_SOURCE,
    add_subscribers,
    cron_away,
    free_port,
    listed_subscribers,
    mondays,
    run,
    smtp_section,
    wait_for,
    within,
    write_config,
)
from .servers import Receiving, SmtpSink

NAMES = ("ann", "bob", "cid", "dan", "eve", "fay", "gus", "hal", "ivy")


@pytest.fixture
def site(tmp_path: Path, smtp: SmtpSink) -> Iterator[tuple[Path, Receiving]]:
    port = free_port()
    config = write_config(
        tmp_path,
        smtp_section(smtp.port, timeout="5s", sender="Digest <digest@example.org>")
        + f'[bounces]\ndomain = "bounces.example.org"\n[inbound]\nlisten = "127.0.0.1:{port}"\nper_minute = 1000\n'
        f'[web]\nport = {free_port()}\n[schedule]\ndigest_cron = "{cron_away()}"\n'
        f'{SEEDS_SOURCE}every = "1d"\n',
    )
    assert run("--config", str(config), "pull", cwd=tmp_path).returncode == 0
    add_subscribers(config, *(f"{name}@example.org" for name in NAMES))
    service = Receiving(config, tmp_path, port)
    try:
        yield config, service
    finally:
        service.stop()


def _send(config: Path, at: str) -> None:
    sent = run("--config", str(config), "send", "--at", at, "--since", "2000-01-01", cwd=config.parent)
    assert sent.returncode == 0, sent.stderr


def _statuses(config: Path) -> dict[str, dict[str, Any]]:
    return {s["email"].split("@")[0]: s for s in listed_subscribers(config)}


def _deliveries(smtp: SmtpSink, start: int) -> dict[str, tuple[str, str]]:
    """Name → (envelope sender, Message-ID) of each message the sink got since ``start``."""
    return {
        rcpts[0].split("@")[0]: (sender, message["Message-ID"])
        for (rcpts, message), sender in zip(smtp.messages[start:], smtp.senders[start:], strict=True)
    }


def _deliver(port: int, to: str, data: bytes) -> tuple[int, bytes]:
    """Send one message to the receiver; (code, reply) of the step that ended it."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("mx.example.net")
        client.mail("")  # bounces come from the null sender
        code, reply = client.rcpt(to)
        if code != 250:
            return code, reply
        return client.data(data)


def test_reports_sent_to_the_receiver_bounce_and_unsubscribe_the_right_subscribers(
    site: tuple[Path, Receiving], smtp: SmtpSink, tmp_path: Path
) -> None:
    config, service = site
    weeks = mondays(4)
    _send(config, weeks[0])
    first = _deliveries(smtp, 0)
    assert sorted(first) == sorted(NAMES)
    assert all(
        sender.startswith("bounces+") and sender.endswith("@bounces.example.org")
        for sender, _ in first.values()
    )

    def to(name: str, build: Callable[..., bytes], **extra: str) -> tuple[int, bytes]:
        sender, message_id = first[name]
        return _deliver(service.port, sender, build(sender, f"{name}@example.org", message_id, **extra))

    hard = {"action": "failed", "status": "5.1.1", "diagnostic": "550 5.1.1 <ann@example.org>: user unknown"}
    soft = {"action": "failed", "status": "4.2.2", "diagnostic": "452 4.2.2 mailbox full"}  # gave up
    delayed = {**soft, "action": "delayed"}  # a warning only: it may yet arrive
    assert to("ann", bounce_mail.dsn, **hard)[0] == 250
    assert to("bob", bounce_mail.dsn, **soft)[0] == 250
    assert to("hal", bounce_mail.dsn, **delayed)[0] == 250
    assert to("cid", bounce_mail.arf)[0] == 250
    for name, build in (
        ("dan", bounce_mail.exim),
        ("eve", bounce_mail.postfix),
        ("fay", bounce_mail.qmail),
        ("gus", bounce_mail.exchange),
    ):
        answer = to(name, build)
        assert answer[0] == 250, (name, answer)
    assert to("hal", bounce_mail.auto_reply)[0] == 250  # accepted, and nothing comes of it
    # A bounce in prose about someone else (an auto-reply quoting one, say) is not ivy's.
    ivy_sender, ivy_id = first["ivy"]
    assert (
        _deliver(
            service.port, ivy_sender, bounce_mail.exim(ivy_sender, "nobody@elsewhere.example.net", ivy_id)
        )[0]
        == 250
    )
    assert to("ann", bounce_mail.dsn, **hard)[0] == 250  # the same bounce again: no change

    # Nothing but a valid bounce address is taken; a forged token changes nothing.
    ivy_sender = first["ivy"][0]
    local, domain = ivy_sender.split("@")
    forged = f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}"
    ivy_dsn = bounce_mail.dsn(forged, "ivy@example.org", first["ivy"][1], **hard)
    for address in (
        forged,
        f"bounces+{'a' * 31}@bounces.example.org",
        "postmaster@bounces.example.org",
        "ivy@example.org",
        f"{local}@elsewhere.example.net",
    ):
        code, reply = _deliver(service.port, address, ivy_dsn)
        assert code == 550, (address, code, reply)

    def settled() -> bool:
        found = _statuses(config)
        return all(found[n]["status"] != "active" for n in ("ann", "cid", "dan", "eve", "fay", "gus"))

    wait_for(settled, "every report acted on", 15)
    found = _statuses(config)
    assert {n: found[n]["status"] for n in NAMES} == {
        "ann": "bounced", "bob": "active", "cid": "unsubscribed", "dan": "bounced", "eve": "bounced",
        "fay": "bounced", "gus": "bounced", "hal": "active", "ivy": "active",
    }  # fmt: skip
    assert found["ann"]["reason"] == "hard bounce: 5.1.1 smtp; 550 5.1.1 <ann@example.org>: user unknown"
    assert (
        found["cid"]["reason"] == "complaint: abuse report by ExampleFBL/1.0" and found["cid"]["unsubscribed"]
    )
    assert found["dan"]["reason"].startswith("hard bounce: permanent failure (in prose) for dan@example.org")
    listed = run("--config", str(config), "subscribers", "list", "--status", "bounced", cwd=tmp_path).stdout
    assert "5 subscribers" in listed and "hard bounce" in listed

    # The next digest skips all of them; bob's soft bounces count, and the third in a row bounces him.
    for week, at in enumerate(weeks[1:3], 1):
        start = len(smtp.messages)
        _send(config, at)
        later = _deliveries(smtp, start)
        assert sorted(later) == ["bob", "hal", "ivy"], week
        sender, message_id = later["bob"]
        assert (
            _deliver(service.port, sender, bounce_mail.dsn(sender, "bob@example.org", message_id, **soft))[0]
            == 250
        )
        if week == 1:  # once the receiver has counted this second one: two in a row, still active

            def counted() -> int:
                lines = service.text().splitlines()
                return sum(
                    "soft bounce via smtp: bob@example.org" in line and "counted" in line for line in lines
                )

            wait_for(lambda: counted() == 2, "bob's second soft bounce counted", 15)
            assert _statuses(config)["bob"]["status"] == "active"
    wait_for(lambda: _statuses(config)["bob"]["status"] == "bounced", "bob bounced after 3 soft bounces", 15)
    assert "3 soft bounces in a row" in _statuses(config)["bob"]["reason"]

    # A re-import brings none of them back; it says so, line by line.
    (tmp_path / "again.csv").write_text("email\n" + "".join(f"{n}@example.org\n" for n in NAMES))
    again = run("--config", str(config), "subscribers", "import", str(tmp_path / "again.csv"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("bounced") + again.stdout.count("bounced") >= 6
    assert {n: s["status"] for n, s in _statuses(config).items()} == {
        "ann": "bounced", "bob": "bounced", "cid": "unsubscribed", "dan": "bounced", "eve": "bounced",
        "fay": "bounced", "gus": "bounced", "hal": "active", "ivy": "active",
    }  # fmt: skip
    start = len(smtp.messages)
    _send(config, weeks[3])
    assert sorted(_deliveries(smtp, start)) == ["hal", "ivy"]
    log = service.text()
    assert "hard bounce via smtp: ann@example.org" in log and "complaint via smtp: cid@example.org" in log
    assert "Traceback" not in log


def test_the_receiver_keeps_its_limits(site: tuple[Path, Receiving], smtp: SmtpSink) -> None:
    config, service = site
    _send(config, mondays(1)[0])
    sender, message_id = _deliveries(smtp, 0)["ann"]
    big = bounce_mail.exim(sender, "ann@example.org", message_id) + (b"x" * 70 + b"\r\n") * 15_000
    with smtplib.SMTP("127.0.0.1", service.port, timeout=10) as client:
        client.ehlo("mx.example.net")
        assert "size" in client.esmtp_features and int(client.esmtp_features["size"]) == 1024 * 1024
        client.mail("")
        assert client.rcpt(sender)[0] == 250
        # The same address again costs nothing: refused, the message is read for it once.
        assert {client.rcpt(sender.upper())[0] for _ in range(3)} == {550}
        assert client.data(big)[0] == 552
        client.rset()
        client.mail("")
        assert client.rcpt(sender)[0] == 250
        assert client.data(b"x" * 2000 + b"\r\n")[0] == 500  # a line past RFC 5321's 1000 octets
    assert _statuses(config)["ann"]["status"] == "active"  # the oversized message was not taken
    with smtplib.SMTP("127.0.0.1", service.port, timeout=10) as guesser:  # refused guesses count too
        guesser.ehlo("mx.example.net")
        guesser.mail("")
        codes = []
        try:
            for n in range(45):
                codes.append(guesser.rcpt(f"bounces+{n:031d}@bounces.example.org")[0])
        except smtplib.SMTPServerDisconnected:
            pass
        assert codes[:40] == [550] * 40 and codes[40:] in ([421], [])


def _backtracking_bounce(sender: str, length: int) -> bytes:
    """A "bounce" whose text part holds the Netscape marker and then a line of ``length``
    "<": flufl.bounce's Netscape detector backtracks over it for a time cubic in ``length``
    (about a minute at 3,000), holding the GIL all the while."""
    text = b"This Message was undeliverable due to the following reason:\n" + b"<" * length + b"\n"
    return (
        f"From: MAILER-DAEMON@mx.example.net\r\nTo: {sender}\r\nSubject: Undeliverable\r\n".encode()
        + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(text).replace(b"\n", b"\r\n")
        + b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n"
    )


def test_a_bounce_that_backtracks_for_minutes_never_stops_the_service(
    site: tuple[Path, Receiving], smtp: SmtpSink
) -> None:
    config, service = site
    _send(config, mondays(1)[0])
    sender, _ = _deliveries(smtp, 0)["ann"]
    hostile = _backtracking_bounce(sender, 3000)
    assert len(hostile) < 5000  # 4.5 KB
    web = tomllib.loads(config.read_text())["web"]["port"]
    answered: list[tuple[int, float]] = []
    delivery: list[tuple[int, bytes]] = []
    sending = threading.Thread(target=lambda: delivery.append(_deliver(service.port, sender, hostile)))
    sending.start()
    with httpx.Client(timeout=5) as client:
        while sending.is_alive():  # the whole time the message is being read
            started = time.perf_counter()
            status = client.get(f"http://127.0.0.1:{web}/healthz").status_code
            answered.append((status, time.perf_counter() - started))
            time.sleep(0.05)
    sending.join()
    slowest = max(took for _, took in answered)
    assert len(answered) >= 10 and {status for status, _ in answered} == {200}, answered
    assert slowest < 0.25, f"/healthz took {slowest * 1000:.0f} ms while the bounce was read"
    assert delivery[0][0] == 250  # taken, read as no report: not retried for ever
    assert _statuses(config)["ann"]["status"] == "active"
    wait_for(lambda: "could not be read" in service.text(), "the overrun logged", 15)
    assert "out of its 5 s of CPU" in service.text()
    # And the service still stops at once when asked.
    started = time.monotonic()
    service.stop()
    assert time.monotonic() - started < 10


def test_a_report_reaches_no_further_than_one_line() -> None:
    """What a hostile report says is cut to one printable line before it is stored or logged."""
    evil = bounce_mail.dsn(
        "bounces+x@b.example.org",
        "ann@example.org",
        "<m@x>",
        action="failed",
        status="5.1.1",
        diagnostic="550 \x1b[31mred\x07 " + "A" * 5000,
    )
    report = bounces.read(evil.replace(b"\x1b[31m", b"\x1b[31m\r\n\tSubject: injected"))
    assert report is not None and report.kind == "hard"
    assert (
        len(report.detail) <= bounces.DETAIL_CHARS
        and "\x1b" not in report.detail
        and "\x07" not in report.detail
    )
    assert all(32 <= ord(c) < 127 for c in report.detail)
    for garbage in (
        b"",
        b"\x00\xff" * 1000,
        b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\n--",
        b"Content-Type: multipart/report; boundary=x; report-type=feedback-report\r\n\r\n--x\r\nContent-Type: message/feedback-report\r\n\r\n\r\n--x--\r\n",
    ):
        found = bounces.read(garbage)
        assert found is None or found.kind in ("hard", "soft", "complaint")


def test_one_client_and_too_many_connections_are_held_off() -> None:
    """Per-client message rate (421 at MAIL FROM) and open connections (421 at the greeting),
    on the real server with a mailbox that takes everything."""
    import asyncio
    import threading

    from digest.config import InboundSettings
    from digest.feedback.inbound import Inbound

    received: list[bytes] = []

    class Everything:
        async def claims(self, address: str, sender: str) -> bool:
            return True

        async def receive(self, address: str, raw: bytes) -> None:
            received.append(raw)

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    inbound = Inbound(InboundSettings(listen=("127.0.0.1", 0), per_minute=3, connections=2), [Everything()])
    host, port = asyncio.run_coroutine_threadsafe(inbound.start(), loop).result(10)
    try:
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.ehlo("mx.example.net")
            answers = []
            for _ in range(4):
                answers.append(client.mail("")[0])
                if answers[-1] == 250:
                    client.rcpt("x@example.org")
                    client.data(b"Subject: hi\r\n\r\nhello\r\n")
        assert answers == [250, 250, 250, 421] and len(received) == 3
        with smtplib.SMTP(host, port, timeout=10) as crowded:  # a message has at most 20 recipients
            crowded.ehlo("mx.example.net")
            inbound.handler.per_client.limit = 100
            crowded.mail("")
            codes = [crowded.rcpt(f"r{n}@example.org")[0] for n in range(25)]
            assert codes[:20] == [250] * 20 and set(codes[20:]) == {452}
            assert crowded.rcpt("R3@example.org")[0] == 550  # and each once
            assert crowded.data(b"Subject: hi\r\n\r\nhello\r\n")[0] == 250
        assert len(received) == 3 + 20
        with smtplib.SMTP(host, port, timeout=10) as chatty:  # each command a bounded number of times
            codes = [chatty.docmd("NOOP")[0] for _ in range(11)]
            assert codes[:10] == [250] * 10 and codes[10] == 421
        first, second = smtplib.SMTP(host, port, timeout=10), smtplib.SMTP(host, port, timeout=10)
        try:
            with pytest.raises(smtplib.SMTPConnectError) as refused:
                smtplib.SMTP(host, port, timeout=10)
            assert refused.value.smtp_code == 421
        finally:
            first.close()
            second.close()
        within(lambda: not inbound.open, 5, every=0.05)
        assert inbound.open == 0
        with smtplib.SMTP(host, port, timeout=10) as again:  # room again once they left
            assert again.noop()[0] == 250
        inbound.settings = InboundSettings(listen=("127.0.0.1", 0), per_minute=3, connections=50)
        held = [smtplib.SMTP(host, port, timeout=10) for _ in range(5)]  # one client's share
        try:
            with pytest.raises(smtplib.SMTPConnectError):
                smtplib.SMTP(host, port, timeout=10)
        finally:
            for one in held:
                one.close()
    finally:
        asyncio.run_coroutine_threadsafe(inbound.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
