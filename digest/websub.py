"""WebSub, the publisher side: with ``[site] websub_hub``, our feeds name the hub
(``<link rel="hub">`` beside ``rel="self"``; ``hubs`` in JSON Feed), and after a pull that
changed them the hub is told (``hub.mode=publish``, one request per feed), so readers
subscribed there hear at once instead of at their next poll.

The pings are for the site-wide feeds (Atom, RSS, JSON). A ping that fails is a warning:
readers still poll, and the next change pings again.
"""

from __future__ import annotations

import logging

import httpx

from digest import redact
from digest.config import Settings
from digest.publish import FORMATS, FeedSpec

log = logging.getLogger("digest")
PING_SECONDS = 10.0


def feed_urls(settings: Settings) -> list[str]:
    """The feeds a ping names."""
    site = FeedSpec("site", None, settings.site.title)
    return [f"{settings.site.base_url}{site.path(fmt)}" for fmt in FORMATS]


def ping(settings: Settings) -> list[str]:
    """Tell the hub the feeds changed; a warning for each ping that failed."""
    hub = settings.site.websub_hub
    if not hub:
        return []
    problems = []
    with httpx.Client(timeout=PING_SECONDS, follow_redirects=False) as client:
        for url in feed_urls(settings):
            try:
                answer = client.post(hub, data={"hub.mode": "publish", "hub.url": url})
                if answer.status_code >= 300:
                    problems.append(f"WebSub hub answered {answer.status_code} for {url}")
            except httpx.HTTPError as exc:
                problems.append(f"WebSub hub {redact.url(hub)}: {type(exc).__name__}")
    for problem in problems:
        log.warning("%s", problem, extra={"event": "websub"})
    return problems
