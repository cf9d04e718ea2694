"""Telling what a document is (feed, HTML page or plain text) from its bytes and content type."""

from __future__ import annotations

import re

from digest.common.errors import ParseError

_FEED_TYPES = ("rss", "atom", "rdf", "feed+json", "xml")
_FEED_ROOT = re.compile(rb"<(?:rss|feed|rdf:RDF|channel)\b", re.I)
_HTML_ROOT = re.compile(rb"<(?:!doctype\s+html|html|head|body)\b", re.I)
_UTF16_32 = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"<\x00", b"\x00<", b"\x00\x00\x00<")
_SNIFF = 4096
_CHARSET = re.compile(r"charset\s*=\s*\"?([\w.:-]+)", re.I)


def charset_of(content_type: str | None) -> str | None:
    """The charset a Content-Type header declares, lower-cased, or None."""
    match = _CHARSET.search(content_type or "")
    return match.group(1).lower() if match else None


def detect_kind(body: bytes, content_type: str | None) -> str:
    """``feed``, ``html`` or ``text``; ParseError for empty or binary data."""
    head = body[:_SNIFF]
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped:
        raise ParseError("empty document")
    if stripped.startswith(_UTF16_32):
        return "feed"  # UTF-16/32 text here is XML; feedparser knows how to decode it
    mime = (content_type or "").split(";")[0].strip().lower()
    if looks_like_json(body, content_type):
        if _binary(head):  # a first byte of "{" is chance in random bytes, not a JSON Feed
            raise ParseError("binary data: not a feed, an HTML page or text")
        return "feed"
    if _FEED_ROOT.search(head):
        return "feed"
    if _HTML_ROOT.search(head) or mime in ("text/html", "application/xhtml+xml"):
        return "html"
    if stripped.startswith(b"<?xml") or any(t in mime for t in _FEED_TYPES):
        return "feed"
    if _binary(head):
        raise ParseError("binary data: not a feed, an HTML page or text")
    return "text"


def looks_like_json(body: bytes, content_type: str | None) -> bool:
    """Whether a document is JSON (a JSON Feed), by its content type or its first byte."""
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind.endswith("json") or body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def _binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the sniff window is still text.
        if exc.start < len(head) - 4:
            try:
                text = head.decode("cp1252")
            except UnicodeDecodeError:
                return True
        else:
            text = head[: exc.start].decode("utf-8")
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\r\n\f")
    return controls > max(2, len(text) // 100)
