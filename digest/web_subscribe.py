"""The subscriber pages: subscribe (double opt-in), confirm, unsubscribe (RFC 8058 one-click
POST), preferences, and the web copies of past digests.

The subscribe form never says whether an address is already subscribed: every valid
request does the same work (queue it) and gets the same answer; the confirmation email goes
out after the answer (``signups.py``). Requests are rate-limited per client and per address.
Tokens are signed and bound to their subscriber (``digest/tokens.py``); a bad, expired or
used one is answered with a plain page that tells nothing about anyone. Nothing changes on
a GET: confirming, like unsubscribing, takes a button (a POST), so link scanners change
nothing.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest import signups, subscribers
from digest.dates import from_iso
from digest.digests import Selection, newcomer_since
from digest.errors import DigestError
from digest.mail import compose
from digest.mail.send import Mailer
from digest.store import Store
from digest.tokens import BadToken, make, read, secret_for
from digest.webcache import HTML, PAGE_CACHE_CONTROL, Cache, Rendered
from digest.webguard import same_origin

PER_CLIENT = (10, 600.0)  # at most 10 subscribe requests per client in 10 minutes
PER_ADDRESS = (3, 3600.0)  # and 3 per address in an hour
FORM_SECONDS = 3600  # a subscribe form is good for an hour


class RateLimit:
    """Sliding-window counts in memory, per key."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.hits: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        hits = self.hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True


def routes(cache: Cache) -> list[Route]:
    """The subscriber routes, rendering with the cache's site and using this thread's store."""
    site, settings, store_for_thread = cache.site, cache.settings, cache.store
    per_client, per_address = RateLimit(*PER_CLIENT), RateLimit(*PER_ADDRESS)

    def page(template: str, status: int = 200, **values: Any) -> HTMLResponse:
        count = store_for_thread().count_articles()
        return HTMLResponse(site.render(template, count, **values), status_code=status)

    def message(heading: str, text: str, status: int = 200, button: str | None = None) -> HTMLResponse:
        return page("message.html", status, heading=heading, text=text, button=button)

    def subscriber_from(request: Request, purpose: str) -> int | None:
        store = store_for_thread()
        secret = secret_for(store, settings.secret)
        try:
            return read(secret, request.path_params["token"], purpose, subscribers.bindings(store, purpose))
        except BadToken:
            return None

    def slugs_from(form: Any) -> tuple[list[str], list[str]]:
        """The regions and themes ticked on a form, checked (SubscriberError otherwise)."""
        regions = subscribers.check_slugs(
            [str(r) for r in form.getlist("region")], list(site.names["regions"]), "region"
        )
        themes = subscribers.check_slugs(
            [str(t) for t in form.getlist("theme")], list(site.names["themes"]), "theme"
        )
        return regions, themes

    def refused() -> HTMLResponse:
        return message("Refused", "This form can only be sent from this site.", 403)

    invalid = "This link is not valid (it may have expired, or been cut short by your email program)."

    async def subscribe(request: Request) -> Response:
        blank: dict[str, list[str]] = {"regions": [], "themes": []}
        secret = secret_for(store_for_thread(), settings.secret)
        if request.method == "GET":
            return page(
                "subscribe.html",
                email="",
                chosen=blank,
                error=None,
                form_token=make(secret, "form", 0, ttl=FORM_SECONDS),
            )
        # Cross-site requests: refused by Origin (or Referer), and by the form's signed token.
        if not same_origin(request, settings):
            return refused()
        form = await request.form()
        try:
            read(secret, str(form.get("form_token", "")), "form")
        except BadToken:
            return message("Form expired", "Please reload the subscribe page and send the form again.", 403)
        email = str(form.get("email", ""))[:320]
        chosen = {"regions": form.getlist("region"), "themes": form.getlist("theme")}
        client = request.client.host if request.client else "unknown"
        if not per_client.allow(client):
            return message("Too many requests", "Please wait a few minutes and try again.", 429)
        try:
            address = subscribers.normalise_email(email)
            regions, themes = slugs_from(form)
        except DigestError as exc:
            token = make(secret, "form", 0, ttl=FORM_SECONDS)
            return page("subscribe.html", 400, email=email, chosen=chosen, error=str(exc), form_token=token)
        if not per_address.allow(address.lower()):
            return message("Too many requests", "Please wait a while before trying this address again.", 429)
        # The same work and the same answer whether or not the address is subscribed: the
        # request is queued; what it leads to happens later, on the queue's own clock (work
        # started right after this answer would slow the next request, telling the same).
        await run_in_threadpool(lambda: signups.enqueue(store_for_thread(), address, regions, themes))
        return message(
            "Check your inbox",
            f"If {address} can receive our digest, a confirmation link is on its way to it.",
        )

    async def confirm(request: Request) -> Response:
        subscriber_id = subscriber_from(request, "confirm")
        if subscriber_id is None:
            return message(
                "Link not valid", invalid + " It may have been used already; you can subscribe again.", 400
            )
        if request.method == "GET":
            return message("Confirm", "Confirm your subscription to the digest?", button="Confirm")
        if not same_origin(request, settings):
            return refused()
        if not subscribers.confirm(store_for_thread(), subscriber_id):
            return message("Link not valid", invalid, 400)
        return message("Subscribed", "Thank you: your first digest comes with the next weekly send.")

    async def unsubscribe(request: Request) -> Response:
        subscriber_id = subscriber_from(request, "unsubscribe")
        if subscriber_id is None:
            return message("Link not valid", invalid, 400)
        if request.method == "GET":
            # A GET changes nothing, so link scanners cannot unsubscribe anyone.
            return message("Unsubscribe", "Stop receiving the weekly digest?", button="Unsubscribe")
        # RFC 8058: mail providers POST "List-Unsubscribe=One-Click" with no Origin or Referer;
        # the token in the link is what authorises it. Our own button comes with an Origin.
        form = await request.form()
        if form.get("List-Unsubscribe") != "One-Click" and not same_origin(request, settings):
            return refused()
        subscribers.unsubscribe(store_for_thread(), subscriber_id)
        return message("Unsubscribed", "You will not receive the digest any more.")

    async def preferences(request: Request) -> Response:
        subscriber_id = subscriber_from(request, "preferences")
        if subscriber_id is None:
            return message("Link not valid", invalid, 400)
        store = store_for_thread()
        saved = False
        if request.method == "POST":
            if not same_origin(request, settings):
                return refused()
            form = await request.form()
            try:
                regions, themes = slugs_from(form)
            except DigestError as exc:
                return message("Not saved", str(exc), 400)
            subscribers.set_preferences(store, subscriber_id, regions, themes)
            saved = True
        row = store.subscriber(subscriber_id=subscriber_id)
        assert row is not None
        chosen = {"regions": json.loads(row["regions"]), "themes": json.loads(row["themes"])}
        return page("preferences.html", email=row["email"], chosen=chosen, saved=saved)

    async def digests(request: Request) -> Response:
        return page("digests.html", digests=store_for_thread().digests())

    async def digest_copy(request: Request) -> Response:
        digest_id = request.path_params["digest_id"]

        def build(store: Store) -> Rendered:
            found = store.digest(digest_id)
            if found is None:
                page = site.render(
                    "message.html", store.count_articles(), heading="Not found",
                    text=f"There is no digest {digest_id!r}.", button=None,
                )  # fmt: skip
                return Rendered.of(page.encode(), HTML, status=404)
            until = from_iso(found["until"])
            mailer = Mailer(store, settings)
            content = mailer.content(Selection(newcomer_since(until)), until, limit=None)  # every one
            rendered = compose.render(content, settings, found["id"], mailer.env)
            base = settings.site.base_url
            body = rendered.filled(
                "html",
                email="a subscriber",
                unsubscribe_url=f"{base}/subscribe",
                preferences_url=f"{base}/subscribe",
            )
            return Rendered.of(body.encode(), HTML)

        return await cache.answer(request, ("digest", digest_id), build, PAGE_CACHE_CONTROL)

    return [
        Route("/subscribe", subscribe, methods=["GET", "POST"]),
        Route("/confirm/{token}", confirm, methods=["GET", "POST"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/preferences/{token}", preferences, methods=["GET", "POST"]),
        Route("/digests/", digests),
        Route("/digests/{digest_id}", digest_copy),
    ]
