"""Every HTTP client digest makes, and the transport under them.

:func:`make_client` is the one place an ``httpx.Client`` is built (the fetcher's, the WebSub
hub's, the SNS certificate fetch's): no redirects followed by httpx (callers that follow
them check each target), a timeout, and by default the :class:`GuardedTransport`: httpcore
connections whose every TCP connect resolves the host itself and connects to an address
the source's :class:`~digest.common.egress.FetchPolicy` allows and it has just checked.

Checking the address at connect time, and connecting to exactly that address, is what
keeps DNS rebinding out: there is no second lookup for a name to answer differently. TLS
still verifies the certificate against the URL's host name.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from digest.common.bodies import ACCEPT_ENCODING
from digest.common.egress import (
    FetchPolicy,
    Resolved,
    Resolver,
    host_of,
    literal,
    refusal,
    system_resolver,
)


class Refused(Exception):
    """A connection the fetch policy does not allow; the message says where and why."""


def allowed_addresses(host: str, port: int, resolver: Resolver, policy: FetchPolicy) -> list[Resolved]:
    """The addresses ``host`` may be reached at under ``policy``, resolved now; Refused when
    there are none it allows, httpcore's ConnectError when the name does not resolve."""
    ip = literal(host)
    if ip is not None:
        candidates = [Resolved(str(ip), refusal(ip))]
    else:
        try:
            candidates = list(resolver(host, port))
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
    anywhere = policy.trusted == (host_of(host), port)
    allowed = [c for c in candidates if anywhere or c.refusal is None]
    if allowed:
        return allowed
    if not candidates:
        raise httpcore.ConnectError(f"cannot resolve {host}")
    first = candidates[0]
    shown = host if ip is not None else f"{host} ({first.ip})"
    raise Refused(
        f"refused to connect to {shown}: {first.refusal}"
        " (allow_private = true lets a source's own host and port be such an address)"
    )


class GuardedBackend(httpcore.SyncBackend):
    """Resolves each host with ``resolver`` and connects only to the addresses the policy
    allows (:func:`allowed_addresses`), to exactly the ones it checked."""

    def __init__(self, resolver: Resolver, policy: FetchPolicy) -> None:
        self.resolver = resolver
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        for candidate in allowed_addresses(host, port, self.resolver, self.policy):
            try:
                return super().connect_tcp(candidate.ip, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport over an httpcore pool with a :class:`GuardedBackend`.

    With ``proxies`` (scheme → proxy URL, and ``no`` for the hosts that bypass them, as
    ``urllib.request.getproxies_environment`` gives them), requests go through the proxy,
    after the same check of the target on the addresses it resolves to here (a name that
    does not resolve here is left to the proxy). The proxy resolves the name again, so this
    is a best effort: enforce egress rules at the proxy too."""

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        resolver: Resolver | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self._resolver = resolver or system_resolver
        self._policy = policy
        self._proxies = dict(proxies or {})
        self._via: dict[str, httpx.HTTPTransport] = {}
        self._pool = httpcore.ConnectionPool(
            ssl_context=shared_ssl_context(),
            network_backend=GuardedBackend(self._resolver, policy),
            max_connections=20,
            max_keepalive_connections=10,
            keepalive_expiry=30.0,
        )

    def _proxy_for(self, url: httpx.URL) -> str | None:
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        if not proxy or _bypasses(url.host, self._proxies.get("no", "")):
            return None
        return proxy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        proxy = self._proxy_for(request.url)
        if proxy is not None:
            port = request.url.port or (443 if request.url.scheme == "https" else 80)
            # A name only the proxy can resolve is left to it; anything resolved here is checked.
            with contextlib.suppress(httpcore.ConnectError):
                allowed_addresses(request.url.host, port, self._resolver, self._policy)
            if proxy not in self._via:
                self._via[proxy] = httpx.HTTPTransport(proxy=proxy)
            return self._via[proxy].handle_request(request)
        return self._direct(request)

    def _direct(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _mapped(request):
            answer = self._pool.handle_request(core)
        assert isinstance(answer.stream, Iterable)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Stream(answer.stream, request),
            extensions=answer.extensions,
        )

    def close(self) -> None:
        self._pool.close()
        for via in self._via.values():
            via.close()


PUBLIC = FetchPolicy()  # remote, public addresses only


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The one TLS context every client verifies with: making one (loading the CA bundle)
    takes 30 ms, and a source on a private address has a client of its own (issue 30: a
    thousand feeds)."""
    return httpx.create_ssl_context()


def make_client(
    policy: FetchPolicy | None = PUBLIC,
    *,
    timeout: float,
    user_agent: str | None = None,
    headers: Mapping[str, str] | None = None,
    capped: bool = False,
    resolver: Resolver | None = None,
    proxies: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An HTTP client that never follows a redirect by itself, times out after ``timeout``
    seconds (each of connect, read, write, pool) and connects through a
    :class:`GuardedTransport` under ``policy`` (public addresses only by default), with
    ``resolver`` and ``proxies`` (none unless given) passed on to it.

    ``policy=None``: no egress policy, httpx's own transport (which takes its proxies from
    the environment), for a URL the operator configured or digest has pinned itself.
    ``transport``: used as it is, instead of either (the seam for tests).
    ``user_agent``: sent instead of httpx's own. ``capped``: the answers' bodies are read
    through :func:`~digest.common.bodies.read_body` under a size cap, so only the content
    codings it decodes are asked for. ``headers``: sent with every request too."""
    # In this order: httpx sends headers given here in the order given.
    sent = {"User-Agent": user_agent} if user_agent else {}
    sent.update(headers or {})
    if capped:
        sent["Accept-Encoding"] = ACCEPT_ENCODING
    if transport is None and policy is not None:
        transport = GuardedTransport(policy, resolver=resolver, proxies=proxies)
    elif resolver is not None or proxies is not None:
        raise ValueError("resolver and proxies are the guarded transport's: give a policy, not a transport")
    return httpx.Client(
        timeout=httpx.Timeout(timeout), follow_redirects=False, headers=sent, transport=transport
    )


class _Stream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        with _mapped(self._request):
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def _bypasses(host: str, no_proxy: str) -> bool:
    """Whether NO_PROXY (``*``, or names matched with their subdomains) covers ``host``."""
    host = host.lower().rstrip(".")
    for entry in no_proxy.split(","):
        name = entry.strip().lower().lstrip(".").rstrip(".")
        if name.count(":") == 1:
            name = name.split(":")[0]  # a port is allowed in entries; the name decides
        if name == "*" or (name and (host == name or host.endswith("." + name))):
            return True
    return False


# httpcore's exceptions as httpx's (most specific first), so the fetcher handles one family.
_MAPPED: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.RemoteProtocolError),
    (httpcore.NetworkError, httpx.NetworkError),
)


@contextmanager
def _mapped(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except tuple(core for core, _ in _MAPPED) as exc:
        mapped = next(ours for core, ours in _MAPPED if isinstance(exc, core))
        raise mapped(str(exc) or type(exc).__name__, request=request) from exc
