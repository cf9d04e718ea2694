"""Reading an HTTP answer's body from a server nobody vouches for: at most one content coding
(gzip or deflate), decoded a piece at a time against the size cap, so what a few bytes on
the wire expand to is never held beyond the cap. Every fetch digest makes reads through
:func:`read_body` (feeds, article pages, robots.txt, SNS certificates); clients ask only
for what it decodes (:data:`ACCEPT_ENCODING`).

Stacked codings (``gzip, gzip``) and unknown ones are refused: one layer of a 1 KiB answer
can stand for 1 MiB, two for 1 GiB, and no server sends two for a feed.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable

import httpx

ACCEPT_ENCODING = "gzip, deflate"
_GZIP = ("gzip", "x-gzip")


class BodyError(Exception):
    """The body is coded in a way not read here, or damaged; the message says how (the
    caller names the URL)."""


class TooLarge(BodyError):
    """Over the size cap, once decoded."""


class TooSlow(BodyError):
    """Still coming at the deadline."""


class _Decoder:
    """One content coding, decoded incrementally: never more than ``room`` bytes out."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS if coding in _GZIP else zlib.MAX_WBITS)
        self._started = False  # deflate: zlib-wrapped as RFC 9110 says, or raw as some send it

    def decode(self, data: bytes, room: int) -> bytes:
        """Up to ``room`` bytes of what ``data`` decodes to; BodyError past that, or for
        anything after the end of the coded stream (zlib would keep copying it, for ever)."""
        if self._zlib.eof and data:
            raise BodyError(f"data after the end of the {self.coding} stream")
        try:
            out = self._zlib.decompress(data, room + 1)
        except zlib.error:
            if self.coding in _GZIP or self._started:
                raise BodyError(f"the {self.coding} coding is damaged") from None
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)  # a raw deflate stream
            return self.decode(data, room)
        self._started = True
        if len(out) > room:  # stopped at the limit: there is more than room for
            raise TooLarge("over the size cap")
        if self._zlib.unused_data:
            raise BodyError(f"data after the end of the {self.coding} stream")
        return out

    def finish(self, room: int) -> bytes:
        try:
            out = self._zlib.flush()
        except zlib.error:
            raise BodyError(f"the {self.coding} coding is damaged") from None
        if not self._zlib.eof:
            raise BodyError(f"the {self.coding} coding is damaged (cut short)")
        if len(out) > room:
            raise TooLarge("over the size cap")
        return out


def coding_of(header: str | None) -> str | None:
    """The one coding to undo (None: none), or BodyError for stacked or unknown ones."""
    codings = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if len(codings) > 1:
        raise BodyError(f"content codings {', '.join(codings)!r} refused: one layer of gzip or deflate only")
    if codings[0] not in (*_GZIP, "deflate"):
        raise BodyError(f"content coding {codings[0]!r} refused: gzip or deflate only")
    return codings[0]


def decode_capped(
    chunks: Iterable[bytes], coding: str | None, cap: int, *, deadline: float | None = None
) -> bytes:
    """The body ``chunks`` (as they came off the wire) stand for, at most ``cap`` bytes once
    decoded; BodyError when over it, past ``deadline`` (time.monotonic()), or undecodable."""
    decoder = _Decoder(coding) if coding else None
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        if deadline is not None and time.monotonic() > deadline:
            raise TooSlow("took too long")
        piece = decoder.decode(chunk, cap - size) if decoder else chunk
        size += len(piece)
        if size > cap:
            raise TooLarge("over the size cap")
        parts.append(piece)
    if decoder is not None:
        parts.append(decoder.finish(cap - size))
    return b"".join(parts)


def read_body(response: httpx.Response, cap: int, *, deadline: float | None = None) -> bytes:
    """A streamed answer's body, decoded, at most ``cap`` bytes (see :func:`decode_capped`);
    a declared length over the cap is refused before anything is read."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise TooLarge(f"{declared} bytes is over the size cap of {cap}")
    coding = coding_of(response.headers.get("content-encoding"))
    return decode_capped(response.iter_raw(), coding, cap, deadline=deadline)
