"""The providers' webhooks: ``POST /webhooks/ses`` (Amazon SES through SNS),
``/webhooks/postmark`` and ``/webhooks/mailgun``, bounces and complaints from API-backed
relays. Each is off (404) until its secret is configured; a request that fails its
provider's check (:mod:`digest.feedback.webhooks`: signatures, credentials, tokens used
once) gets 403 and changes nothing; the answer to one that passes names what each report
led to. SNS's signing certificates are fetched with the app's fetch, once each
(``WebState.certificates``); the database work runs in a worker thread.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from digest.feedback import apply as feedback
from digest.feedback.webhooks import (
    ProviderReport,
    Refused,
    first_use,
    mailgun_reports,
    postmark_reports,
    ses_reports,
    sns_url_ok,
    verify_mailgun,
    verify_postmark,
    verify_sns,
)
from digest.web.state import WebState, web_state

log = logging.getLogger("digest")


async def ses(request: Request) -> Response:
    """An SNS message: a subscription to confirm, or SES's notification of bounces and
    complaints."""
    state = web_state(request)
    topic = state.settings.webhooks.ses_topic
    if not topic:
        return _off()
    try:
        message = await _body_object(request, "not an SNS message")
        await run_in_threadpool(verify_sns, message, topic, state.certificates)
    except Refused as exc:
        return _refused("ses", exc)
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        return await _confirm_subscription(state, message)
    if kind != "Notification":
        return PlainTextResponse("ok\n")
    try:
        notification = json.loads(message["Message"])
    except ValueError:
        return PlainTextResponse("not a notification we read\n", 400)
    return await _applied(state, ses_reports(notification) if isinstance(notification, dict) else [], "ses")


async def postmark(request: Request) -> Response:
    """Postmark's bounce or spam complaint, with the webhook's basic authentication."""
    state = web_state(request)
    hooks = state.settings.webhooks
    if not hooks.postmark_password:
        return _off()
    try:
        verify_postmark(request.headers.get("authorization"), hooks)
        payload = await _body_json(request)
    except Refused as exc:
        return _refused("postmark", exc)
    return await _applied(state, postmark_reports(payload) if isinstance(payload, dict) else [], "postmark")


async def mailgun(request: Request) -> Response:
    """Mailgun's event, signed, its token never seen before."""
    state = web_state(request)
    key = state.settings.webhooks.mailgun_key
    if not key:
        return _off()
    try:
        payload = await _body_object(request, "no signature")
        if not isinstance(payload.get("signature"), dict):
            raise Refused("no signature")
        token = verify_mailgun(payload["signature"], key)
        if not await run_in_threadpool(lambda: first_use(state.store(), token)):
            raise Refused("token used before")
    except Refused as exc:
        return _refused("mailgun", exc)
    event = payload.get("event-data")
    return await _applied(state, mailgun_reports(event) if isinstance(event, dict) else [], "mailgun")


async def _confirm_subscription(state: WebState, message: dict[str, Any]) -> Response:
    """Confirm a (verified) SNS subscription by fetching its SubscribeURL."""
    url = str(message.get("SubscribeURL", ""))
    if not sns_url_ok(url, pem=False):
        return _refused("ses", Refused("SubscribeURL is not an SNS address"))
    try:
        await run_in_threadpool(state.fetch, url)
    except Exception as exc:  # SNS sends the confirmation again; the operator sees why
        log.warning("ses: confirming the subscription failed: %s", type(exc).__name__)
        return PlainTextResponse("could not confirm the subscription\n", 502)
    log.info("ses: subscribed to %s", state.settings.webhooks.ses_topic, extra={"event": "webhook"})
    return PlainTextResponse("subscribed\n")


async def _applied(state: WebState, reports: list[ProviderReport], via: str) -> Response:
    """Apply the reports (in a thread: the database); the answer names each outcome."""

    def apply() -> list[str]:
        store, settings = state.store(), state.settings
        return [
            feedback.from_provider(store, settings, r.email, r.message_id, r.kind, r.detail, via)
            for r in reports
        ]

    outcomes = await run_in_threadpool(apply)
    return PlainTextResponse(" ".join(outcomes or ["ignored"]) + "\n")


async def _body_json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise Refused("not JSON") from exc


async def _body_object(request: Request, otherwise: str) -> dict[str, Any]:
    """The body's JSON object; Refused(``otherwise``) for any other JSON."""
    found = await _body_json(request)
    if not isinstance(found, dict):
        raise Refused(otherwise)
    return found


def _off() -> Response:
    return PlainTextResponse("this webhook is not configured\n", 404)


def _refused(via: str, exc: Refused) -> Response:
    log.warning("%s webhook refused: %s", via, exc, extra={"event": "webhook"})
    return PlainTextResponse("forbidden\n", 403)
