"""The API's digests: the list with what became of each one's messages, one digest, and a
preview of the digest a subscriber (or the site) would get now."""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired, TypedDict

from digest.common.dates import to_iso
from digest.store import DigestRecord, Store
from digest.web.api.framework import API, Body, Call, Param, Problem, moment
from digest.web.api.pages import CURSOR, LIMIT, decode, limit_of, sliced
from digest.web.api.schema import Meta

MAX_LISTED = 1_000  # how deep pages of digests go


class DigestJson(TypedDict):
    """A digest: when it was cut, and what became of its messages (deferred: pending after
    a server asked to try later; bounced: a hard or soft bounce came back)."""

    id: str
    created: str
    until: str
    status: Literal["sending", "done"]
    sent: int
    pending: int
    deferred: int
    failed: int
    bounced: int
    complained: int
    web_copy: str


class DigestPage(TypedDict):
    items: list[DigestJson]
    next: str | None


class PreviewRequest(TypedDict):
    """Whose digest to preview (none: the site's, of the last week) and in which form."""

    email: NotRequired[Annotated[str, Meta(max_length=320, format="email")]]
    since: NotRequired[Annotated[str, Meta(format="date-time")]]
    format: NotRequired[Literal["html", "text"]]


class Preview(TypedDict):
    format: Literal["html", "text"]
    body: str


def _digest(call: Call, store: Store, record: DigestRecord) -> DigestJson:
    counts = store.delivery_counts(record.id)
    feedback = store.feedback_counts(record.id)
    deferred = sum(1 for p in store.pending_deliveries(record.id) if p.attempts > 0)
    return {
        "id": record.id,
        "created": to_iso(record.created),
        "until": to_iso(record.until),
        "status": "done" if record.status == "done" else "sending",
        "sent": counts.get("sent", 0),
        "pending": counts.get("pending", 0),
        "deferred": deferred,
        "failed": counts.get("failed", 0),
        "bounced": feedback.get("hard", 0) + feedback.get("soft", 0),
        "complained": feedback.get("complaint", 0),
        "web_copy": f"{call.state.settings.site.base_url}/digests/{record.id}",
    }


@API.operation(
    "GET",
    "/digests",
    summary="List digests",
    scope="read",
    tag="digests",
    params=[LIMIT, CURSOR],
    answer=DigestPage,
)
async def list_digests(call: Call) -> DigestPage:
    """The newest first (pages go 1,000 deep)."""
    start = decode(call.query.get("cursor"), int) or 0
    limit = limit_of(call.query)
    if start < 0 or start >= MAX_LISTED:
        raise Problem(400, f"cursor: lists of digests go {MAX_LISTED:,} deep")

    def page(store: Store) -> DigestPage:
        chosen, following = sliced(store.digests(limit=min(start + limit + 1, MAX_LISTED)), start, limit)
        return {"items": [_digest(call, store, d.digest) for d in chosen], "next": following}

    return await call.run(page)


@API.operation(
    "GET",
    "/digests/{id}",
    summary="Show a digest",
    scope="read",
    tag="digests",
    params=[Param("id", Annotated[str, Meta(max_length=100)], "The digest's id.", where="path")],
    answer=DigestJson,
)
async def get_digest(call: Call) -> DigestJson:
    digest_id = call.path["id"]

    def shown(store: Store) -> DigestJson:
        record = store.digest(digest_id)
        if record is None:
            raise Problem(404, f"no digest {digest_id!r}")
        return _digest(call, store, record)

    return await call.run(shown)


@API.operation(
    "POST",
    "/digests/preview",
    summary="Preview a digest",
    scope="read",
    tag="digests",
    body=Body(PreviewRequest),
    answer=Preview,
)
async def preview_digest(call: Call) -> Preview:
    """The digest a subscriber would get now (or the site's, of the last week, or since
    `since`); nothing is sent or recorded. 422 when there is nothing new for it."""
    from digest.mail.send import preview_body

    given: PreviewRequest = call.body
    fmt: Literal["html", "text"] = given.get("format", "html")
    since = moment(given["since"], "body.since") if "since" in given else None
    body = await call.run(
        lambda store: preview_body(
            store, call.state.settings, email=given.get("email"), since=since, part=fmt
        )
    )
    return {"format": fmt, "body": body}
