"""VERP envelope senders: ``bounces+TOKEN@DOMAIN`` per delivery, so a bounce names the
subscriber and the digest it is about without anyone parsing its prose.

The token is base32 (lowercase; mail servers may change the case of a local part), 31
characters: the subscriber id (5 bytes), 4 bytes of the digest id's SHA-256, and an
80-bit HMAC (the site secret) over both and the subscriber's binding (address and creation
time, as link tokens are bound), so a token dies with the subscriber it was made for and
a forged or altered one is refused. The local part stays within 64 characters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from digest.subscribers.tokens import BadToken, Binding

PREFIX = "bounces+"
_ID_BYTES, _DIGEST_BYTES, _MAC_BYTES = 5, 4, 10


@dataclass(frozen=True)
class Delivery:
    """What a valid envelope sender says: the subscriber, and which digest (by hash)."""

    subscriber_id: int
    digest_hash: bytes

    def is_for(self, digest_id: str) -> bool:
        return hmac.compare_digest(self.digest_hash, _digest_hash(digest_id))


def _digest_hash(digest_id: str) -> bytes:
    return hashlib.sha256(digest_id.encode()).digest()[:_DIGEST_BYTES]


def _mac(secret: bytes, payload: bytes, binding: str) -> bytes:
    return hmac.new(secret, b"verp\x00" + payload + b"\x00" + binding.encode(), hashlib.sha256).digest()[
        :_MAC_BYTES
    ]


def envelope_sender(secret: bytes, digest_id: str, subscriber_id: int, binding: Binding, domain: str) -> str:
    """The envelope sender (Return-Path) of one delivery."""
    payload = subscriber_id.to_bytes(_ID_BYTES, "big") + _digest_hash(digest_id)
    token = base64.b32encode(payload + _mac(secret, payload, binding.value)).decode().rstrip("=").lower()
    return f"{PREFIX}{token}@{domain}"


def read(secret: bytes, address: str, binding: Callable[[int], Binding | None]) -> Delivery:
    """The delivery a bounce address names; BadToken when it is not one of ours, forged,
    altered, or for a subscriber who is gone."""
    local, at, _ = address.strip().strip("<>").rpartition("@")
    if not at or not local.lower().startswith(PREFIX) or len(local) > 64:
        raise BadToken("not a bounce address")
    token = local[len(PREFIX) :].upper()
    try:
        raw = base64.b32decode(token + "=" * (-len(token) % 8))
    except (binascii.Error, ValueError) as exc:
        raise BadToken("malformed") from exc
    if (
        len(raw) != _ID_BYTES + _DIGEST_BYTES + _MAC_BYTES
        or base64.b32encode(raw).decode().rstrip("=") != token
    ):
        raise BadToken("malformed")  # the wrong length, or bits past the end set: one spelling only
    payload, given = raw[: _ID_BYTES + _DIGEST_BYTES], raw[_ID_BYTES + _DIGEST_BYTES :]
    subscriber_id = int.from_bytes(payload[:_ID_BYTES], "big")
    bound = binding(subscriber_id)
    if bound is None or not hmac.compare_digest(_mac(secret, payload, bound.value), given):
        raise BadToken("signature does not match")
    return Delivery(subscriber_id, payload[_ID_BYTES:])
