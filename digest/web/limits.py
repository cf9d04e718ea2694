"""The web's rate limits: how many subscribe requests a client and an address may make, and
how many searches a client may run, counted in the database so that every process serving
the site counts the same requests.

A client is its address as :func:`digest.common.clients.client_key` counts it (an IPv4
address, an IPv6 /64). Keys are stored as keyed hashes (HMAC with the site secret): the
table says nothing about who asked, even to someone holding a copy.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from starlette.requests import Request

from digest.common.clients import client_key
from digest.store import SettingsStore


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` hits per key in any ``window`` seconds (a sliding window). The name
    is part of each stored key: renaming a limit starts its counts afresh."""

    name: str
    limit: int
    window: float

    def key(self, secret: bytes, key: str) -> str:
        """What the database counts ``key``'s hits under: a keyed hash, naming nobody."""
        return hmac.new(secret, f"{self.name}\0{key}".encode(), hashlib.sha256).hexdigest()[:32]

    def allow(self, store: SettingsStore, secret: bytes, key: str) -> bool:
        """Count a hit for ``key``; whether it is within the limit (run in a worker thread)."""
        return store.allow_hit(self.key(secret, key), limit=self.limit, window=self.window, now=store.now())


@dataclass(frozen=True)
class Limits:
    """The limits the app applies (one set per app, held in :mod:`.state`)."""

    # Searches run per client a minute (answers from the cache are free: only a search the
    # database runs costs, up to ``SEARCH_SECONDS`` of its time).
    searches: RateLimit = RateLimit("search", 60, 60.0)
    signups_per_client: RateLimit = RateLimit("client", 10, 600.0)  # 10 in 10 minutes
    signups_per_address: RateLimit = RateLimit("address", 3, 3600.0)  # and 3 per address an hour


def client_of(request: Request) -> str:
    """The client a request counts against (behind a proxy on this machine, uvicorn puts the
    address from X-Forwarded-For in ``request.client``)."""
    return client_key(request.client.host if request.client else "unknown")
