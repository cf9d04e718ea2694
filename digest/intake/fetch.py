"""Fetching a source's bytes: http(s) with conditional GET, or local files and folders.

Every fetch runs under the :class:`~digest.common.egress.FetchPolicy` of the source it is
for: a remote source never reads a file and, unless allowed, never reaches a non-public
address (checked on each connection, see :mod:`digest.common.http`).

HTTP answers that concern the schedule (304, 301/308, 410, 429/503 with Retry-After) are
reported in the :class:`FetchResult` or :class:`~digest.common.errors.FetchError`, for the caller
to record; this module never touches the database.
"""

from __future__ import annotations

import email.utils
import mimetypes
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from digest.common.bodies import BodyError, TooLarge, TooSlow, read_body
from digest.common.egress import FetchPolicy, Resolver, is_remote, origin_of, policy_for
from digest.common.errors import FetchError
from digest.common.http import Refused, make_client
from digest.common.models import Document
from digest.config import FetchSettings

MAX_REDIRECTS = 5
ACCEPT = (
    "application/atom+xml, application/rss+xml, application/feed+json, application/xml;q=0.9,"
    " text/xml;q=0.9, application/json;q=0.8, text/html;q=0.7, text/plain;q=0.6, */*;q=0.1"
)
_REDIRECTS = (301, 302, 303, 307, 308)
_PERMANENT = (301, 308)


@dataclass(frozen=True)
class FetchResult:
    """What a fetch produced. ``documents`` is empty when nothing changed (304) or the
    source is gone (410)."""

    documents: tuple[Document, ...]
    status: int | None = None
    not_modified: bool = False
    gone: bool = False
    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None
    fresh_for: float | None = None  # seconds the server says the answer stays fresh
    link: str | None = None  # the HTTP Link header (WebSub names its hub there)


@dataclass(frozen=True)
class Request:
    """A conditional GET of a source, as :meth:`Fetcher.fetch` is asked for it."""

    url: str
    etag: str | None
    last_modified: str | None
    policy: FetchPolicy


class Fetcher:
    """Fetches sources with shared HTTP connection pools. Use as a context manager.

    ``resolver`` answers DNS questions (the system's by default; tests inject their own)."""

    def __init__(
        self,
        settings: FetchSettings | None = None,
        *,
        resolver: Resolver | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings or FetchSettings()
        self._resolver = resolver
        # HTTP(S)_PROXY / ALL_PROXY / NO_PROXY, as every HTTP client here honours them.
        self._proxies = urllib.request.getproxies_environment() if proxies is None else dict(proxies)
        # A pool for each policy, so a connection opened under one is never lent to another.
        self._clients: dict[FetchPolicy, httpx.Client] = {}
        self._lock = threading.Lock()  # clients are made on first use, by any fetching thread
        self._ahead: _Ahead | None = None

    def policy(self, url: str, *, allow_private: bool = False, added: bool = False) -> FetchPolicy:
        """The policy of a source configured at ``url`` (``[fetch] allow_private`` included;
        ``added``: at run time, see :func:`~digest.common.egress.policy_for`)."""
        return policy_for(url, allow_private=allow_private or self.settings.allow_private, added=added)

    def client(self, policy: FetchPolicy) -> httpx.Client:
        """The client fetches under ``policy`` share (one connection pool a policy)."""
        # Made on first use: setting up TLS costs more than reading a folder of local files.
        policy = replace(policy, local=False)  # files are not the pool's business
        with self._lock:
            client = self._clients.get(policy)
            if client is None:
                client = self._clients[policy] = make_client(
                    policy,
                    timeout=self.settings.timeout,
                    user_agent=self.settings.user_agent,
                    headers={"Accept": ACCEPT},
                    capped=True,
                    resolver=self._resolver,
                    proxies=self._proxies,
                )
        return client

    @contextmanager
    def ahead(
        self, requests: Iterable[Request], *, then: Callable[[Request, FetchResult], None] | None = None
    ) -> Iterator[None]:
        """While the block runs, fetch ``requests`` over the web on ``[fetch] workers``
        threads, in order, at most ``[fetch] per_host`` at once to one server and a bounded
        number ahead of what the block has taken: :meth:`fetch` asked for one of them
        returns (or raises) what was fetched for it. Whoever pulls stays on one thread, with
        the store; only the waiting on servers overlaps. A request the block never asks for
        is fetched at most once, its answer dropped; on leaving, none is started. ``then``
        is called on the fetching thread with each answer fetched ahead (to start working
        on it elsewhere before it is taken)."""
        ahead = _Ahead(self, fetched_ahead(requests), then)
        self._ahead = ahead
        try:
            yield
        finally:
            self._ahead = None
            ahead.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        policy: FetchPolicy | None = None,
        ask: Callable[[str], str | None] | None = None,
    ) -> FetchResult:
        """Fetch ``url`` (http(s), ``file://`` or a local path: a file, or a folder read as
        one document per file in name order) as ``policy`` allows: by default the policy
        of a source configured at ``url`` itself. ``ask``: asked before each redirect is
        followed, with its target: a reason to refuse it (None: follow it)."""
        policy = policy or self.policy(url)
        ahead = self._ahead
        fetched = ahead.take(Request(url, etag, last_modified, policy)) if ahead and not ask else None
        if fetched is not None:
            return fetched.result()
        if is_remote(url):
            return self._fetch_http(url, etag, last_modified, policy, ask)
        if not policy.local:
            raise FetchError(f"{url}: refused: a remote source may not lead to a local file or path")
        return self._fetch_local(url)

    # --- local -------------------------------------------------------------------------------

    def _fetch_local(self, url: str) -> FetchResult:
        parts = urlsplit(url)
        if parts.scheme.lower() == "file":
            path = Path(unquote(parts.path))
        elif len(parts.scheme) > 1:
            raise FetchError(
                f"{url}: unsupported URL scheme {parts.scheme!r} (use http, https, file or a path)"
            )
        else:
            path = Path(url).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not files:
                raise FetchError(f"{path}: the folder has no files to read")
            return FetchResult(tuple(self._read_file(p) for p in files), status=200)
        if path.is_file():
            return FetchResult((self._read_file(path),), status=200)
        raise FetchError(f"{path}: no such file or folder")

    def _read_file(self, path: Path) -> Document:
        try:
            size = path.stat().st_size
            if size > self.settings.max_bytes:
                raise FetchError(f"{path}: {size} bytes is over the size cap of {self.settings.max_bytes}")
            body = path.read_bytes()
        except OSError as exc:
            raise FetchError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        content_type, _ = mimetypes.guess_type(path.name)
        return Document(body=body, url=path.resolve().as_uri(), content_type=content_type, name=path.name)

    # --- http ----------------------------------------------------------------------------------

    def _fetch_http(
        self,
        url: str,
        etag: str | None,
        last_modified: str | None,
        policy: FetchPolicy,
        ask: Callable[[str], str | None] | None,
    ) -> FetchResult:
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        deadline = time.monotonic() + self.settings.deadline
        current, permanent, still_permanent = url, None, True
        visited = {url}
        for _ in range(MAX_REDIRECTS + 1):
            try:
                with self.client(policy).stream("GET", current, headers=headers) as response:
                    status = response.status_code
                    if status in _REDIRECTS:
                        target = self._redirect_target(current, response, visited)
                        if ask is not None and (reason := ask(target)) is not None:
                            raise FetchError(f"{current}: redirect to {target} refused: {reason}")
                        still_permanent = still_permanent and status in _PERMANENT
                        if still_permanent:
                            permanent = target
                        visited.add(target)
                        current = target
                        continue
                    if status == 304:
                        return FetchResult(
                            (),
                            status=304,
                            not_modified=True,
                            etag=etag,
                            last_modified=last_modified,
                            permanent_url=permanent,
                        )
                    if status == 410:
                        return FetchResult((), status=410, gone=True, permanent_url=permanent)
                    if status in (429, 503):
                        retry = retry_after(response.headers.get("retry-after"))
                        when = f"; retry after {retry:%Y-%m-%d %H:%M:%S} UTC" if retry else ""
                        raise FetchError(
                            f"{current}: HTTP {status} {response.reason_phrase}{when}",
                            status=status,
                            retry_after=retry,
                        )
                    if status >= 400 or status < 200:
                        raise FetchError(f"{current}: HTTP {status} {response.reason_phrase}", status=status)
                    body = self._read_capped(current, response, deadline)
                    return FetchResult(
                        (
                            Document(
                                body,
                                str(response.url),
                                response.headers.get("content-type"),
                                current,
                            ),
                        ),
                        status=status,
                        link=response.headers.get("link"),
                        etag=response.headers.get("etag"),
                        last_modified=response.headers.get("last-modified"),
                        permanent_url=permanent,
                        fresh_for=freshness(
                            response.headers.get("cache-control"), response.headers.get("expires")
                        ),
                    )
            except Refused as exc:
                raise FetchError(f"{current}: {exc}") from exc
            except httpx.TimeoutException as exc:
                raise FetchError(f"{current}: timed out after {self.settings.timeout:g}s") from exc
            except httpx.HTTPError as exc:
                raise FetchError(f"{current}: {_describe(exc)}") from exc
            except (httpx.InvalidURL, ValueError) as exc:  # a Location httpx cannot even parse
                raise FetchError(f"{current}: invalid URL: {exc}") from exc
        raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects")

    @staticmethod
    def _redirect_target(current: str, response: httpx.Response, visited: set[str]) -> str:
        location = response.headers.get("location")
        if not location:
            raise FetchError(f"{current}: HTTP {response.status_code} redirect without a Location")
        target = urljoin(current, str(location).strip())
        if not is_remote(target):
            raise FetchError(f"{current}: redirect to {target!r} refused (only http and https)")
        if target in visited:
            raise FetchError(f"{current}: redirect loop back to {target}")
        return target

    def _read_capped(self, url: str, response: httpx.Response, deadline: float) -> bytes:
        cap = self.settings.max_bytes
        try:
            return read_body(response, cap, deadline=deadline)
        except TooLarge as exc:
            raise FetchError(f"{url}: response is over the size cap of {cap} bytes ({exc})") from exc
        except TooSlow as exc:
            raise FetchError(f"{url}: took longer than {self.settings.deadline:g}s in all") from exc
        except BodyError as exc:
            raise FetchError(f"{url}: {exc}") from exc


class _Ahead:
    """Requests fetched on threads ahead of being asked for (see :meth:`Fetcher.ahead`).

    A process with threads may not fork (digest.common.parallel), and a big document's
    items are normalised, and read for grouping, on every core: taking one pauses the
    fetching (the threads end) until the next is asked for; so does taking the last."""

    def __init__(
        self, fetcher: Fetcher, requests: list[Request], then: Callable[[Request, FetchResult], None] | None
    ) -> None:
        self.fetcher = fetcher
        self.then = then
        self.waiting = deque(requests)
        self.window = 2 * fetcher.settings.workers  # fetched, not yet taken: memory stays flat
        self.started: dict[Request, deque[Future[FetchResult]]] = {}
        self.lock = threading.Lock()
        self.origins: dict[tuple[str, int], threading.Semaphore] = {}  # one server: host and port
        self.pool: ThreadPoolExecutor | None = None
        self._fill()

    def take(self, request: Request) -> Future[FetchResult] | None:
        with self.lock:
            queue = self.started.get(request)
            future = queue.popleft() if queue else None
            if queue is not None and not queue:
                del self.started[request]
            if future is None and request in self.waiting:  # asked for early: fetched there, not here
                self.waiting.remove(request)
        if (future is not None and _bytes(future) >= BIG_DOCUMENT) or not (self.waiting or self.started):
            self._pause()
        else:
            self._fill()
        return future

    def close(self) -> None:
        self.waiting.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def _pause(self) -> None:
        """Let the threads end once what they fetch now is in (picked up again by ``_fill``)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None

    def _fill(self) -> None:
        with self.lock:
            while self.waiting and sum(map(len, self.started.values())) < self.window:
                if self.pool is None:
                    workers = self.fetcher.settings.workers
                    self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="digest-fetch")
                request = self.waiting.popleft()
                future = self.pool.submit(self._fetch, request)
                self.started.setdefault(request, deque()).append(future)

    def _fetch(self, request: Request) -> FetchResult:
        with self.lock:
            limit = self.origins.setdefault(
                origin_of(request.url), threading.Semaphore(self.fetcher.settings.per_host)
            )
        with limit:
            r = request
            result = self.fetcher._fetch_http(r.url, r.etag, r.last_modified, r.policy, None)
        if self.then is not None:
            self.then(request, result)
        return result


def fetched_ahead(requests: Iterable[Request]) -> list[Request]:
    """Those of ``requests`` that :meth:`Fetcher.ahead` fetches on threads: the remote ones,
    when there are several (one alone gains nothing from a thread)."""
    remote = [r for r in requests if is_remote(r.url)]
    return remote if len(remote) > 1 else []


# A document this big has items enough to be worked on every core: fetching ahead pauses.
BIG_DOCUMENT = 256 * 1024


def _bytes(future: Future[FetchResult]) -> int:
    """The size of what a fetch brought (0 if it failed: the taker sees why)."""
    if future.exception() is not None:
        return 0
    return sum(len(d.body) for d in future.result().documents)


def freshness(cache_control: str | None, expires: str | None, now: datetime | None = None) -> float | None:
    """Seconds an answer stays fresh by Cache-Control max-age, else Expires; None if unsaid."""
    for part in (cache_control or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.strip().isdigit():
            return float(value.strip())
    if expires:
        try:
            when = email.utils.parsedate_to_datetime(expires)
        except (TypeError, ValueError, IndexError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return None


def retry_after(value: str | None, now: datetime | None = None) -> datetime | None:
    """When a Retry-After header (seconds or an HTTP date) says to come back, or None."""
    if not value:
        return None
    now = now or datetime.now(UTC)
    value = value.strip()
    if value.isdigit():
        return (now + timedelta(seconds=int(value))).replace(microsecond=0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {_root_cause(exc)}"
    if isinstance(exc, httpx.DecodingError):
        return f"cannot decode the response: {_root_cause(exc)}"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return f"unsupported URL: {exc}"
    return f"{type(exc).__name__}: {_root_cause(exc)}"


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc) or type(exc).__name__
