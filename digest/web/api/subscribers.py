"""The API's subscribers: list, add, show, change (choices, rhythm, status), delete (all
their data), import CSV, and each one's deliveries. The CLI's rules hold: an import never
subscribes again someone who left or bounced; someone who unsubscribed themselves is not
made active by anyone but themselves; a bounce or a complaint is undone only on purpose."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal, NotRequired, TypedDict

from digest.common.dates import optional_iso, to_iso
from digest.common.errors import SubscriberError
from digest.common.models import CADENCES
from digest.publish.objects import SubscriberJson, subscriber_json
from digest.store import DeliveryRecord, Store, Subscriber
from digest.subscribers import lifecycle
from digest.web.api.framework import API, Body, Call, Param, Problem
from digest.web.api.pages import CURSOR, LIMIT, decode, encode, limit_of
from digest.web.api.schema import Meta
from digest.web.api.sources import Region

ID = Param("id", Annotated[int, Meta(minimum=1)], "The subscriber's id.", where="path")
Status = Literal["pending", "active", "unsubscribed", "bounced"]
Cadence = Literal[CADENCES]  # type: ignore[valid-type]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Topic = Annotated[str, Meta(max_length=200)]
Slug = Annotated[str, Meta(max_length=64)]


class SubscriberPage(TypedDict):
    """A page of subscribers, in order of sign-up."""

    items: list[SubscriberJson]
    next: str | None


class Choices(TypedDict):
    """A reader's choices: regions, themes, rhythm, search topics (what is not given stays)."""

    regions: NotRequired[list[Region]]
    themes: NotRequired[list[Slug]]
    cadence: NotRequired[Cadence]
    timezone: NotRequired[Annotated[str, Meta(max_length=64)]]
    hour: NotRequired[Annotated[int, Meta(minimum=0, maximum=23)]]
    weekday: NotRequired[Weekday]
    topics: NotRequired[Annotated[list[Topic], Meta(description="Up to 5 searches.")]]


class NewSubscriber(Choices):
    """A subscriber to add: pending (a confirmation email goes out) unless `confirmed`."""

    email: Annotated[str, Meta(max_length=320, format="email")]
    confirmed: NotRequired[bool]


class SubscriberChange(Choices):
    """What to change; `status`: `active` confirms a pending subscriber or reactivates one
    who bounced or complained; `unsubscribed` unsubscribes."""

    status: NotRequired[Literal["active", "unsubscribed"]]


class ImportedSubscribers(TypedDict):
    """What a CSV import did: rows added and updated, and a line for each row refused."""

    added: int
    updated: int
    errors: list[str]
    warnings: list[str]


class DeliveryJson(TypedDict):
    """One digest for one subscriber, and what became of it."""

    digest: str
    status: Literal["pending", "sent", "failed"]
    deferred: bool
    attempts: int
    updated: str
    since: str
    reply: str | None
    feedback: Literal["soft", "hard", "complaint"] | None
    feedback_detail: str | None
    feedback_at: str | None


class DeliveryPage(TypedDict):
    items: list[DeliveryJson]
    next: str | None


def _slugs(call: Call, given: Choices) -> tuple[list[str], list[str]]:
    from digest.grouping.regions import regions
    from digest.grouping.themes import taxonomy_for

    chosen_regions = lifecycle.check_slugs(given.get("regions", []), list(regions()), "region")
    known = list(taxonomy_for(call.state.settings).titles())
    return chosen_regions, lifecycle.check_slugs(given.get("themes", []), known, "theme")


def _rhythm(given: Choices) -> dict[str, str | int]:
    return {k: given[k] for k in ("cadence", "timezone", "hour", "weekday") if k in given}


def _found(store: Store, subscriber_id: int) -> Subscriber:
    found = store.subscriber(subscriber_id=subscriber_id)
    if found is None:
        raise Problem(404, f"no subscriber {subscriber_id}")
    return found


@API.operation(
    "GET",
    "/subscribers",
    summary="List subscribers",
    scope="read",
    tag="subscribers",
    params=[Param("status", Status, "Only those with this status."), LIMIT, CURSOR],
    answer=SubscriberPage,
)
async def list_subscribers(call: Call) -> SubscriberPage:
    status, limit = call.query.get("status"), limit_of(call.query)
    after = decode(call.query.get("cursor"), int) or 0

    def page(store: Store) -> SubscriberPage:
        found = store.subscribers(status, after=after, limit=limit + 1)
        chosen = found[:limit]
        more = len(found) > limit
        return {
            "items": [subscriber_json(s) for s in chosen],
            "next": encode(chosen[-1].id) if more else None,
        }

    return await call.run(page)


@API.operation(
    "POST",
    "/subscribers",
    summary="Add a subscriber",
    scope="write",
    tag="subscribers",
    body=Body(NewSubscriber),
    answer=SubscriberJson,
    status=201,
)
async def add_subscriber(call: Call) -> SubscriberJson:
    """As `digest subscribers add`: pending with a confirmation email unless `confirmed`;
    an address that bounced or complained is refused (suppression holds)."""
    given: NewSubscriber = call.body
    settings = call.state.settings
    regions, themes = _slugs(call, given)

    def add(store: Store) -> SubscriberJson:
        from digest.mail.send import send_confirmation

        added = lifecycle.add(
            store,
            given["email"],
            regions=regions,
            themes=themes,
            confirmed=given.get("confirmed", False),
            rhythm=_rhythm(given),
            topics=given.get("topics"),
            defaults=lifecycle.defaults_for(settings),
        )
        if added.status == "pending":
            asyncio.run(send_confirmation(store, settings, added))  # (this worker thread runs no loop)
        return subscriber_json(added)

    return await call.run(add)


@API.operation(
    "GET",
    "/subscribers/{id}",
    summary="Show a subscriber",
    scope="read",
    tag="subscribers",
    params=[ID],
    answer=SubscriberJson,
)
async def get_subscriber(call: Call) -> SubscriberJson:
    subscriber_id = call.path["id"]
    return subscriber_json(await call.run(lambda store: _found(store, subscriber_id)))


@API.operation(
    "PATCH",
    "/subscribers/{id}",
    summary="Change a subscriber",
    scope="write",
    tag="subscribers",
    params=[ID],
    body=Body(SubscriberChange),
    answer=SubscriberJson,
    errors=[409],
)
async def change_subscriber(call: Call) -> SubscriberJson:
    """Their choices, and their status: `active` confirms a pending subscriber or
    reactivates one who bounced or complained (the operator's decision, logged); someone
    who unsubscribed themselves can only come back themselves (409)."""
    subscriber_id, given = call.path["id"], call.body
    settings = call.state.settings
    choices = {k: v for k, v in given.items() if k != "status"}
    regions, themes = _slugs(call, given) if choices else ([], [])

    def change(store: Store) -> SubscriberJson:
        found = _found(store, subscriber_id)
        if choices:
            rhythm = lifecycle.defaults_for(settings).rhythm(_rhythm(given), found)
            store.set_preferences(
                found.id,
                regions if "regions" in given else found.regions,
                themes if "themes" in given else found.themes,
                rhythm=rhythm,
                topics=lifecycle.chosen_topics(given["topics"]) if "topics" in given else None,
            )
        status = given.get("status")
        if status == "unsubscribed":
            lifecycle.unsubscribe(store, found.id)
        elif status == "active" and found.status != "active":
            if found.status == "pending":
                lifecycle.confirm(store, found.id)
            elif found.status == "bounced" or lifecycle.complained(found):
                lifecycle.reactivate(store, found.email)
            else:
                raise Problem(409, f"{found.email} unsubscribed themselves; only they can subscribe again")
        return subscriber_json(_found(store, subscriber_id))

    return await call.run(change)


@API.operation(
    "DELETE",
    "/subscribers/{id}",
    summary="Delete a subscriber and all their data",
    scope="write",
    tag="subscribers",
    params=[ID],
    status=204,
)
async def delete_subscriber(call: Call) -> None:
    """The subscriber and their delivery history (a GDPR erasure request)."""
    subscriber_id = call.path["id"]

    def delete(store: Store) -> None:
        store.delete_subscriber(_found(store, subscriber_id).email)

    await call.run(delete)


@API.operation(
    "POST",
    "/subscribers/import",
    summary="Import subscribers from CSV",
    scope="write",
    tag="subscribers",
    body=Body(
        None,
        "text/csv",
        "A header row (email, status, regions, themes, cadence, timezone, hour, weekday, topics),"
        " then a row each.",
    ),
    answer=ImportedSubscribers,
)
async def import_subscribers(call: Call) -> ImportedSubscribers:
    """As `digest subscribers import`: good rows kept, bad ones reported by line; never
    re-subscribes someone who unsubscribed or bounced."""
    from digest.grouping.regions import regions
    from digest.grouping.themes import taxonomy_for

    try:
        text = bytes(call.body).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Problem(400, "the CSV is not UTF-8") from None
    settings = call.state.settings

    def imported(store: Store) -> ImportedSubscribers:
        report = lifecycle.import_csv(
            text,
            store,
            list(regions()),
            list(taxonomy_for(settings).titles()),
            "CSV",
            lifecycle.defaults_for(settings),
        )
        return {
            "added": report.added,
            "updated": report.updated,
            "errors": report.errors,
            "warnings": report.warnings,
        }

    try:
        return await call.run(imported)
    except SubscriberError as exc:
        raise Problem(422, str(exc)) from None


def _delivery(record: DeliveryRecord) -> DeliveryJson:
    return {
        "digest": record.digest_id,
        "status": record.status,  # type: ignore[typeddict-item]  # one of the three: a CHECK
        "deferred": record.status == "pending" and record.attempts > 0,
        "attempts": record.attempts,
        "updated": to_iso(record.updated),
        "since": to_iso(record.since),
        "reply": record.reply,
        "feedback": record.feedback,  # type: ignore[typeddict-item]
        "feedback_detail": record.feedback_detail,
        "feedback_at": optional_iso(record.feedback_at),
    }


@API.operation(
    "GET",
    "/subscribers/{id}/deliveries",
    summary="A subscriber's deliveries",
    scope="read",
    tag="subscribers",
    params=[ID, LIMIT, CURSOR],
    answer=DeliveryPage,
)
async def list_deliveries(call: Call) -> DeliveryPage:
    """The latest first, with the reports that came back about them."""
    subscriber_id, limit = call.path["id"], limit_of(call.query)
    before = decode(call.query.get("cursor"), str)

    def page(store: Store) -> DeliveryPage:
        _found(store, subscriber_id)
        found = store.deliveries_of(subscriber_id, limit=limit + 1, before=before)
        chosen = found[:limit]
        more = len(found) > limit
        return {
            "items": [_delivery(d) for d in chosen],
            "next": encode(chosen[-1].digest_id) if more else None,
        }

    return await call.run(page)
