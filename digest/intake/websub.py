"""WebSub, both ways.

As a publisher: with ``[site] websub_hub``, our feeds name the hub (``<link rel="hub">``
beside ``rel="self"``; ``hubs`` in JSON Feed), and after a pull that changed them the hub is
told (``hub.mode=publish``, one request per site-wide feed). A ping that fails is a warning:
readers still poll, and the next change pings again.

As a subscriber: when a source's feed names a hub (``<link rel="hub">`` in the feed, or an
HTTP ``Link`` header) and the hub can reach ``[site] base_url`` (a public base URL; or a
private one for a hub on a private address too), a pull subscribes at the hub with the
callback ``/websub/{source}``, a secret of its own and a lease, and renews the lease at a
pull in its last day. The hub's verification of intent is answered only for what was asked;
a push is taken only with a valid ``X-Hub-Signature`` (HMAC of the body with the secret) and
is stored at once; any other push is ignored. The source is still polled, every
``SAFETY_POLL`` at most, in case the hub misses something. The state of each subscription
is a settings row (``websub:{source}``).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import ipaddress
import json
import logging
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from lxml import etree

from digest.common import redact
from digest.common.dates import from_iso, to_iso
from digest.common.egress import FetchPolicy
from digest.common.http import Refused, make_client
from digest.config import Settings, SourceSettings
from digest.publish.feeds import FORMATS, FeedSpec
from digest.store import SettingsStore

log = logging.getLogger("digest")
PING_SECONDS = 10.0
LEASE_SECONDS = 10 * 86400  # asked for; the hub decides
RENEW_WITHIN = timedelta(days=1)
SAFETY_POLL = 6 * 3600.0  # a subscribed source is polled at least this far apart
SIGNATURES = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}
_LINK_HEADER = re.compile(r"<([^<>]{1,2048})>\s*;([^,<>]{0,512})")  # bounded: linear however hostile
LINK_HEADER_CHARS = 8192
FEED_HEAD_BYTES = 256 * 1024


@dataclass
class Subscription:
    hub: str
    topic: str
    secret: str
    state: str  # "requested", "active" or "denied"
    lease_until: str | None = None
    requested: str | None = None
    token: str = ""  # the callback's last path segment: only the hub knows it
    pending: bool = False  # a request the hub has yet to verify (the only one it may verify)

    def lease_end(self) -> datetime | None:
        return from_iso(self.lease_until) if self.lease_until else None


def feed_urls(settings: Settings) -> list[str]:
    """The feeds a ping names."""
    site = FeedSpec("site", None, settings.site.title)
    return [f"{settings.site.base_url}{site.path(fmt)}" for fmt in FORMATS]


def _post_status(client: httpx.Client, hub: str, form: dict[str, str]) -> int:
    """POST ``form`` to the hub; only its status is read (a hub's body, whatever it holds or
    expands to, is never read)."""
    with client.stream("POST", hub, data=form) as answer:
        return answer.status_code


def ping(settings: Settings) -> list[str]:
    """Tell the hub the feeds changed; a warning for each ping that failed."""
    hub = settings.site.websub_hub
    if not hub:
        return []
    problems = []
    # No egress policy: the hub is the operator's own setting, and may be a private address.
    with make_client(None, timeout=PING_SECONDS) as client:
        for url in feed_urls(settings):
            try:
                status = _post_status(client, hub, {"hub.mode": "publish", "hub.url": url})
                if status >= 300:
                    problems.append(f"WebSub hub answered {status} for {url}")
            except httpx.HTTPError as exc:
                problems.append(f"WebSub hub {redact.url(hub)}: {type(exc).__name__}")
    for problem in problems:
        log.warning("%s", problem, extra={"event": "websub"})
    return problems


# --- the subscriber side ----------------------------------------------------------------------


def discover(body: bytes, link_header: str | None) -> tuple[str | None, str | None]:
    """The hub and the topic (``rel="self"``) a feed names: in its HTTP Link header, or as a
    link of the feed itself (a child of ``<feed>`` or ``<channel>``, before the first entry:
    a link inside an item is the item author's, never the feed's)."""
    found: dict[str, str] = {}
    for target, params in _LINK_HEADER.findall((link_header or "")[:LINK_HEADER_CHARS]):
        for rel in re.findall(r'rel\s*=\s*"?([^";]{1,200})"?', params):
            for name in rel.split():
                found.setdefault(name.lower(), target.strip())
    for rel, href in _feed_links(body):
        for name in rel.lower().split():
            found.setdefault(name, href.strip())
    hub, topic = found.get("hub"), found.get("self")
    return (hub if hub and _http(hub) else None), (topic if topic and _http(topic) else None)


def _feed_links(body: bytes) -> list[tuple[str, str]]:
    """(rel, href) of the feed-level links, read as XML up to the first entry (no entities
    resolved, nothing fetched)."""
    found: list[tuple[str, str]] = []
    feed = None
    try:
        events = etree.iterparse(
            io.BytesIO(body[:FEED_HEAD_BYTES]),
            events=("start",),
            resolve_entities=False,
            no_network=True,
            huge_tree=False,
            recover=True,
        )
        for _, element in events:
            name = etree.QName(element).localname.lower()
            if name in ("item", "entry"):
                break
            if name in ("feed", "channel") and feed is None:
                feed = element
            elif name == "link" and feed is not None and element.getparent() is feed:
                rel, href = element.get("rel"), element.get("href")
                if rel and href:
                    found.append((rel, href))
    except etree.LxmlError:
        pass
    return found


def _http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc


def reachable(base_url: str, hub: str) -> bool:
    """Whether a hub can call ``base_url`` back: it is public, or the hub is private too."""
    return _public(base_url) or not _public(hub)


def _public(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith((".localhost", ".local", ".internal", ".lan")):
        return False
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:
        return True  # a name (not looked up: it may resolve differently where the hub is)


def callback(settings: Settings, source: str, token: str) -> str:
    return f"{settings.site.base_url}/websub/{source}/{token}"


def _key(source: str) -> str:
    return f"websub:{source}"


def subscription(store: SettingsStore, source: str) -> Subscription | None:
    text = store.get_setting(_key(source))
    if not text:
        return None
    try:
        return Subscription(**json.loads(text))
    except (ValueError, TypeError):
        return None


def _save(store: SettingsStore, source: str, found: Subscription) -> None:
    store.put_setting(_key(source), json.dumps(asdict(found), sort_keys=True))


def active(store: SettingsStore, source: str, now: datetime) -> bool:
    found = subscription(store, source)
    end = found.lease_end() if found else None
    return found is not None and found.state == "active" and end is not None and end > now


def maintain(
    store: SettingsStore,
    settings: Settings,
    source: SourceSettings,
    hub: str,
    topic: str,
    now: datetime,
    policy: FetchPolicy,
) -> str | None:
    """Subscribe at the hub, or renew, when it is time; a warning when the hub refused. The
    hub's address comes from the feed: it is reached under the source's fetch policy, as the
    feed is (a public source's feed cannot send digest to a private address)."""
    if not reachable(settings.site.base_url, hub):
        return None  # the hub could not call us back: polling it is
    if _public(hub) and urlsplit(hub).scheme != "https":
        return f"WebSub hub {redact.url(hub)} is not https: not subscribed (the secret would travel in clear)"
    found = subscription(store, source.name)
    end = found.lease_end() if found else None
    if found and found.hub == hub and found.topic == topic:
        if found.state == "active" and end and end - now > RENEW_WITHIN:
            return None
        if found.state == "requested" and found.requested and now - from_iso(found.requested) < RENEW_WITHIN:
            return None  # asked already; the hub has yet to verify
    fresh = Subscription(
        hub, topic, secrets.token_hex(32), "requested", None, to_iso(now), secrets.token_hex(16), pending=True
    )
    if found and found.hub == hub and found.topic == topic and found.state == "active":
        # A renewal: pushes go on meanwhile, signed with the same secret, under the old lease.
        fresh.secret, fresh.state, fresh.lease_until, fresh.token = (
            found.secret, "active", found.lease_until, found.token
        )  # fmt: skip
    _save(store, source.name, fresh)
    form = {
        "hub.mode": "subscribe",
        "hub.topic": topic,
        "hub.callback": callback(settings, source.name, fresh.token),
        "hub.secret": fresh.secret,
        "hub.lease_seconds": str(LEASE_SECONDS),
    }
    try:
        with make_client(policy, timeout=PING_SECONDS) as client:
            status = _post_status(client, hub, form)
    except (httpx.HTTPError, Refused) as exc:
        return f"WebSub hub {redact.url(hub)}: {type(exc).__name__}"
    if status >= 300:
        return f"WebSub hub {redact.url(hub)} refused the subscription: HTTP {status}"
    log.info(
        "websub %s: asked %s for %s",
        source.name,
        redact.url(hub),
        redact.url(topic),
        extra={"event": "websub"},
    )
    return None


def verify(
    store: SettingsStore, source: str, token: str, params: dict[str, str], now: datetime
) -> str | None:
    """The hub's verification of intent: the challenge to echo, or None (404) when digest did
    not ask for this (wrong callback token or topic, or no request pending)."""
    found = subscription(store, source)
    mode, topic = params.get("hub.mode"), params.get("hub.topic")
    if found is None or not known(found, token) or topic != found.topic or not found.pending:
        return None
    if mode == "denied":
        found.state, found.pending = "denied", False
        _save(store, source, found)
        log.warning("websub %s: the hub denied the subscription (%s)", source, params.get("hub.reason", ""))
        return ""
    if mode != "subscribe" or found.state not in ("requested", "active"):
        return None
    try:
        lease = max(60, min(int(params.get("hub.lease_seconds", LEASE_SECONDS)), LEASE_SECONDS))
    except ValueError:
        return None
    found.state, found.pending = "active", False
    found.lease_until = to_iso(now + timedelta(seconds=lease))
    _save(store, source, found)
    log.info("websub %s: subscribed until %s", source, found.lease_until, extra={"event": "websub"})
    return params.get("hub.challenge", "")


def known(found: Subscription, token: str) -> bool:
    """Whether a callback's token is this subscription's."""
    return bool(found.token) and hmac.compare_digest(found.token.encode(), token.encode("utf-8", "replace"))


def signed(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``X-Hub-Signature`` is the HMAC of the body with the subscription's secret."""
    method, _, given = (header or "").partition("=")
    digest = SIGNATURES.get(method.strip().lower())
    if digest is None or not given or not given.isascii():
        return False
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode())
