"""The subscriber pages: subscribe (double opt-in), confirm, unsubscribe (RFC 8058 one-click
POST), preferences, and the web copies of past digests.

The subscribe form never says whether an address is already subscribed: every valid
request does the same work (queue it) and gets the same answer; the confirmation email goes
out after the answer (:mod:`digest.mail.confirmations`). Requests are rate-limited per client
and per address. Tokens are signed and bound to their subscriber
(:mod:`digest.subscribers.tokens`); a bad, expired or used one is answered with a plain
page that tells nothing about anyone. Nothing changes on a GET: confirming, like
unsubscribing, takes a button (a POST), so link scanners change nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest.common import query
from digest.common.addresses import normalise_email
from digest.common.clients import client_key
from digest.common.errors import DigestError, SubscriberError
from digest.common.rhythms import Rhythm, common_zones, local_time, next_due, weekday_name
from digest.mail import compose, schedule
from digest.mail.planner import Planner, sample_links
from digest.store import Store, Subscriber
from digest.subscribers import lifecycle as subscribers
from digest.subscribers import signups
from digest.subscribers.tokens import BadToken, make, read, secret_for
from digest.web.cache import HTML, PAGE_CACHE_CONTROL, Cache, Rendered
from digest.web.guard import same_origin

PER_CLIENT = (10, 600.0)  # at most 10 subscribe requests per client in 10 minutes
PER_ADDRESS = (3, 3600.0)  # and 3 per address in an hour
FORM_SECONDS = 3600  # a subscribe form is good for an hour
WEEKDAYS = tuple(weekday_name(n) for n in range(7))  # the form's values, Monday first


class RateLimit:
    """Sliding-window counts per key, kept in the database so that every process serving
    the form counts the same requests. Keys are stored as keyed hashes (HMAC with the site
    secret): the table says nothing about who asked, even to someone holding a copy."""

    def __init__(self, name: str, limit: int, window: float) -> None:
        self.name, self.limit, self.window = name, limit, window

    def allow(self, store: Store, secret: bytes, key: str) -> bool:
        hashed = hmac.new(secret, f"{self.name}\0{key}".encode(), hashlib.sha256).hexdigest()[:32]
        return store.allow_hit(hashed, limit=self.limit, window=self.window, now=store.now())


def routes(cache: Cache) -> list[Route]:
    """The subscriber routes, rendering with the cache's site. Every handler does its database
    work and its rendering in a worker thread (with that thread's store): the event loop,
    which `digest run` shares with the scheduler and the mail sender, only waits."""
    site, settings, store_for_thread = cache.site, cache.settings, cache.store
    per_client, per_address = RateLimit("client", *PER_CLIENT), RateLimit("address", *PER_ADDRESS)

    def page(template: str, status: int = 200, **values: Any) -> HTMLResponse:
        count = store_for_thread().count_articles()
        return HTMLResponse(site.render(template, count, **values), status_code=status)

    def message(heading: str, text: str, status: int = 200, button: str | None = None) -> HTMLResponse:
        return page("message.html", status, heading=heading, text=text, button=button)

    def secret() -> bytes:
        return secret_for(store_for_thread(), settings.secret)

    def subscriber_from(token: str, purpose: str) -> int | None:
        store = store_for_thread()
        try:
            return read(secret(), token, purpose, subscribers.bindings(store, purpose))
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

    defaults = subscribers.defaults_for(settings)
    zones = list(common_zones())
    if settings.schedule.timezone not in zones:
        zones.insert(0, settings.schedule.timezone)

    def zones_for(subscriber: Subscriber | None) -> list[str]:
        """The zones a form offers: the common ones, and the reader's own wherever it came
        from (the CLI or a CSV may set any IANA zone), so that saving keeps it."""
        own = subscriber.rhythm.timezone if subscriber and subscriber.rhythm else None
        return zones if own is None or own in zones else [own, *zones]

    def rhythm_from(form: Any, existing: Subscriber | None) -> Rhythm | None:
        """The rhythm chosen on a form (SubscriberError otherwise). None: as it was, or
        for a new subscriber the site's default (a form without a cadence, or its "with
        everyone" choice, keeps a subscriber on the site's schedule)."""
        if "cadence" not in form:
            return defaults.rhythm({}, existing)
        given = {k: str(form.get(k, ""))[:64] for k in subscribers.RHYTHM_FIELDS}
        if given["timezone"] and given["timezone"] not in zones_for(existing):
            raise SubscriberError("choose a time zone from the list")
        return defaults.rhythm(given, existing) if given["cadence"] else None

    def topics_from(form: Any) -> tuple[str, ...] | None:
        if "topic" not in form:
            return None
        return subscribers.chosen_topics(str(t)[: query.MAX_LENGTH + 1] for t in form.getlist("topic")[:20])

    def chosen_on(form: Any) -> dict[str, Any]:
        """A form's choices, to show it again with what was chosen."""
        hour, weekday = str(form.get("hour", "")), str(form.get("weekday", ""))
        return {
            "regions": form.getlist("region"),
            "themes": form.getlist("theme"),
            "cadence": str(form.get("cadence", "")),
            "timezone": str(form.get("timezone", "")),
            "hour": int(hour) if hour.isascii() and hour.isdigit() and len(hour) <= 2 else 8,
            "weekday": WEEKDAYS.index(weekday) if weekday in WEEKDAYS else 0,
            "topics": [str(t) for t in form.getlist("topic")][: query.MAX_TOPICS],
        }

    def chosen_by(subscriber: Subscriber) -> dict[str, Any]:
        rhythm = subscriber.rhythm or Rhythm(defaults.cadence or "weekly", defaults.timezone)
        return {
            "regions": list(subscriber.regions),
            "themes": list(subscriber.themes),
            "cadence": subscriber.rhythm.cadence if subscriber.rhythm else "",
            "timezone": rhythm.timezone,
            "hour": rhythm.hour,
            "weekday": rhythm.weekday,
            "topics": list(subscriber.topics),
        }

    def next_delivery(store: Store, subscriber: Subscriber) -> str | None:
        """When the subscriber's next digest is due, in their own time."""
        now = store.now()
        if subscriber.rhythm is None:
            due = schedule.next_due(store, settings, now)
            return local_time(due, settings.schedule.timezone) if due else None
        due = subscriber.next_due if subscriber.next_due and subscriber.next_due > now else None
        return local_time(due or next_due(subscriber.rhythm, now), subscriber.rhythm.timezone)

    def refused() -> HTMLResponse:
        return message("Refused", "This form can only be sent from this site.", 403)

    invalid = "This link is not valid (it may have expired, or been cut short by your email program)."

    def subscribe_form(email: str = "", chosen: Any = None, error: str | None = None) -> HTMLResponse:
        token = make(secret(), "form", 0, ttl=FORM_SECONDS)
        blank = {
            "regions": [], "themes": [], "cadence": defaults.cadence or "weekly",
            "timezone": defaults.timezone, "hour": 8, "weekday": 0, "topics": [],
        }  # fmt: skip
        status = 400 if error else 200
        return page(
            "subscribe.html", status, email=email, chosen=chosen or blank, error=error, form_token=token,
            zones=zones, on_site_schedule=False,
        )  # fmt: skip

    async def subscribe(request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(subscribe_form)
        # Cross-site requests: refused by Origin (or Referer), and by the form's signed token.
        if not same_origin(request, settings):
            return await run_in_threadpool(refused)
        form = await request.form()
        client = client_key(request.client.host if request.client else "unknown")

        def answer() -> HTMLResponse:
            try:
                read(secret(), str(form.get("form_token", "")), "form")
            except BadToken:
                return message(
                    "Form expired", "Please reload the subscribe page and send the form again.", 403
                )
            email = str(form.get("email", ""))[:320]
            if not per_client.allow(store_for_thread(), secret(), client):
                return message("Too many requests", "Please wait a few minutes and try again.", 429)
            try:
                address = normalise_email(email)
                regions, themes = slugs_from(form)
                rhythm, topics = rhythm_from(form, None), topics_from(form) or ()
            except DigestError as exc:
                return subscribe_form(email, chosen_on(form), str(exc))
            if not per_address.allow(store_for_thread(), secret(), address.lower()):
                return message(
                    "Too many requests", "Please wait a while before trying this address again.", 429
                )
            # The same work and the same answer whether or not the address is subscribed: the
            # request is queued; what it leads to happens later, on the queue's own clock (work
            # started right after this answer would slow the next request, telling the same).
            signups.enqueue(store_for_thread(), address, regions, themes, rhythm=rhythm, topics=topics)
            return message(
                "Check your inbox",
                f"If {address} can receive our digest, a confirmation link is on its way to it.",
            )

        return await run_in_threadpool(answer)

    async def confirm(request: Request) -> Response:
        token, post = request.path_params["token"], request.method == "POST"
        allowed = not post or same_origin(request, settings)

        def answer() -> HTMLResponse:
            subscriber_id = subscriber_from(token, "confirm")
            if subscriber_id is None:
                return message(
                    "Link not valid",
                    invalid + " It may have been used already; you can subscribe again.",
                    400,
                )
            if not post:
                return message("Confirm", "Confirm your subscription to the digest?", button="Confirm")
            if not allowed:
                return refused()
            if not subscribers.confirm(store_for_thread(), subscriber_id):
                return message("Link not valid", invalid, 400)
            return message("Subscribed", "Thank you: your first digest comes at your next delivery time.")

        return await run_in_threadpool(answer)

    async def unsubscribe(request: Request) -> Response:
        token, post = request.path_params["token"], request.method == "POST"
        # RFC 8058: mail providers POST "List-Unsubscribe=One-Click" with no Origin or Referer;
        # the token in the link is what authorises it. Our own button comes with an Origin.
        one_click = post and (await request.form()).get("List-Unsubscribe") == "One-Click"
        allowed = not post or one_click or same_origin(request, settings)

        def answer() -> HTMLResponse:
            subscriber_id = subscriber_from(token, "unsubscribe")
            if subscriber_id is None:
                return message("Link not valid", invalid, 400)
            if not post:
                # A GET changes nothing, so link scanners cannot unsubscribe anyone.
                return message("Unsubscribe", "Stop receiving the digest?", button="Unsubscribe")
            if not allowed:
                return refused()
            subscribers.unsubscribe(store_for_thread(), subscriber_id)
            return message("Unsubscribed", "You will not receive the digest any more.")

        return await run_in_threadpool(answer)

    async def preferences(request: Request) -> Response:
        token, post = request.path_params["token"], request.method == "POST"
        allowed = not post or same_origin(request, settings)
        form = await request.form() if post and allowed else None

        def answer() -> HTMLResponse:
            subscriber_id = subscriber_from(token, "preferences")
            if subscriber_id is None:
                return message("Link not valid", invalid, 400)
            if not allowed:
                return refused()
            store = store_for_thread()
            found = store.subscriber(subscriber_id=subscriber_id)
            assert found is not None
            if form is not None:
                try:
                    regions, themes = slugs_from(form)
                    rhythm, topics = rhythm_from(form, found), topics_from(form)
                except DigestError as exc:
                    return message("Not saved", str(exc), 400)
                if rhythm == found.rhythm:
                    rhythm = None  # unchanged: still due when it was
                subscribers.set_preferences(
                    store, subscriber_id, regions, themes, rhythm=rhythm, topics=topics
                )
                found = store.subscriber(subscriber_id=subscriber_id)
                assert found is not None
            return page(
                "preferences.html", email=found.email, chosen=chosen_by(found), saved=form is not None,
                zones=zones_for(found), on_site_schedule=found.rhythm is None,
                next_delivery=next_delivery(store, found),
            )  # fmt: skip

        return await run_in_threadpool(answer)

    async def digests(request: Request) -> Response:
        return await run_in_threadpool(lambda: page("digests.html", digests=store_for_thread().digests()))

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
            content = Planner(store, settings).web_copy(found)
            rendered = compose.render(
                content, settings, found.id, compose.environment(settings.digest.templates)
            )
            unsubscribe, preferences = sample_links(settings)
            body = rendered.filled(
                "html", email="a subscriber", unsubscribe_url=unsubscribe, preferences_url=preferences
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
