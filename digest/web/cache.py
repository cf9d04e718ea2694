"""Rendered answers kept in memory, and sending them the way feed readers like.

Every feed and page is rendered once per change of what they show and kept, with its gzip
form, a weak ETag and Last-Modified. A change is noticed through the store's
``data_version`` (a counter every write pages and feeds show bumps, such as a pull's;
bookkeeping such as a search's rate-limit hit does not), checked at most once per
``RECHECK`` seconds; a cached answer costs no database work at all. Only 200s are kept,
within a byte limit, least recently used dropped first.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from digest.config import Settings
from digest.publish.site import Site
from digest.store import DatabaseStore, Store, open_database

RECHECK = 1.0
MIN_GZIP = 512
# A render is compressed once, then sent many times: level 3 compresses a 50-entry feed of
# full summaries (367 KB) in 5 ms against level 6's 14 ms (half the uncached feed's cost),
# for 14% more bytes (106 KB against 93 KB) (issue 30: every feed under 50 ms uncached).
GZIP_LEVEL = 3
PAGE_CACHE_CONTROL = "public, max-age=60"
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Rendered:
    """A response body ready to send, in plain and gzip form, with its validators."""

    body: bytes
    media_type: str
    etag: str
    last_modified: str | None = None
    status: int = 200
    gzipped: bytes | None = None

    @classmethod
    def of(
        cls, body: bytes, media_type: str, last_modified: float | None = None, status: int = 200
    ) -> Rendered:
        etag = 'W/"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        stamp = email.utils.formatdate(last_modified, usegmt=True) if last_modified is not None else None
        packed = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0) if len(body) >= MIN_GZIP else None
        return cls(body, media_type, etag, stamp, status, packed)


class Cache:
    """Rendered answers (200s only), least recently used dropped beyond ``max_bytes``, and
    all dropped whenever the database changes.

    A page is kept only if the database did not change while it was rendered: the version
    is read *before* rendering, so a page built from data a pull has since replaced is
    served once, to the request that built it, and never kept."""

    def __init__(self, settings: Settings, max_bytes: int | None = None) -> None:
        self.settings = settings
        self.site = Site(settings)
        self.max_bytes = settings.web.cache_bytes if max_bytes is None else max_bytes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, ...], Rendered] = OrderedDict()
        self.bytes = 0
        self._version: int | None = None
        self._checked = 0.0
        self._watch: DatabaseStore | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def store(self) -> Store:
        """This thread's connection (sqlite3 connections stay in the thread that made them)."""
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = open_database(self.settings.database)
            self._local.store = store
        return store

    def peek(self, key: tuple[str, ...]) -> Rendered | None:
        """The cached answer, if the database was checked for changes within RECHECK seconds."""
        if time.monotonic() - self._checked >= RECHECK:
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    async def answer(
        self, request: Request, key: tuple[str, ...], build: Callable[[Store], Rendered], control: str
    ) -> Response:
        """The answer for ``key``: from memory, or built in a worker thread."""
        rendered = self.peek(key)
        if rendered is None:
            rendered = await run_in_threadpool(self.get, key, build)
        return respond(request, rendered, control)

    def get(self, key: tuple[str, ...], build: Callable[[Store], Rendered]) -> Rendered:
        """The cached answer, or a fresh one (run in a worker thread)."""
        self._revalidate()
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        version = self._revalidate(force=True)  # a render costs far more than this check
        rendered = build(self.store())
        if rendered.status == 200:
            self._keep(key, rendered, version)
        return rendered

    def _keep(self, key: tuple[str, ...], rendered: Rendered, version: int) -> None:
        size = _size(key, rendered)
        if size > self.max_bytes:
            return
        with self._lock:
            assert self._watch is not None
            if version != self._version or version != self._watch.data_version():
                return  # the database changed while this was rendered
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= _size(key, old)
            self._entries[key] = rendered
            self.bytes += size
            while self.bytes > self.max_bytes:
                dropped_key, dropped = self._entries.popitem(last=False)
                self.bytes -= _size(dropped_key, dropped)

    def _revalidate(self, *, force: bool = False) -> int:
        """Drop everything if the database changed (checked at most every RECHECK seconds
        unless ``force``); the version the entries belong to."""
        with self._lock:
            if not force and self._version is not None and time.monotonic() - self._checked < RECHECK:
                return self._version
            if self._watch is None:
                self._watch = open_database(self.settings.database, shared=True)
            version = self._watch.data_version()
            if version != self._version:
                self._entries.clear()
                self.bytes = 0
                self._version = version
            self._checked = time.monotonic()
            return version


def _size(key: tuple[str, ...], rendered: Rendered) -> int:
    # What an entry costs: its bodies and key, plus a rough allowance for the objects.
    return len(rendered.body) + len(rendered.gzipped or b"") + sum(len(part) for part in key) + 400


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip: its own entry decides (``gzip;q=0``
    refuses it, whatever ``*`` says), else ``*``'s."""
    weights: dict[str, float] = {}
    for item in header.lower().split(","):
        name, *params = (part.strip() for part in item.split(";"))
        given = [p[2:] for p in params if p.startswith("q=")]
        try:
            weights.setdefault(name, float(given[0]) if given else 1.0)
        except ValueError:
            weights.setdefault(name, 0.0)
    for name in ("gzip", "x-gzip", "*"):
        if name in weights:
            return weights[name] > 0
    return False


def respond(request: Request, rendered: Rendered, cache_control: str) -> Response:
    """Send ``rendered``: 304 when the client's copy is current, gzip when it accepts it."""
    headers = {"ETag": rendered.etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding"}
    if rendered.last_modified:
        headers["Last-Modified"] = rendered.last_modified
    if rendered.status == 200 and _not_modified(request, rendered):
        return Response(status_code=304, headers=headers)
    body = rendered.body
    if rendered.gzipped is not None and accepts_gzip(request.headers.get("accept-encoding", "")):
        body = rendered.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, status_code=rendered.status, media_type=rendered.media_type, headers=headers)


def _not_modified(request: Request, rendered: Rendered) -> bool:
    tags = request.headers.get("if-none-match")
    if tags is not None:
        wanted = {tag.strip().removeprefix("W/") for tag in tags.split(",")}
        return "*" in wanted or rendered.etag.removeprefix("W/") in wanted
    since = request.headers.get("if-modified-since")
    if since and rendered.last_modified:
        try:
            return email.utils.parsedate_to_datetime(since) >= email.utils.parsedate_to_datetime(
                rendered.last_modified
            )
        except (TypeError, ValueError):
            return False
    return False
