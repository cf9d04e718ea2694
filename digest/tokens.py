"""Signed tokens for confirm, unsubscribe and preferences links (HMAC-SHA256, stdlib only).

A token is ``base64url(payload).base64url(mac)``; the payload names the purpose, the
subscriber and, for confirmations, an expiry. Unsubscribe and preference tokens do not
expire: a link in a year-old email must still work.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

from digest.store import Store

SECRET_SETTING = "token_secret"  # noqa: S105 (the settings row that holds the secret, not a secret)
CONFIRM_SECONDS = 7 * 86400


class BadToken(Exception):
    """A token that is malformed, forged, for another purpose, or expired."""


def secret_for(store: Store, configured: str | None) -> bytes:
    """``DIGEST_SECRET`` when set, else one generated once and kept in the database."""
    if configured:
        return configured.encode()
    return store.setting(SECRET_SETTING, lambda: secrets.token_urlsafe(32)).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make(
    secret: bytes, purpose: str, subscriber_id: int, *, ttl: int | None = None, now: float | None = None
) -> str:
    """A token for ``purpose`` (confirm, unsubscribe, preferences) and one subscriber."""
    payload: dict[str, object] = {"p": purpose, "s": subscriber_id}
    if ttl is not None:
        payload["e"] = int((now if now is not None else time.time()) + ttl)
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def read(secret: bytes, token: str, purpose: str, *, now: float | None = None) -> int:
    """The subscriber id a valid token for ``purpose`` carries; BadToken otherwise."""
    try:
        body, mac = token.split(".")
        expected = hmac.new(secret, body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            raise BadToken("signature does not match")
        payload = json.loads(_unb64(body))
    except (ValueError, TypeError) as exc:
        raise BadToken(f"malformed: {exc}") from None
    if payload.get("p") != purpose or not isinstance(payload.get("s"), int):
        raise BadToken("wrong purpose")
    if "e" in payload and (now if now is not None else time.time()) > payload["e"]:
        raise BadToken("expired")
    return int(payload["s"])
