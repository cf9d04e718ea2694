"""The API's view of the service: its health (as ``/healthz`` details it), what happened
each day, and the OpenAPI document itself."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, TypedDict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from digest import __version__
from digest.store import Store
from digest.web.api.framework import API, Call, Param, document
from digest.web.api.schema import Meta
from digest.web.state import web_state


class Health(TypedDict):
    """The service's state, as `/healthz` gives it to a loopback client."""

    status: str
    details: dict[str, Any]


class FailingSource(TypedDict):
    name: str
    failures: int
    error: str | None


class Stats(TypedDict):
    """Per UTC day (YYYY-MM-DD): articles first seen, deliveries by status, reports by kind;
    and the sources failing now."""

    days: int
    articles_per_day: dict[str, int]
    deliveries_per_day: dict[str, dict[str, int]]
    feedback_per_day: dict[str, dict[str, int]]
    sources_failing: list[FailingSource]


@API.operation("GET", "/health", summary="The service's health", scope="read", tag="service", answer=Health)
async def health(call: Call) -> Health:
    """`ok` when the service runs (under `digest serve`: when the web is up), with what
    `/healthz` shows a loopback client: last pull, next digest, failing sources, problems."""
    state = call.state
    if state.health is None:
        return {"status": "ok", "details": {}}
    _, body = await state.health()
    return {
        "status": str(body.get("status", "ok")),
        "details": {k: v for k, v in body.items() if k != "status"},
    }


@API.operation(
    "GET",
    "/stats",
    summary="What happened each day",
    scope="read",
    tag="service",
    params=[
        Param("days", Annotated[int, Meta(minimum=1, maximum=365)], "How many days back (30 when not given).")
    ],
    answer=Stats,
)
async def stats(call: Call) -> Stats:
    days = int(call.query.get("days", 30))

    def counted(store: Store) -> Stats:
        now = store.now()
        start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
        seen = store.activity(start)
        failing = [
            {"name": s.name, "failures": s.consecutive_failures, "error": s.last_error}
            for s in store.source_summaries()
            if s.consecutive_failures and s.removed is None
        ]
        return {
            "days": days,
            "articles_per_day": seen.articles,
            "deliveries_per_day": seen.deliveries,
            "feedback_per_day": seen.feedback,
            "sources_failing": failing,  # type: ignore[typeddict-item]
        }

    return await call.run(counted)


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 document (no token needed: it holds no data; off with the API)."""
    from starlette.concurrency import run_in_threadpool

    state = web_state(request)
    if not await run_in_threadpool(lambda: state.store().has_tokens()):
        from digest.web.api.framework import problem

        return problem(404, "the API is off until a token exists (digest tokens create NAME --scope read)")
    # The origin the document was asked of (the paths carry /api/v1): right behind a proxy
    # too, and for a client that reached the API by another name than base_url's.
    server = str(request.base_url).rstrip("/")
    return JSONResponse(
        document(API, title=f"{state.settings.site.title} API", version=__version__, server=server)
    )
