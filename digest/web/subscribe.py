"""The subscriber pages: subscribe (double opt-in), confirm, unsubscribe (RFC 8058 one-click
POST) and preferences.

The subscribe form never says whether an address is already subscribed: every valid
request does the same work (queue it) and gets the same answer; the confirmation email goes
out after the answer (:mod:`digest.mail.confirmations`). Requests are rate-limited per client
and per address (:mod:`.limits`). Tokens are signed and bound to their subscriber
(:mod:`digest.subscribers.tokens`); a bad, expired or used one is answered with a plain
page that tells nothing about anyone. Nothing changes on a GET: confirming, like
unsubscribing, takes a button (a POST), so link scanners change nothing. A POST must come
from one of our pages (:func:`same_origin`, checked here, where the forms are), except the
one-click unsubscribe that mail providers send without an Origin or a Referer.

Every endpoint does its database work and its rendering in a worker thread (with that
thread's store): the event loop, which `digest run` shares with the scheduler and the mail
sender, only waits.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from digest.common.addresses import normalise_email
from digest.common.errors import DigestError
from digest.config import Settings
from digest.store import Subscriber, SubscribersStore
from digest.subscribers import lifecycle, signups
from digest.subscribers.tokens import BadToken, make, read
from digest.web import choices
from digest.web.limits import client_of
from digest.web.state import WebState, web_state

log = logging.getLogger(__name__)
FORM_SECONDS = 3600  # a subscribe form is good for an hour
INVALID = "This link is not valid (it may have expired, or been cut short by your email program)."


async def subscribe(request: Request) -> Response:
    """GET: the form. POST: a sign-up, queued; the same answer for every valid request."""
    state = web_state(request)
    if request.method == "GET":
        return await run_in_threadpool(subscribe_form, state)
    # Cross-site requests: refused by Origin (or Referer), and by the form's signed token.
    if not same_origin(request, state.settings):
        return await run_in_threadpool(refused, state)
    form = await request.form()
    return await run_in_threadpool(_sign_up, state, form, client_of(request))


async def confirm(request: Request) -> Response:
    """GET: a button. POST: the subscription confirmed, once."""
    state = web_state(request)
    token, post = request.path_params["token"], request.method == "POST"
    allowed = not post or same_origin(request, state.settings)
    return private(await run_in_threadpool(_confirm, state, token, post, allowed))


async def unsubscribe(request: Request) -> Response:
    """GET: a button. POST: unsubscribed (our button, or a mail provider's one-click)."""
    state = web_state(request)
    token, post = request.path_params["token"], request.method == "POST"
    # RFC 8058: mail providers POST "List-Unsubscribe=One-Click" with no Origin or Referer;
    # the token in the link is what authorises it. Our own button comes with an Origin.
    one_click = post and (await request.form()).get("List-Unsubscribe") == "One-Click"
    allowed = not post or one_click or same_origin(request, state.settings)
    return private(await run_in_threadpool(_unsubscribe, state, token, post, allowed))


async def preferences(request: Request) -> Response:
    """GET: the subscriber's choices. POST: new ones, saved."""
    state = web_state(request)
    token, post = request.path_params["token"], request.method == "POST"
    allowed = not post or same_origin(request, state.settings)
    form = await request.form() if post and allowed else None
    return private(await run_in_threadpool(_preferences, state, token, allowed, form))


def private(response: Response) -> Response:
    """A page of one subscriber's (their address, their choices, their preferences link):
    kept by no cache, shared or the browser's."""
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the answers (in a worker thread) ---------------------------------------------------------


def _sign_up(state: WebState, form: FormData, client: str) -> HTMLResponse:
    store, limits = state.store(), state.limits
    try:
        read(state.secret(), str(form.get("form_token", "")), "form")
    except BadToken:
        return message(
            state, "Form expired", "Please reload the subscribe page and send the form again.", 403
        )
    email = str(form.get("email", ""))[:320]
    if not limits.signups_per_client.allow(store, state.secret(), client):
        return message(state, "Too many requests", "Please wait a few minutes and try again.", 429)
    try:
        address = normalise_email(email)
        regions, themes = choices.slugs_from(state.site, form)
        rhythm = choices.rhythm_from(state.settings, state.zones, form, None)
        topics = choices.topics_from(form) or ()
    except DigestError as exc:
        return subscribe_form(state, email, choices.chosen_on(form), str(exc))
    if not limits.signups_per_address.allow(store, state.secret(), address.lower()):
        return message(
            state, "Too many requests", "Please wait a while before trying this address again.", 429
        )
    # The same work and the same answer whether or not the address is subscribed: the
    # request is queued; what it leads to happens later, on the queue's own clock (work
    # started right after this answer would slow the next request, telling the same).
    signups.enqueue(store, address, regions, themes, rhythm=rhythm, topics=topics)
    # No address in the log: it would tell a reader of the log who signs up, and the answer
    # is the same for everyone.
    log.info("sign-up received: a confirmation is queued", extra={"event": "signup"})
    return message(
        state,
        "Check your inbox",
        f"If {address} can receive our digest, a confirmation link is on its way to it.",
    )


def _confirm(state: WebState, token: str, post: bool, allowed: bool) -> HTMLResponse:
    subscriber_id = subscriber_from(state, token, "confirm")
    if subscriber_id is None:
        return message(
            state, "Link not valid", INVALID + " It may have been used already; you can subscribe again.", 400
        )
    if not post:
        return message(state, "Confirm", "Confirm your subscription to the digest?", button="Confirm")
    if not allowed:
        return refused(state)
    store = state.store()
    if not lifecycle.confirm(store, subscriber_id):
        return message(state, "Link not valid", INVALID, 400)
    found = store.subscriber(subscriber_id=subscriber_id)
    assert found is not None
    log.info("subscriber %d confirmed", found.id, extra={"event": "signup"})
    which = f"{found.rhythm.cadence} digest" if found.rhythm else "digest"
    when = choices.next_delivery(state.settings, store, found)
    text = (
        f"Thank you: your first {which} comes on {when}." if when else f"Thank you: your {which} is coming."
    )
    token = lifecycle.token(state.secret(), "preferences", found)
    link = f"{state.settings.site.base_url}/preferences/{token}"
    return message(state, "Subscribed", text, link=(link, "Change what you receive, and when"))


def _unsubscribe(state: WebState, token: str, post: bool, allowed: bool) -> HTMLResponse:
    subscriber_id = subscriber_from(state, token, "unsubscribe")
    if subscriber_id is None:
        return message(state, "Link not valid", INVALID, 400)
    if not post:
        # A GET changes nothing, so link scanners cannot unsubscribe anyone.
        return message(state, "Unsubscribe", "Stop receiving the digest?", button="Unsubscribe")
    if not allowed:
        return refused(state)
    lifecycle.unsubscribe(state.store(), subscriber_id)
    log.info("subscriber %d unsubscribed", subscriber_id, extra={"event": "unsubscribe"})
    return message(state, "Unsubscribed", "You will not receive the digest any more.")


def _preferences(state: WebState, token: str, allowed: bool, form: FormData | None) -> HTMLResponse:
    subscriber_id = subscriber_from(state, token, "preferences")
    if subscriber_id is None:
        return message(state, "Link not valid", INVALID, 400)
    if not allowed:
        return refused(state)
    store = state.store()
    found = store.subscriber(subscriber_id=subscriber_id)
    assert found is not None
    if form is not None:
        saved = _save(state, store, found, form)
        if isinstance(saved, HTMLResponse):
            return saved
        found = saved
    return page(
        state, "preferences.html", email=found.email, chosen=choices.chosen_by(state.settings, found),
        saved=form is not None, zones=choices.zones_for(state.zones, found),
        on_site_schedule=found.rhythm is None,
        next_delivery=choices.next_delivery(state.settings, store, found),
    )  # fmt: skip


def _save(
    state: WebState, store: SubscribersStore, found: Subscriber, form: FormData
) -> Subscriber | HTMLResponse:
    """The subscriber with the form's choices saved, or the page that says why not."""
    try:
        regions, themes = choices.slugs_from(state.site, form)
        rhythm = choices.rhythm_from(state.settings, state.zones, form, found)
        topics = choices.topics_from(form)
    except DigestError as exc:
        return message(state, "Not saved", str(exc), 400)
    if rhythm == found.rhythm:
        rhythm = None  # unchanged: still due when it was
    store.set_preferences(found.id, regions, themes, rhythm=rhythm, topics=topics)
    saved = store.subscriber(subscriber_id=found.id)
    assert saved is not None
    return saved


# --- pages and checks -------------------------------------------------------------------------


def page(state: WebState, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """A page of ``templates/web``."""
    count = state.store().count_articles()
    return HTMLResponse(state.site.render(template, count, **values), status_code=status)


def message(
    state: WebState,
    heading: str,
    text: str,
    status: int = 200,
    button: str | None = None,
    link: tuple[str, str] | None = None,
) -> HTMLResponse:
    """A page that says one thing (with a button that POSTs back to the same address, or a
    link: its address and words)."""
    return page(state, "message.html", status, heading=heading, text=text, button=button, link=link)


def refused(state: WebState) -> HTMLResponse:
    """The answer to a POST from elsewhere than our pages."""
    return message(state, "Refused", "This form can only be sent from this site.", 403)


def subscribe_form(
    state: WebState, email: str = "", chosen: dict[str, Any] | None = None, error: str | None = None
) -> HTMLResponse:
    """The subscribe form (again, with what was chosen and what was wrong, after a mistake),
    with a signed token good for ``FORM_SECONDS``."""
    token = make(state.secret(), "form", 0, ttl=FORM_SECONDS)
    status = 400 if error else 200
    return page(
        state, "subscribe.html", status, email=email, chosen=chosen or choices.blank(state.settings),
        error=error, form_token=token, zones=state.zones, on_site_schedule=False,
    )  # fmt: skip


def subscriber_from(state: WebState, token: str, purpose: str) -> int | None:
    """The subscriber a valid token for ``purpose`` names (None for any other token)."""
    store = state.store()
    try:
        return read(state.secret(), token, purpose, lifecycle.bindings(store, purpose))
    except BadToken:
        return None


def same_origin(request: Request, settings: Settings) -> bool:
    """Whether a POST comes from one of our own pages: its Origin, or when a browser sends
    none, its Referer, names this host or ``[site] base_url``'s. ``Origin: null`` does not."""
    ours = {_origin(str(request.url)), _origin(settings.site.base_url)}
    origin = request.headers.get("origin")
    if origin is not None:
        return _origin(origin) in ours
    referer = request.headers.get("referer")
    return referer is not None and _origin(referer) in ours


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
