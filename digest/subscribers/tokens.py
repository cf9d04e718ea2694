"""Signed tokens for confirm, unsubscribe and preferences links (HMAC-SHA256, stdlib only).

A token is ``base64url(payload).base64url(mac)``; the payload names the purpose, the
subscriber id and, for confirmations, an expiry. The MAC also covers a *binding*: what
only that subscriber has (their address and creation time; for a confirmation, also when
the pending request began), so a token dies with the subscriber it was made for. Ids are
never reused, and even a copied id would not carry the binding.

Unsubscribe and preference tokens do not expire: a link in a year-old email must still
work. Tokens made before bindings existed (version 1) are accepted for unsubscribing only,
and only for subscribers who existed when such tokens were made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from digest.store import SettingsStore

SECRET_SETTING = "token_secret"  # noqa: S105 (the settings row that holds the secret, not a secret)
CONFIRM_SECONDS = 7 * 86400
MAX_TOKEN = 300  # ours are under 200 characters; nothing longer is even parsed


class BadToken(Exception):
    """A token that is malformed, forged, for another purpose, expired, or for a subscriber
    who is gone."""


@dataclass(frozen=True)
class Binding:
    """What a token for one subscriber is bound to, as the store knows it now. ``legacy``:
    version-1 tokens (no binding) are honoured for this subscriber."""

    value: str
    legacy: bool = False


def secret_for(store: SettingsStore, configured: str | None) -> bytes:
    """``DIGEST_SECRET`` when set, else one generated once and kept in the database."""
    if configured:
        return configured.encode()
    return store.setting(SECRET_SETTING, lambda: secrets.token_urlsafe(32)).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: str, binding: str | None) -> bytes:
    message = body if binding is None else f"{body}\x00{binding}"
    return hmac.new(secret, message.encode(), hashlib.sha256).digest()


def make(
    secret: bytes,
    purpose: str,
    subscriber_id: int,
    *,
    binding: str = "",
    ttl: int | None = None,
    now: float | None = None,
) -> str:
    """A token for ``purpose`` (confirm, unsubscribe, preferences, form) and one subscriber."""
    payload: dict[str, object] = {"p": purpose, "s": subscriber_id, "v": 2}
    if ttl is not None:
        payload["e"] = int((now if now is not None else time.time()) + ttl)
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_b64(_mac(secret, body, binding))}"


def read(
    secret: bytes,
    token: str,
    purpose: str,
    binding: Callable[[int], Binding | None] = lambda _: Binding(""),
    *,
    now: float | None = None,
) -> int:
    """The subscriber id a valid token for ``purpose`` carries; BadToken otherwise.
    ``binding`` gives the subscriber's current binding (None: no such subscriber)."""
    if len(token) > MAX_TOKEN:
        raise BadToken("too long")
    try:
        body, mac = token.split(".")
        payload = json.loads(_unb64(body))
        given = _unb64(mac)
    except (ValueError, TypeError, RecursionError) as exc:
        raise BadToken(f"malformed: {type(exc).__name__}") from exc
    if not isinstance(payload, dict) or payload.get("p") != purpose:
        raise BadToken("wrong purpose")
    subscriber_id = payload.get("s")
    # Checked before the id goes near the database (the MAC covers the binding it looks up).
    if type(subscriber_id) is not int or not 0 <= subscriber_id < 2**63:
        raise BadToken("no such subscriber")
    bound = binding(subscriber_id)
    if bound is None:
        raise BadToken("no such subscriber")
    if payload.get("v") == 2:
        expected = _mac(secret, body, bound.value)
    elif purpose == "unsubscribe" and bound.legacy:
        expected = _mac(secret, body, None)
    else:
        raise BadToken("an old kind of token, no longer accepted here")
    if not hmac.compare_digest(expected, given):
        raise BadToken("signature does not match")
    expiry = payload.get("e")
    if expiry is not None and (
        not isinstance(expiry, int) or (now if now is not None else time.time()) > expiry
    ):
        raise BadToken("expired")
    return subscriber_id
