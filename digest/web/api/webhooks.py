"""The API's outgoing webhooks: list them (the config file's too, read-only, never their
secrets), add one (its secret shown once, made if not given), remove one."""

from __future__ import annotations

import base64
import secrets
from typing import Annotated, Literal, NotRequired, TypedDict

from digest.common.errors import ConfigError, StoreError
from digest.common.models import EVENT_TYPES
from digest.config import checks
from digest.config.load import webhook_key_ok
from digest.store import Store
from digest.web.api.framework import API, Body, Call, Param, Problem
from digest.web.api.schema import Meta

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
ID = Param("id", Annotated[int, Meta(minimum=1)], "The webhook's id.", where="path")


class WebhookJson(TypedDict):
    """An endpoint events are sent to (`id` null: the config file's, changed there)."""

    id: int | None
    url: str
    events: list[EventType]
    origin: Literal["config", "api"]


class WebhookList(TypedDict):
    items: list[WebhookJson]


class NewWebhook(TypedDict):
    """An endpoint to add: every event type unless `events` says; a secret made unless given."""

    url: Annotated[str, Meta(max_length=2048, format="uri")]
    events: NotRequired[list[EventType]]
    secret: NotRequired[Annotated[str, Meta(max_length=200)]]


class MadeWebhook(WebhookJson):
    """The endpoint added, with its signing secret: shown this once."""

    secret: str


@API.operation(
    "GET", "/webhooks", summary="List outgoing webhooks", scope="write", tag="webhooks", answer=WebhookList
)
async def list_webhooks(call: Call) -> WebhookList:
    """The config file's first, then those added here (no secrets)."""
    settings = call.state.settings
    added = await call.run(lambda store: store.webhooks())
    items: list[WebhookJson] = [
        {"id": None, "url": w.url, "events": list(w.events), "origin": "config"}
        for w in settings.webhooks_out
    ]
    items += [{"id": w.id, "url": w.url, "events": list(w.events), "origin": "api"} for w in added]
    return {"items": items}


@API.operation(
    "POST",
    "/webhooks",
    summary="Add an outgoing webhook",
    scope="write",
    tag="webhooks",
    body=Body(NewWebhook),
    answer=MadeWebhook,
    status=201,
    errors=[409],
)
async def add_webhook(call: Call) -> MadeWebhook:
    """Events are POSTed to the URL signed as Standard Webhooks sign them (headers
    webhook-id, webhook-timestamp, webhook-signature). Its host may not be a loopback or
    private address unless the config's `[fetch] allow_private` allows."""
    given: NewWebhook = call.body
    try:
        url = checks.http_url(given["url"], "body.url")
    except ConfigError as exc:
        raise Problem(422, str(exc)) from None
    secret = given.get("secret") or "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    if not webhook_key_ok(secret):
        raise Problem(
            422, "body.secret: a whsec_ key (base64 of 24 to 64 bytes) or text of 24 characters or more"
        )
    if any(w.url == url for w in call.state.settings.webhooks_out):
        raise Problem(409, "that URL is a webhook of the config file already")
    events = list(dict.fromkeys(given.get("events") or EVENT_TYPES))

    def add(store: Store) -> MadeWebhook:
        try:
            made = store.add_webhook(url, events, secret)
        except StoreError as exc:
            if "exists already" in str(exc):
                raise Problem(409, str(exc)) from None
            raise
        return {
            "id": made.id,
            "url": made.url,
            "events": list(made.events),
            "origin": "api",
            "secret": secret,
        }

    return await call.run(add)


@API.operation(
    "DELETE",
    "/webhooks/{id}",
    summary="Remove an outgoing webhook",
    scope="write",
    tag="webhooks",
    params=[ID],
    status=204,
)
async def remove_webhook(call: Call) -> None:
    """Messages still queued for it are given up."""
    webhook_id = call.path["id"]

    def remove(store: Store) -> None:
        if all(w.id != webhook_id for w in store.webhooks()):
            raise Problem(404, f"no webhook {webhook_id}")
        store.remove_webhook(webhook_id)

    await call.run(remove)
