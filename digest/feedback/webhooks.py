"""Bounces and complaints from API-backed relays, as their webhooks post them (the
endpoints, ``POST /webhooks/ses`` (Amazon SES through SNS), ``/webhooks/postmark`` and
``/webhooks/mailgun``, are :mod:`digest.web.webhooks`): each provider's check, which a
request must pass (:class:`Refused` otherwise), and the reading of its payload.

- SES/SNS: the message is signed (SignatureVersion 1: SHA1, 2: SHA256, RSA PKCS#1 v1.5) by
  the certificate at ``SigningCertURL``, which is fetched only from an
  ``https://sns.<region>.amazonaws.com/….pem`` address (the HTTPS connection is what makes
  the certificate Amazon's), must name an amazonaws.com subject, be in date, and must sign
  for the configured topic; a ``SubscriptionConfirmation`` so verified is confirmed by
  fetching its ``SubscribeURL`` (same host rule).
- Postmark: HTTP basic authentication, the user and password put in the webhook's URL.
- Mailgun: ``HMAC-SHA256(signing key, timestamp + token)``, within 15 minutes, each token
  once, by any worker since any restart (remembered in the store).

The parsing of each payload into reports is pure (:func:`ses_reports`, and so on); the
fetch of certificates is a function given to :class:`SigningCertificates`, which keeps what
it fetched (tests serve one from loopback).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from digest.config import WebhookSettings
from digest.store import SettingsStore

log = logging.getLogger("digest")
Fetch = Callable[[str], bytes]
# SNS's own hosts only: sns.REGION.amazonaws.com, REGION as AWS spells regions (us-east-1,
# us-gov-west-1, cn-north-1...), so no other service's names (S3 buckets: sns.s3...) pass.
_SNS_HOST = re.compile(r"^sns\.[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}\.amazonaws\.com(\.cn)?$")
CERT_BYTES = 16 * 1024
FAILED_FETCH_SECONDS = 300.0
MAILGUN_SKEW = 15 * 60
SNS_MAX_AGE = timedelta(days=1)  # SNS retries for up to an hour by default; a day is generous
# The fields each SNS message type signs, in the order they are signed.
_SNS_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_SNS_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _SNS_CONFIRMATION,
    "UnsubscribeConfirmation": _SNS_CONFIRMATION,
}
_POSTMARK_KINDS = {
    "HardBounce": "hard",
    "BadEmailAddress": "hard",
    "ManuallyDeactivated": "hard",
    "SoftBounce": "soft",
    "Transient": "soft",
    "DnsError": "soft",
    "SpamComplaint": "complaint",
}


class Refused(Exception):
    """A request that fails its provider's check (403)."""


@dataclass(frozen=True)
class ProviderReport:
    email: str
    kind: str  # "hard", "soft" or "complaint"
    detail: str
    message_id: str | None = None


# --- Amazon SNS (SES) ------------------------------------------------------------------------


def sns_url_ok(url: str, *, pem: bool = True) -> bool:
    """Whether digest may fetch ``url`` for SNS: HTTPS to an SNS host of amazonaws.com, no
    port or credentials (and for a signing certificate, a .pem path)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and port is None
        and "@" not in parts.netloc
        and bool(_SNS_HOST.match(parts.hostname or ""))
        and (not pem or (parts.path.endswith(".pem") and not parts.query and not parts.fragment))
    )


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    names = _SNS_SIGNED.get(str(message.get("Type")))
    if names is None:
        raise Refused(f"unknown SNS message type {str(message.get('Type'))[:40]!r}")
    lines = []
    for name in names:
        if name in message and isinstance(message[name], str):
            lines += [name, message[name]]
        elif name != "Subject":
            raise Refused(f"SNS message without {name}")
    return ("\n".join(lines) + "\n").encode()


def verify_sns(message: Mapping[str, Any], topic: str, fetch: Fetch, now: datetime | None = None) -> None:
    """Refused unless ``message`` is a genuine SNS message for ``topic``."""
    if message.get("TopicArn") != topic:
        raise Refused("not our topic")
    url = str(message.get("SigningCertURL", ""))
    if not sns_url_ok(url):
        raise Refused("signing certificate URL is not an SNS address")
    algorithm: hashes.HashAlgorithm
    version = message.get("SignatureVersion")
    if version == "1":
        algorithm = hashes.SHA1()  # noqa: S303  (SNS's version 1 scheme is SHA1withRSA)
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        raise Refused("unknown signature version")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        stamp = datetime.fromisoformat(str(message.get("Timestamp", "")).replace("Z", "+00:00"))
    except (binascii.Error, ValueError) as exc:
        raise Refused("malformed signature or timestamp") from exc
    now = now or datetime.now(UTC)
    if stamp.tzinfo is None or not now - SNS_MAX_AGE <= stamp <= now + timedelta(minutes=5):
        raise Refused("timestamp out of range")
    key = _sns_key(url, fetch, now)
    try:
        key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature as exc:
        raise Refused("bad signature") from exc


def _sns_key(url: str, fetch: Fetch, now: datetime) -> rsa.RSAPublicKey:
    try:
        pem = fetch(url)
        if len(pem) > CERT_BYTES:
            raise Refused("signing certificate too large")
        cert = x509.load_pem_x509_certificate(pem)
    except Refused:
        raise
    except Exception as exc:
        raise Refused(f"signing certificate unavailable ({type(exc).__name__})") from exc
    names = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    if not any(
        isinstance(n, str) and (n == "sns.amazonaws.com" or n.endswith(".amazonaws.com")) for n in names
    ):
        raise Refused("signing certificate is not for amazonaws.com")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise Refused("signing certificate out of date")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refused("signing certificate without an RSA key")
    return key


def ses_reports(notification: Mapping[str, Any]) -> list[ProviderReport]:
    """The reports in one SES notification (``notificationType``, or ``eventType`` of event
    publishing): bounces (Permanent: hard, else soft) and complaints."""
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail") or {}
    message_id = (mail.get("commonHeaders") or {}).get("messageId") if isinstance(mail, dict) else None
    message_id = message_id if isinstance(message_id, str) else None
    found = []
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        hard = bounce.get("bounceType") == "Permanent"
        for recipient in bounce.get("bouncedRecipients") or []:
            if isinstance(recipient, dict) and isinstance(recipient.get("emailAddress"), str):
                said = recipient.get("diagnosticCode") or recipient.get("status") or ""
                detail = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}: {said}"
                found.append(
                    ProviderReport(recipient["emailAddress"], "hard" if hard else "soft", detail, message_id)
                )
    elif kind == "Complaint":
        complaint = notification.get("complaint") or {}
        feedback_type = str(complaint.get("complaintFeedbackType") or "abuse")
        if feedback_type != "not-spam":
            for recipient in complaint.get("complainedRecipients") or []:
                if isinstance(recipient, dict) and isinstance(recipient.get("emailAddress"), str):
                    found.append(
                        ProviderReport(
                            recipient["emailAddress"],
                            "complaint",
                            f"{feedback_type} report via SES",
                            message_id,
                        )
                    )
    return found


# --- Postmark --------------------------------------------------------------------------------


def verify_postmark(authorization: str | None, settings: WebhookSettings) -> None:
    scheme, _, encoded = (authorization or "").partition(" ")
    try:
        given = base64.b64decode(encoded, validate=True) if scheme.lower() == "basic" else b""
    except (binascii.Error, ValueError):
        given = b""
    expected = f"{settings.postmark_user}:{settings.postmark_password}".encode()
    # Compared as hashes: equal lengths, so the time taken says nothing of the secret's length.
    if not hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest()):
        raise Refused("bad credentials")


def postmark_reports(payload: Mapping[str, Any]) -> list[ProviderReport]:
    record, kind = payload.get("RecordType"), payload.get("Type")
    email = payload.get("Email")
    if not isinstance(email, str):
        return []
    if record == "SpamComplaint":
        kind = "SpamComplaint"
    if record not in ("Bounce", "SpamComplaint") or kind not in _POSTMARK_KINDS:
        return []
    detail = f"{kind}: {payload.get('Description') or payload.get('Details') or ''}"
    return [ProviderReport(email, _POSTMARK_KINDS[str(kind)], detail)]


# --- Mailgun ---------------------------------------------------------------------------------


def first_use(store: SettingsStore, token: str) -> bool:
    """Whether a Mailgun token is seen for the first time, by any worker since any restart:
    each is remembered in the store (hashed) for twice the time its timestamp is good for,
    beyond which the timestamp check refuses it anyway."""
    key = "mailgun-token:" + hashlib.sha256(token.encode()).hexdigest()
    return store.allow_hit(key, limit=1, window=2 * MAILGUN_SKEW, now=store.now())


def verify_mailgun(signature: Mapping[str, Any], key: str, now: float | None = None) -> str:
    """The token of a genuine, timely Mailgun signature (Refused otherwise); whether it was
    used before is :func:`first_use`'s business."""
    timestamp, token, given = (str(signature.get(k, "")) for k in ("timestamp", "token", "signature"))
    if not all(value.isascii() and len(value) <= 256 for value in (timestamp, token, given)):
        raise Refused("malformed signature")
    if (
        not timestamp.isdigit()
        or len(timestamp) > 12
        or abs((now or time.time()) - int(timestamp)) > MAILGUN_SKEW
    ):
        raise Refused("timestamp out of range")
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise Refused("bad signature")
    return token


def mailgun_reports(event: Mapping[str, Any]) -> list[ProviderReport]:
    name, email = event.get("event"), event.get("recipient")
    if not isinstance(email, str):
        return []
    headers = (event.get("message") or {}).get("headers") or {}
    message_id = headers.get("message-id") if isinstance(headers, dict) else None
    message_id = message_id if isinstance(message_id, str) else None
    if name == "complained":
        return [ProviderReport(email, "complaint", "abuse report via Mailgun", message_id)]
    if name == "failed":
        status = event.get("delivery-status") or {}
        kind = "hard" if event.get("severity") == "permanent" else "soft"
        said = status.get("description") or status.get("message") or event.get("reason") or ""
        detail = f"{status.get('code', '')} {said}"
        return [ProviderReport(email, kind, detail, message_id)]
    return []


# --- SNS's signing certificates, kept ---------------------------------------------------------


class SigningCertificates:
    """SNS's signing certificates, fetched with ``fetch`` (itself a :data:`Fetch`). SNS signs
    with a handful: each is fetched once per process, one fetch at a time (a flood of forged
    messages costs one fetch per new URL, no more), and a URL whose fetch failed is not
    tried again for ``FAILED_FETCH_SECONDS``."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._kept: dict[str, bytes] = {}
        self._failed: dict[str, float] = {}  # URL -> until when a failed fetch is not tried again
        self._lock = threading.Lock()

    def __call__(self, url: str) -> bytes:
        with self._lock:
            if time.monotonic() < self._failed.get(url, 0.0):
                raise Refused("signing certificate unavailable (recently)")
            if url not in self._kept:
                if len(self._kept) >= 32:
                    self._kept.clear()
                if len(self._failed) >= 1024:
                    self._failed.clear()
                try:
                    self._kept[url] = self._fetch(url)
                except Exception:
                    self._failed[url] = time.monotonic() + FAILED_FETCH_SECONDS
                    raise
            return self._kept[url]


def fetch_https(url: str) -> bytes:
    """The default fetch: HTTPS with certificate checks, no redirects, small and quick."""
    from digest.common.bodies import BodyError, read_body
    from digest.common.http import make_client

    # No egress policy on top of sns_url_ok, which pinned the URL to an SNS host of amazonaws.com.
    with make_client(None, timeout=10.0, capped=True) as client, client.stream("GET", url) as response:
        response.raise_for_status()
        try:
            return read_body(response, CERT_BYTES, deadline=time.monotonic() + 10.0)
        except BodyError as exc:
            raise Refused(f"answer refused: {exc}") from exc
