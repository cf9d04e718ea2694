"""The operator's endpoints: ``/healthz`` (the service's state; its details, such as sources
and errors, only for loopback clients) and ``/metrics`` (Prometheus text; only when
``[web] metrics = true``, and only for loopback clients).
"""

from __future__ import annotations

import ipaddress

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from digest.common import metrics
from digest.web.guard import SECURITY_TEXT_HEADERS
from digest.web.state import web_state


async def healthz(request: Request) -> Response:
    """The service's state (without a health callable, as under `digest serve`: "ok")."""
    state = web_state(request)
    if state.health is None:
        return JSONResponse({"status": "ok"})
    status, body = await state.health()
    if not is_loopback(request):
        body = {"status": body["status"]}  # details (sources, errors) are for the operator
    return JSONResponse(body, status_code=status)


async def metrics_text(request: Request) -> Response:
    """The process's metrics, for a loopback client (a 404 page while they are off)."""
    if not web_state(request).settings.web.metrics:
        raise HTTPException(404, "Metrics are off ([web] metrics = true turns them on).")
    if not is_loopback(request):
        return PlainTextResponse(
            "metrics are for loopback clients\n", 403, headers=dict(SECURITY_TEXT_HEADERS)
        )
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


def is_loopback(request: Request) -> bool:
    """Whether the client is on this machine (behind a proxy on this machine, uvicorn puts
    the address from X-Forwarded-For here, so a visitor through the proxy is not)."""
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
