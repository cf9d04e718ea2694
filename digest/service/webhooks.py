"""Delivering outgoing webhooks from the durable queue (``digest.publish.events`` fills it).

Each message is POSTed as JSON with the Standard Webhooks headers: ``webhook-id`` (the same
on every retry), ``webhook-timestamp`` (seconds) and ``webhook-signature`` (``v1,`` and the
base64 HMAC-SHA256 of ``id.timestamp.body`` under the endpoint's secret; a ``whsec_`` secret
is base64 of the key). A 2xx answer delivers it; anything else, or no answer, is tried
again after :data:`RETRIES` (30 s, 2 min, 10 min, 1 h, 6 h, 24 h), then given up (kept as
failed). Claims keep two workers from sending one message at once; a worker that dies
leaves its claims to run out. An endpoint is reached under the fetch policy: no loopback
or private address unless it (or ``[fetch] allow_private``) allows, no redirect followed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from digest.common import redact
from digest.common.egress import policy_for
from digest.common.http import Refused, make_client
from digest.config import Settings
from digest.publish.events import Endpoint, collect, endpoints
from digest.store import Store

log = logging.getLogger("digest")

RETRIES = (30.0, 120.0, 600.0, 3600.0, 6 * 3600.0, 24 * 3600.0)
TIMEOUT = 10.0
BATCH = 100
CLAIM_SECONDS = 120.0
KEEP = timedelta(days=30)  # delivered and failed messages are forgotten after this


def key_of(secret: str) -> bytes:
    """The signing key a secret stands for (Standard Webhooks: ``whsec_`` + base64)."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header's value for this message."""
    signed = f"{message_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key_of(secret), signed, hashlib.sha256).digest()).decode()


@dataclass
class Delivered:
    """What one pass did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def deliver(
    store: Store,
    settings: Settings,
    holder: str,
    now: datetime,
) -> Delivered:
    """Send what is due (one batch)."""
    done = Delivered()
    claimed = store.claim_events(holder, limit=BATCH, seconds=CLAIM_SECONDS, now=now)
    if not claimed:
        return done
    targets = {e.url: e for e in endpoints(settings, store)}
    clients: dict[str, httpx.Client] = {}
    try:
        for event in claimed:
            target = targets.get(event.url)
            error = (
                "the endpoint is gone"
                if target is None
                else _post(clients, target, event.id, event.payload, now, settings)
            )
            if error is None:
                done.delivered += 1
                store.event_tried(event.id, now=now, error=None, retry_at=None)
                continue
            final = target is None or event.attempts >= len(RETRIES)
            retry_at = None if final else now + timedelta(seconds=RETRIES[event.attempts])
            store.event_tried(event.id, now=now, error=error, retry_at=retry_at)
            if final:
                done.failed += 1
                log.warning("webhook %s to %s: given up: %s", event.type, redact.url(event.url), error,
                            extra={"event": "webhooks"})  # fmt: skip
            else:
                done.retrying += 1
    finally:
        for client in clients.values():
            client.close()
    store.prune_events(now - KEEP)
    return done


def _post(
    clients: dict[str, httpx.Client],
    target: Endpoint,
    message_id: str,
    payload: str,
    now: datetime,
    settings: Settings,
) -> str | None:
    """POST one message; None when delivered, else what went wrong (one line, redacted)."""
    client = clients.get(target.url)
    if client is None:
        # An endpoint is given as a source added at run time is: its host trusted only if allowed.
        allowed = target.allow_private or settings.fetch.allow_private
        policy = policy_for(target.url, allow_private=allowed, added=True)
        client = clients[target.url] = make_client(
            policy, timeout=TIMEOUT, user_agent=settings.fetch.user_agent
        )
    stamp = int(now.timestamp())
    headers: Mapping[str, str] = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature(target.secret, message_id, stamp, payload),
    }
    try:
        answer = client.post(target.url, content=payload.encode(), headers=headers)
    except (httpx.HTTPError, Refused, OSError) as exc:  # the policy's refusal among them
        return redact.text(f"{target.url}: {exc}") or type(exc).__name__
    if 200 <= answer.status_code < 300:
        return None
    return f"{redact.url(target.url)}: HTTP {answer.status_code}"


def run_once(store: Store, settings: Settings, holder: str, now: datetime) -> Delivered:
    """Queue what happened, then send what is due: what `digest run` does every tick and
    a one-off command once at its end."""
    collect(store, settings, now)
    return deliver(store, settings, holder, now)
