"""Redacting URLs before they are shown: what errors, logs, ``/healthz`` and ``digest status``
say about a URL never includes its credentials (``user:password@``), its query string
(where API keys live) or path parameters (``;jsessionid=``). Pure functions.

Tolerant by design: a URL that does not parse (a password with a quote or an unencoded
``@`` in it) is redacted all the same, by cutting text, never by trusting a parser.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

# A URL in running text runs to the next white space; a quote, bracket or punctuation at
# its very end belongs to the sentence ("url: HTTP 500", "'url'").
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S*[^\s.,;:!?)\]>'\"]")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)(.*)$", re.S)


def url(text: str, *, mark: bool = True) -> str:
    """A URL without userinfo, query, fragment or path parameters (``?…`` marks a query or
    parameters that were there, unless ``mark`` is false). A URL whose authority cannot be
    told apart from a password (``user:pa#ss@host``, ``user:12/x@host``) is shown as
    ``scheme://…``."""
    found = _SCHEME.match(text)
    if found is None:
        return text
    scheme, rest = found.groups()
    slash = rest.find("/")
    head_end = (
        slash
        if slash >= 0
        else min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    )
    head, tail = rest[:head_end], rest[head_end:]
    if "@" in head:
        head = head.rsplit("@", 1)[1]  # userinfo, a password with "@", "#", "?" or ";" included
    elif ("@" in tail and (":" in head or any(c in head for c in "?#;"))) or _odd_port(head):
        return f"{scheme}…"  # a password with a "/", "#" or space in it may have ended the host early
    kept = head + tail
    cut_at = min((i for i in (kept.find(c) for c in "?#;") if i >= 0), default=len(kept))
    kept, dropped = kept[:cut_at], kept[cut_at:]
    hidden = "?…" if mark and dropped and dropped[0] in "?;" else ""
    return f"{scheme}{kept}{hidden}"


def _odd_port(head: str) -> bool:
    """Whether what follows the host's last ":" is not a port (so is part of a password)."""
    if head.startswith("["):  # an IPv6 address: what follows "]" is ":port" or nothing
        after = head.partition("]")[2]
        return bool(after) and not (after.startswith(":") and after[1:].isdigit())
    _, colon, port = head.rpartition(":")
    return bool(colon) and not port.isdigit()


def text(message: str) -> str:
    """``message`` with every URL in it redacted by :func:`url`."""
    if "://" not in message:
        return message
    return _URL.sub(lambda match: url(match.group(0)), message)


def database(url: str) -> str:
    """The server and database of a PostgreSQL URL, for messages: never its user or password."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    host = query.get("host") or parts.netloc.rpartition("@")[2] or "localhost"
    port = query.get("port")
    return f"postgresql://{host}{f':{port}' if port else ''}{parts.path or '/'}"
