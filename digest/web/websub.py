"""The WebSub callback, ``/websub/{source}/{token}`` (the token known to digest and the hub
only), for the sources a hub may push to (pulled and enabled; 404 for any other name).

GET answers a hub's verification of intent (only for a subscription digest asked for; 404
otherwise). POST takes a push: acknowledged at once (202), then stored and grouped in a
worker thread, only with a valid signature; anything else is ignored, as WebSub asks. A
push may carry a whole feed: its body cap is ``PUSH_BODY`` (:mod:`.guard`).
"""

from __future__ import annotations

import logging

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from digest.common.errors import DigestError
from digest.intake import websub
from digest.web.guard import SECURITY_TEXT_HEADERS
from digest.web.state import WebState, web_state

log = logging.getLogger("digest")


async def callback(request: Request) -> Response:
    """A hub's verification (GET) or push (POST)."""
    state = web_state(request)
    name, token = request.path_params["source"], request.path_params["token"]
    if name not in state.pushed:
        return _text("no such source\n", 404)
    if request.method == "GET":
        params = {k: v[:2000] for k, v in request.query_params.items()}
        challenge = await run_in_threadpool(_verify, state, name, token, params)
        return _text("not asked for\n", 404) if challenge is None else _text(challenge)
    body = await request.body()
    signature, kind = request.headers.get("x-hub-signature"), request.headers.get("content-type")
    # Acknowledged at once; stored and grouped after the answer (a slow answer invites retries).
    return Response(
        status_code=202,
        headers=dict(SECURITY_TEXT_HEADERS),
        background=BackgroundTask(run_in_threadpool, _push, state, name, token, body, signature, kind),
    )


def _text(body: str, status: int = 200) -> Response:
    return PlainTextResponse(body, status, headers=dict(SECURITY_TEXT_HEADERS))


def _verify(state: WebState, name: str, token: str, params: dict[str, str]) -> str | None:
    store = state.store()
    return websub.verify(store, name, token, params, store.now())


def _push(
    state: WebState, name: str, token: str, body: bytes, signature: str | None, content_type: str | None
) -> None:
    from digest.intake.pull import store_pushed

    store, settings = state.store(), state.settings
    found = websub.subscription(store, name)
    if (
        found is None
        or found.state != "active"
        or not websub.known(found, token)
        or not websub.signed(found.secret, body, signature)
    ):
        log.warning("websub %s: a push without a valid signature; ignored", name, extra={"event": "websub"})
        return
    try:
        report = store_pushed(store, settings, settings.source(name), body, found.topic, content_type)
    except DigestError as exc:
        log.warning("websub %s: a push that could not be read: %s", name, exc, extra={"event": "websub"})
        return
    log.info("websub %s: pushed: %s", name, report.summary(), extra={"event": "websub"})
