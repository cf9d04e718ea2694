"""What the app holds, in one typed object: :class:`WebState`, stored as
``app.state.digest`` by :func:`digest.web.app.create_app` and read by every endpoint through
:func:`web_state` (``request.app.state`` itself is untyped: this is the one place that says
what is in it).

It is made once per app and never changed (what changes, the cache's entries and the
certificates fetched so far, is kept by objects that lock for themselves). The database is
reached only through :meth:`WebState.store`, in a worker thread: sqlite3 connections stay in
the thread that made them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request

from digest.config import Settings
from digest.feedback.webhooks import Fetch, SigningCertificates
from digest.publish.site import Site
from digest.store import Store
from digest.subscribers.tokens import secret_for
from digest.web.cache import Cache
from digest.web.choices import offered_zones
from digest.web.limits import Limits

# The service's state for /healthz: (HTTP status, body), details included.
Health = Callable[[], Awaitable[tuple[int, dict[str, Any]]]]


@dataclass(frozen=True)
class WebState:
    """Everything the endpoints need besides the request."""

    settings: Settings
    cache: Cache  # the rendered answers, the site that renders them, each thread's store
    health: Health | None  # None (as under `digest serve`): healthy when up
    fetch: Fetch  # gets what SNS names (its signing certificates, its subscribe URLs)
    certificates: SigningCertificates  # SNS's, fetched with ``fetch`` once each
    pushed: frozenset[str]  # the sources a WebSub hub may push to (pulled and enabled)
    zones: tuple[str, ...]  # the time zones the forms offer
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def build(cls, settings: Settings, health: Health | None, fetch: Fetch) -> WebState:
        """The state of a new app for ``settings``."""
        return cls(
            settings=settings,
            cache=Cache(settings),
            health=health,
            fetch=fetch,
            certificates=SigningCertificates(fetch),
            pushed=frozenset(s.name for s in settings.sources if s.pulled and s.enabled),
            zones=offered_zones(settings),
        )

    @property
    def site(self) -> Site:
        """The site that renders the pages and feeds."""
        return self.cache.site

    def store(self) -> Store:
        """This worker thread's store."""
        return self.cache.store()

    def secret(self) -> bytes:
        """The site's secret (from this thread's store unless configured)."""
        return secret_for(self.store(), self.settings.secret)


def state_of(app: Starlette) -> WebState:
    """What ``app`` holds (TypeError for an app :func:`create_app` did not make)."""
    held = getattr(app.state, "digest", None)
    if not isinstance(held, WebState):
        raise TypeError("this app holds no digest state (made by digest.web.app.create_app?)")
    return held


def web_state(request: Request) -> WebState:
    """What the app serving ``request`` holds."""
    return state_of(request.app)
