"""The JSON API at ``/api/v1/``: sources, articles and stories, subscribers, digests, the
service; bearer tokens; problem details; the OpenAPI 3.1 document made from the code
(:mod:`.framework` for the machinery, one module an area for the endpoints)."""

from __future__ import annotations

from starlette.routing import Route

from digest.web.api import articles, digests, service, sources, subscribers, webhooks  # noqa: F401  (they register)
from digest.web.api.framework import API, PREFIX


def routes() -> list[Route]:
    """The API's routes, the document's first; literal paths before those with parameters."""
    found = API.routes()
    found.sort(key=lambda route: route.path.count("{"))
    return [Route(f"{PREFIX}/openapi.json", service.openapi), *found]
