"""The JSON API's machinery: operations declared once (method, path, scope, parameters,
body and answers as Python types) from which come the routes, the input checks, the bearer
token check and the OpenAPI 3.1 document; errors as RFC 9457 problem details.

An endpoint is a module-level ``async def name(call: Call) -> answer`` registered with
:data:`API` (``@API.operation(...)``); it gets its parameters checked (``call.query``,
``call.path``, ``call.body``) and does its store work in a thread (``await call.run(fn)``).
It answers with a value of its declared type, or raises :class:`Problem`; a DigestError is
answered with its one-line message (the CLI's), as 422 unless it says otherwise.

Tokens: ``Authorization: Bearer <token>`` on every call. No token exists yet: the API is off
(404 for every path under it). No token, an unknown or a revoked one: 401; a read token on
an operation that writes: 403. Failed attempts are counted per network (an IPv4 address, an
IPv6 /64), in the database as every rate limit is: past ``[web] api_failures`` in 10 minutes,
every call from that network without a right token is 429 until the window has passed (a
right token always passes: its holder is never locked out by others on the network)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypedDict, TypeVar, get_args, get_origin

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from digest.common.dates import given_moment
from digest.common.errors import DigestError, StoreError
from digest.store import ApiToken, Store
from digest.web.api.schema import JSON, Invalid, Meta, check, schema_of
from digest.web.limits import RateLimit, client_of
from digest.web.state import WebState, web_state

log = logging.getLogger("digest")

PREFIX = "/api/v1"
PROBLEM = "application/problem+json"
TOKEN_PREFIX = "dg_"  # noqa: S105 (what every token starts with, not a secret)
FAILURES = "api-token-failures"  # the rate limit's name: [web] api_failures in 10 minutes
FAILURES_WINDOW = 600.0
Scope = Literal["read", "write"]
T = TypeVar("T")


class Problem(Exception):
    """An answer other than success: ``status`` and one line saying why."""

    def __init__(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


_TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 409: "Conflict",
    413: "Too large", 415: "Unsupported media type", 422: "Unprocessable", 429: "Too many requests",
    503: "Unavailable",
}  # fmt: skip


def problem(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    """An RFC 9457 problem details answer."""
    body = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status, "detail": detail}
    return Response(json.dumps(body), status, headers=dict(headers or {}), media_type=PROBLEM)


# --- tokens -----------------------------------------------------------------------------------


def new_token() -> str:
    """A new token's secret: 256 random bits, prefixed so it is recognised when leaked."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hashed(token: str) -> str:
    """What the store keeps of a token: its SHA-256 (the secret is random: no salt, no
    stretching needed, and a lookup by hash stays one index probe)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authorised(store: Store, token: str | None) -> ApiToken | None:
    """The live token ``token`` is, or None. The hash found is compared again in constant
    time: what decides is never a comparison that stops at the first differing byte."""
    if token is None or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    wanted = hashed(token)
    found = store.token_by_hash(wanted)
    if found is None or not hmac.compare_digest(found.hash, wanted) or found.revoked is not None:
        return None
    return found


# --- operations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A query or path parameter: its name, type (checked), description."""

    name: str
    kind: Any = str
    description: str = ""
    required: bool = False
    where: Literal["query", "path"] = "query"


@dataclass(frozen=True)
class Body:
    """A request body: JSON of ``kind``, or raw bytes of ``media`` (``kind`` None)."""

    kind: Any = None
    media: str = "application/json"
    description: str = ""


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # under PREFIX, with {name} path parameters
    endpoint: Callable[[Call], Awaitable[Any]]
    summary: str
    scope: Scope
    tag: str
    params: tuple[Param, ...] = ()
    body: Body | None = None
    answer: Any = None  # the success answer's type (None: no content)
    status: int = 200
    media: str = "application/json"  # the success answer's type when not JSON
    errors: tuple[int, ...] = ()  # statuses beyond those every operation may answer

    @property
    def id(self) -> str:
        return self.endpoint.__name__


@dataclass
class Call:
    """One API call: the request, the token that made it, its parameters checked."""

    request: Request
    state: WebState
    token: ApiToken
    query: dict[str, Any] = field(default_factory=dict)
    path: dict[str, Any] = field(default_factory=dict)
    body: Any = None

    async def run(self, work: Callable[[Store], T]) -> T:
        """``work(store)`` in a worker thread, on that thread's store."""
        return await run_in_threadpool(lambda: work(self.state.store()))


class Api:
    """The operations, in the order the document lists them."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def operation(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        scope: Scope,
        tag: str,
        params: Sequence[Param] = (),
        body: Body | None = None,
        answer: Any = None,
        status: int = 200,
        media: str = "application/json",
        errors: Sequence[int] = (),
    ) -> Callable[[Callable[[Call], Awaitable[Any]]], Callable[[Call], Awaitable[Any]]]:
        def register(endpoint: Callable[[Call], Awaitable[Any]]) -> Callable[[Call], Awaitable[Any]]:
            self.operations.append(
                Operation(
                    method,
                    path,
                    endpoint,
                    summary,
                    scope,
                    tag,
                    tuple(params),
                    body,
                    answer,
                    status,
                    media,
                    tuple(errors),
                )
            )
            return endpoint

        return register

    def routes(self) -> list[Route]:
        """One route a path, dispatching on the method."""
        by_path: dict[str, dict[str, Operation]] = {}
        for op in self.operations:
            by_path.setdefault(op.path, {})[op.method] = op
        # Every method reaches the dispatcher: one it lacks is a problem answer (405), too.
        every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        return [
            Route(PREFIX + path, _dispatcher(methods), methods=every) for path, methods in by_path.items()
        ]


def _dispatcher(methods: dict[str, Operation]) -> Callable[[Request], Awaitable[Response]]:
    async def dispatch(request: Request) -> Response:
        op = methods.get("GET" if request.method == "HEAD" else request.method)
        if op is None:
            return problem(405, f"{request.method} is not allowed here", {"allow": ", ".join(methods)})
        return await _answer(op, request)

    return dispatch


async def _answer(op: Operation, request: Request) -> Response:
    state = web_state(request)
    try:
        token = await run_in_threadpool(lambda: _admitted(state, request, op))
        call = Call(request, state, token)
        call.path = _params(op, request.path_params, "path")
        call.query = _params(op, request.query_params, "query")
        if op.body is not None:
            call.body = await _body(op.body, request)
        result = await op.endpoint(call)
    except Problem as exc:
        return problem(exc.status, exc.detail, exc.headers)
    except Invalid as exc:
        return problem(400, str(exc))
    except StoreError as exc:
        log.warning("api: %s %s: %s", request.method, request.url.path, exc)
        return problem(
            503, "the database is not available just now; try again in a minute", {"retry-after": "60"}
        )
    except DigestError as exc:
        return problem(422, str(exc))
    if isinstance(result, Response):
        return result
    if op.answer is None:
        return Response(status_code=op.status)
    return JSONResponse(result, op.status)


def _admitted(state: WebState, request: Request, op: Operation) -> ApiToken:
    """The token that may make this call, or the Problem that says why not. A right token
    always passes (256 random bits are not guessed: the count of failures is there to keep
    guessers and scanners busy for nothing, and must not let them lock its holder out)."""
    store = state.store()
    if not store.has_tokens():
        raise Problem(404, "the API is off until a token exists (digest tokens create NAME --scope read)")
    given = bearer(request)
    token = authorised(store, given)
    if token is None:
        network, secret = client_of(request), state.secret()
        failures = RateLimit(FAILURES, state.settings.web.api_failures, FAILURES_WINDOW)
        if not failures.allow(store, secret, network):
            raise Problem(429, "too many failed attempts from this network; try again later", headers=_LATER)
        said = (
            "a bearer token is needed (Authorization: Bearer TOKEN)"
            if given is None
            else "that token is not valid (unknown or revoked)"
        )
        raise Problem(401, said, headers={"www-authenticate": 'Bearer realm="digest"'})
    if op.scope == "write" and token.scope != "write":
        raise Problem(
            403, f"token {token.name!r} may only read; this call writes (a token of --scope write may)"
        )
    store.token_used(token.id, store.now())
    return token


_LATER = {"retry-after": str(int(FAILURES_WINDOW))}


def _params(op: Operation, given: Mapping[str, Any], where: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for param in op.params:
        if param.where != where:
            continue
        raw = given.get(param.name)
        if raw is None or raw == "":
            if param.required:
                raise Invalid(f"{param.name}: missing")
            continue
        found[param.name] = _parse(raw, param)
    return found


def _parse(raw: str, param: Param) -> Any:
    kind = param.kind
    inner = get_args(kind)[0] if get_origin(kind) is Annotated else kind
    value: Any = raw
    if inner is int:
        if not _INTEGER.fullmatch(raw):
            raise Invalid(f"{param.name}: expected an integer")
        value = int(raw)
    elif inner is datetime:
        return moment(raw, param.name)
    return check(value, kind, param.name)


_INTEGER = re.compile(r"-?[0-9]{1,12}")  # ASCII digits only (str.isdigit takes "²" too)


def moment(text: str, where: str) -> datetime:
    """An ISO 8601 date or time, in UTC (one naming no zone is read as UTC); Invalid for
    text that is none, or a moment UTC cannot hold."""
    try:
        return given_moment(text).astimezone(UTC)
    except (ValueError, OverflowError):
        raise Invalid(f"{where}: expected an ISO 8601 date or time (such as 2026-11-01)") from None


async def _body(body: Body, request: Request) -> Any:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if body.kind is None:
        return raw
    if media != "application/json":
        raise Problem(415, "send JSON (Content-Type: application/json)")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "the body is not JSON") from None
    except RecursionError:
        raise Problem(400, "the body's JSON is nested too deeply") from None
    return check(value, body.kind, "body")


# --- the document -----------------------------------------------------------------------------


def document(api: Api, *, title: str, version: str, server: str) -> JSON:
    """The OpenAPI 3.1 document of ``api``'s operations."""
    components: dict[str, JSON] = {}
    problem_schema = schema_of(ProblemDetails, components)
    paths: dict[str, JSON] = {}
    for op in api.operations:
        item = paths.setdefault(op.path, {})
        responses: JSON = {}
        if op.answer is None:
            responses[str(op.status)] = {"description": "Done."}
        elif op.media != "application/json":
            responses[str(op.status)] = {
                "description": "Done.",
                "content": {op.media: {"schema": {"type": "string"}}},
            }
        else:
            responses[str(op.status)] = {
                "description": "Done.",
                "content": {"application/json": {"schema": schema_of(op.answer, components)}},
            }
        statuses = {400, 401, 404, 429, 503, *op.errors}
        if op.scope == "write":
            statuses |= {403}
        if op.body is not None:
            statuses |= {413, 415, 422}
        for status in sorted(statuses):
            responses[str(status)] = {
                "description": _TITLES.get(status, "Error"),
                "content": {PROBLEM: {"schema": problem_schema}},
            }
        operation: JSON = {
            "operationId": op.id,
            "summary": op.summary,
            "tags": [op.tag],
            "security": [{"bearer": []}],
            "responses": responses,
        }
        if op.endpoint.__doc__:
            operation["description"] = " ".join(op.endpoint.__doc__.split())
        if op.params:
            operation["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "description": p.description,
                    "schema": schema_of(p.kind, components),
                }
                for p in op.params
            ]
        if op.body is not None:
            schema = schema_of(op.body.kind, components) if op.body.kind is not None else {"type": "string"}
            operation["requestBody"] = {
                "required": True,
                "description": op.body.description,
                "content": {op.body.media: {"schema": schema}},
            }
        item[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": "digest's JSON API."},
        "servers": [{"url": server}],
        "paths": {PREFIX + path: item for path, item in paths.items()},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


class ProblemDetails(TypedDict):
    """An error, as RFC 9457 describes it."""

    type: str
    title: str
    status: int
    detail: str


__all__ = ["API", "Api", "Body", "Call", "Meta", "Operation", "Param", "Problem"]

API = Api()
