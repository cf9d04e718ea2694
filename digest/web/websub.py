"""The WebSub callback, ``/websub/{source}/{token}`` (the token known to digest and the hub
only): GET answers a hub's verification of intent
(only for a subscription digest asked for), POST takes a push (only with a valid
signature; anything else is acknowledged and ignored, as WebSub asks). Database work and
parsing run in a worker thread."""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from digest.common.errors import DigestError
from digest.config import Settings
from digest.intake import websub
from digest.store import Store
from digest.web.guard import SECURITY_TEXT_HEADERS

log = logging.getLogger("digest")


def routes(settings: Settings, store_for_thread: Callable[[], Store]) -> list[Route]:
    names = {s.name for s in settings.sources if s.pulled and s.enabled}

    def text(body: str, status: int = 200) -> Response:
        return PlainTextResponse(body, status, headers=dict(SECURITY_TEXT_HEADERS))

    async def callback(request: Request) -> Response:
        name, token = request.path_params["source"], request.path_params["token"]
        if name not in names:
            return text("no such source\n", 404)
        if request.method == "GET":
            params = {k: v[:2000] for k, v in request.query_params.items()}

            def verify() -> str | None:
                store = store_for_thread()
                return websub.verify(store, name, token, params, store.now())

            challenge = await run_in_threadpool(verify)
            return text("not asked for\n", 404) if challenge is None else text(challenge)
        body = await request.body()
        signature, kind = request.headers.get("x-hub-signature"), request.headers.get("content-type")
        # Acknowledged at once; stored and grouped after the answer (a slow answer invites retries).
        return Response(
            status_code=202,
            headers=dict(SECURITY_TEXT_HEADERS),
            background=BackgroundTask(run_in_threadpool, _push, name, token, body, signature, kind),
        )

    def _push(name: str, token: str, body: bytes, signature: str | None, content_type: str | None) -> None:
        from digest.intake.pull import store_pushed

        store = store_for_thread()
        found = websub.subscription(store, name)
        if (
            found is None
            or found.state != "active"
            or not websub.known(found, token)
            or not websub.signed(found.secret, body, signature)
        ):
            log.warning(
                "websub %s: a push without a valid signature; ignored", name, extra={"event": "websub"}
            )
            return
        try:
            report = store_pushed(store, settings, settings.source(name), body, found.topic, content_type)
        except DigestError as exc:
            log.warning("websub %s: a push that could not be read: %s", name, exc, extra={"event": "websub"})
            return
        log.info("websub %s: pushed: %s", name, report.summary(), extra={"event": "websub"})

    return [Route("/websub/{source}/{token}", callback, methods=["GET", "POST"])]
