"""Provider webhooks: SES (through SNS), Postmark and Mailgun report bounces and complaints
over HTTP; each request is checked by its provider's scheme (signatures made here with
keys made here; for SNS, a signing certificate served from loopback through the injected
fetch, so nothing leaves the machine). A request that fails its check: 403, nothing
changes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from digest.config import Settings, WebhookSettings
from digest.feedback import webhooks
from digest.store import SubscriberChange, open_store

from .helpers import settings_for
from .servers import AppServer, FeedServer, Reply

TOPIC = "arn:aws:sns:eu-west-1:123456789012:digest-feedback"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SUBSCRIBE_URL = f"https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=abc"
MAILGUN_KEY = "key-0123456789abcdef"
NAMES = ("ann", "bob", "cid", "dan", "eve", "fay", "gus")


def _certificate(key: rsa.RSAPrivateKey, common_name: str = "sns.amazonaws.com") -> bytes:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class Sns:
    """Signs SNS messages as Amazon does, with a key made for the test."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def sign(
        self, message: dict[str, Any], version: str = "2", key: rsa.RSAPrivateKey | None = None
    ) -> dict[str, Any]:
        message = {"SignatureVersion": version, "SigningCertURL": CERT_URL, **message}
        digest = hashes.SHA256() if version == "2" else hashes.SHA1()  # noqa: S303
        signature = (key or self.key).sign(webhooks.sns_string_to_sign(message), padding.PKCS1v15(), digest)
        return {**message, "Signature": base64.b64encode(signature).decode()}

    def notification(self, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": TOPIC,
            "Message": json.dumps(body),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            **extra,
        }


def _ses_bounce(email: str, bounce_type: str, message_id: str | None = None) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": email, "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
            ],
        },
        "mail": {"commonHeaders": {"messageId": message_id}} if message_id else {},
    }


@pytest.fixture
def site(tmp_path: Path, server: FeedServer) -> Iterator[tuple[AppServer, Settings, dict[str, Any]]]:
    settings = settings_for(tmp_path, "")
    settings = replace(
        settings,
        webhooks=WebhookSettings(
            ses_topic=TOPIC, postmark_user="pm", postmark_password="pm-secret", mailgun_key=MAILGUN_KEY
        ),
    )
    with open_store(settings.database.path) as store:
        store.upsert_subscribers([SubscriberChange(f"{n}@example.org", status="active") for n in NAMES])
        ids = {s.email.split("@")[0]: s.id for s in store.subscribers()}
        at = datetime(2027, 1, 4, 8, tzinfo=UTC)
        for week in range(3):
            digest_id = f"d{week}"
            store.create_digest(
                digest_id, at + timedelta(days=7 * week), [(i, at, None) for i in ids.values()]
            )
            for name, sid in ids.items():
                store.record_delivery(
                    digest_id, sid, "sent", message_id=f"<{digest_id}.{name}@digest.example.org>"
                )
    sns = Sns()
    fetched: list[str] = []
    server.routes["/cert.pem"] = Reply(body=_certificate(sns.key))
    server.routes["/confirm"] = Reply(body=b"<ConfirmSubscriptionResponse/>")

    def fetch(url: str) -> bytes:
        """Amazon's addresses answered from loopback (the app checked them first)."""
        fetched.append(url)
        local = (
            server.url("/cert.pem")
            if url == CERT_URL
            else server.url("/confirm")
            if url.startswith("https://sns.")
            else url
        )
        return httpx.get(local, timeout=5).raise_for_status().content

    with AppServer(settings, fetch=fetch) as app:
        yield app, settings, {"sns": sns, "fetched": fetched, "ids": ids, "server": server}


def _status(settings: Settings, name: str) -> tuple[str, str | None]:
    with open_store(settings.database.path) as store:
        found = store.subscriber(email=f"{name}@example.org")
        assert found is not None
        return found.status, found.reason


def _post(app: AppServer, path: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(
        app.url(path),
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
        timeout=10,
    )


def mailgun(
    event: dict[str, Any], *, key: str = MAILGUN_KEY, token: str | None = None, at: int | None = None
) -> dict[str, Any]:
    """A Mailgun webhook's body, signed as Mailgun signs it."""
    stamp = str(at or int(time.time()))
    token = token or hashlib.sha256(json.dumps(event).encode() + stamp.encode()).hexdigest()[:50]
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": stamp, "token": token, "signature": signature},
        "event-data": event,
    }


def test_ses_through_sns(site: tuple[AppServer, Settings, dict[str, Any]]) -> None:
    app, settings, ctx = site
    sns: Sns = ctx["sns"]
    # A subscription is confirmed by fetching its SubscribeURL, once it verified.
    confirm = sns.sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "m0",
            "Token": "abc",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe",
            "SubscribeURL": SUBSCRIBE_URL,
            "Timestamp": datetime.now(UTC).isoformat(),
        }
    )
    assert _post(app, "/webhooks/ses", confirm).status_code == 200
    assert ctx["fetched"] == [CERT_URL, SUBSCRIBE_URL] and ctx["server"].hits("/confirm") == 1

    hard = sns.sign(
        sns.notification(_ses_bounce("ann@example.org", "Permanent", "<d1.ann@digest.example.org>"))
    )
    answer = _post(app, "/webhooks/ses", hard)
    assert answer.status_code == 200 and answer.text.strip() == "bounced"
    assert _status(settings, "ann") == (
        "bounced",
        "hard bounce: Permanent/General: smtp; 550 5.1.1 user unknown",
    )
    assert _post(app, "/webhooks/ses", hard).text.strip() == "repeat"  # SNS delivers at least once
    soft = sns.sign(sns.notification(_ses_bounce("bob@example.org", "Transient")), version="1")
    assert _post(app, "/webhooks/ses", soft).text.strip() == "counted"
    complaint = sns.sign(
        sns.notification(
            {
                "notificationType": "Complaint",
                "complaint": {
                    "complainedRecipients": [{"emailAddress": "cid@example.org"}],
                    "complaintFeedbackType": "abuse",
                },
                "mail": {},
            }
        )
    )
    assert _post(app, "/webhooks/ses", complaint).text.strip() == "unsubscribed"
    assert _status(settings, "cid") == ("unsubscribed", "complaint: abuse report via SES")
    assert ctx["fetched"].count(CERT_URL) == 1  # the certificate is fetched once

    # Refused, and nothing changes: altered, signed by another key, another topic, a
    # certificate from anywhere but Amazon's SNS hosts, an old message, not JSON.
    dan = sns.notification(_ses_bounce("dan@example.org", "Permanent"))
    altered = {**sns.sign(dan), "Message": json.dumps(_ses_bounce("eve@example.org", "Permanent"))}
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    old = sns.sign({**dan, "Timestamp": "2020-01-01T00:00:00.000Z"})
    before = len(ctx["fetched"])
    for refused in (
        altered,
        sns.sign(dan, key=stranger),
        sns.sign({**dan, "TopicArn": "arn:aws:sns:eu-west-1:123456789012:someone-else"}),
        sns.sign({**dan, "SigningCertURL": "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem"}),
        sns.sign({**dan, "SigningCertURL": "http://sns.eu-west-1.amazonaws.com/x.pem"}),
        sns.sign({**dan, "SigningCertURL": "https://127.0.0.1/x.pem"}),
        sns.sign({**dan, "SigningCertURL": "https://sns.eu-west-1.amazonaws.com:8443/x.pem"}),
        sns.sign({**dan, "SigningCertURL": "https://sns.s3.amazonaws.com/x.pem"}),  # an S3 bucket called sns
        sns.sign({**dan, "SigningCertURL": "https://:@sns.eu-west-1.amazonaws.com/x.pem"}),
        sns.sign({**dan, "SigningCertURL": CERT_URL + "?again=1"}),
        old,
        {**sns.sign(dan), "SignatureVersion": "3"},
    ):
        assert _post(app, "/webhooks/ses", refused).status_code == 403
    for garbage in (b"{not json", b"[" * 30_000 + b"]" * 30_000, "\u00b2".encode()):
        assert httpx.post(app.url("/webhooks/ses"), content=garbage, timeout=5).status_code == 403
    assert len(ctx["fetched"]) == before  # no forged URL was ever fetched
    assert _status(settings, "dan") == ("active", None) and _status(settings, "eve") == ("active", None)


def test_postmark_and_mailgun(site: tuple[AppServer, Settings, dict[str, Any]]) -> None:
    app, settings, _ = site
    good = "Basic " + base64.b64encode(b"pm:pm-secret").decode()
    bad = "Basic " + base64.b64encode(b"pm:guess").decode()
    hard = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "TypeCode": 1,
        "Email": "dan@example.org",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    }
    assert _post(app, "/webhooks/postmark", hard, authorization=bad).status_code == 403
    assert _post(app, "/webhooks/postmark", hard).status_code == 403
    weird = httpx.post(
        app.url("/webhooks/postmark"),
        content=b"{}",
        headers={"authorization": b"Basic \xc3\xa9t\xc3\xa9"},
        timeout=5,
    )
    assert weird.status_code == 403
    assert _status(settings, "dan") == ("active", None)
    assert _post(app, "/webhooks/postmark", hard, authorization=good).text.strip() == "bounced"
    spam = {"RecordType": "SpamComplaint", "Type": "SpamComplaint", "Email": "eve@example.org"}
    assert _post(app, "/webhooks/postmark", spam, authorization=good).text.strip() == "unsubscribed"
    ignored = {"RecordType": "Bounce", "Type": "AutoResponder", "Email": "fay@example.org"}
    assert _post(app, "/webhooks/postmark", ignored, authorization=good).text.strip() == "ignored"

    failed = {
        "event": "failed",
        "severity": "permanent",
        "recipient": "fay@example.org",
        "reason": "bounce",
        "delivery-status": {"code": 550, "description": "5.1.1 mailbox does not exist"},
        "message": {"headers": {"message-id": "d1.fay@digest.example.org"}},
    }
    odd = mailgun(failed)
    for refused in (
        mailgun(failed, key="key-wrong"),
        mailgun(failed, at=int(time.time()) - 3600),
        {**odd, "signature": {**odd["signature"], "timestamp": "\u00b2"}},
        {**odd, "signature": {**odd["signature"], "timestamp": "9" * 5000}},
        {**odd, "signature": {**odd["signature"], "token": "\ud800"}},
        {**odd, "signature": "not a table"},
    ):
        assert _post(app, "/webhooks/mailgun", refused).status_code == 403
    signed = mailgun(failed)
    assert _post(app, "/webhooks/mailgun", signed).text.strip() == "bounced"
    assert _post(app, "/webhooks/mailgun", signed).status_code == 403  # a replayed token
    assert _status(settings, "fay") == ("bounced", "hard bounce: 550 5.1.1 mailbox does not exist")
    complained = {
        "event": "complained",
        "recipient": "gus@example.org",
        "message": {"headers": {"message-id": "d0.gus@digest.example.org"}},
    }
    assert _post(app, "/webhooks/mailgun", mailgun(complained)).text.strip() == "unsubscribed"
    with open_store(settings.database.path) as store:
        # Reports naming a message land on its digest; Postmark's (no Message-ID): the latest.
        assert store.feedback_counts("d0") == {"complaint": 1}
        assert store.feedback_counts("d1") == {"hard": 1}
        assert store.feedback_counts("d2") == {"hard": 1, "complaint": 1}


def test_a_captured_mailgun_request_is_refused_after_a_restart_and_by_another_worker(
    site: tuple[AppServer, Settings, dict[str, Any]],
) -> None:
    """Used tokens live in the store: a request captured and replayed later (within the
    15 minutes its timestamp is good for) changes nothing, wherever it is sent."""
    app, settings, _ = site
    complained = {"event": "complained", "recipient": "ann@example.org"}
    captured = mailgun(complained)
    with AppServer(settings) as other:  # another worker on the same database
        assert _post(other, "/webhooks/mailgun", captured).text.strip() == "unsubscribed"
        assert _post(app, "/webhooks/mailgun", captured).status_code == 403
    with open_store(settings.database.path) as store:  # the operator brings ann back
        ann = store.subscriber(email="ann@example.org")
        assert ann is not None
        store.set_subscriber_status(ann.id, "active", at=store.now())
    with AppServer(settings) as restarted:  # a process that has never seen the token
        assert _post(restarted, "/webhooks/mailgun", captured).status_code == 403
    assert _status(settings, "ann") == ("active", None)


def test_a_webhook_is_off_until_its_secret_is_set(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "")
    with AppServer(settings, fetch=lambda url: pytest.fail(f"fetched {url}")) as app:
        for path in ("/webhooks/ses", "/webhooks/postmark", "/webhooks/mailgun"):
            assert _post(app, path, {}).status_code == 404
        assert httpx.get(app.url("/webhooks/ses"), timeout=5).status_code == 405
