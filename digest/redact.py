"""Redacting URLs before they are shown: what errors, logs, ``/healthz`` and ``digest status``
say about a URL never includes its credentials (``user:password@``) or its query string
(where API keys live). Pure functions."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# A URL in running text; punctuation at its end belongs to the sentence ("url: HTTP 500").
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,;:!?)\]]")


def url(text: str, *, mark: bool = True) -> str:
    """A URL without userinfo, query or fragment (``?…`` marks a query that was there,
    unless ``mark`` is false)."""
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return text.split("@", 1)[-1].split("?", 1)[0]
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    cut = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return f"{cut}?…" if parts.query and mark else cut


def text(message: str) -> str:
    """``message`` with every URL in it redacted by :func:`url`."""
    if "://" not in message:
        return message
    return _URL.sub(lambda match: url(match.group(0)), message)
