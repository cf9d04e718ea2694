"""The answers for errors the endpoints do not answer themselves: a 404 (no route, or an
HTTPException(404) with what was not found) is a page of the site, saying what was asked
for and where to go instead; trouble with the database is a plain 503 (try again later),
any other server error a plain 500.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from digest.web.api.framework import PREFIX as API_PREFIX
from digest.web.api.framework import problem
from digest.web.cache import HTML
from digest.web.guard import SECURITY_TEXT_HEADERS
from digest.web.state import web_state

log = logging.getLogger("digest")


async def not_found(request: Request, exc: Exception) -> Response:
    """The site's 404 page, with the exception's detail when it says more than "Not Found"."""
    if request.url.path.startswith(API_PREFIX + "/"):
        return problem(404, f"nothing lives at {request.url.path} (see {API_PREFIX}/openapi.json)")
    state = web_state(request)
    detail = exc.detail if isinstance(exc, HTTPException) and exc.detail != "Not Found" else None
    message = detail or f"Nothing lives at {request.url.path}."
    count = await run_in_threadpool(lambda: state.store().count_articles())
    body = state.site.not_found(count, str(message)).encode()
    return Response(body, status_code=404, media_type=HTML)


async def store_trouble(request: Request, exc: Exception) -> Response:
    """A 503 for trouble with the database (locked, full, unreachable): the visitor may try
    again; what it was goes to the log, never to the visitor (it names the database)."""
    log.warning("web: %s %s: %s", request.method, request.url.path, exc)
    return PlainTextResponse(
        "The database is not available just now; try again in a minute.\n",
        503,
        headers={"retry-after": "60"},  # (the middlewares add the security headers)
    )


async def server_error(request: Request, exc: Exception) -> Response:
    """A plain 500."""
    # Sent from outside the middlewares (Starlette's outermost layer): it adds their headers.
    return PlainTextResponse("Internal server error", 500, headers=dict(SECURITY_TEXT_HEADERS))
