"""Redacting URLs before they are shown: what errors, logs, ``/healthz`` and ``digest status``
say about a URL never includes its credentials (``user:password@``), its query string
(where API keys live) or path parameters (``;jsessionid=``). Pure functions.

Tolerant by design: a URL that does not parse (a password with a quote or an unencoded
``@`` in it) is redacted all the same, by cutting text, never by trusting a parser.
"""

from __future__ import annotations

import re

# A URL in running text runs to the next white space; a quote, bracket or punctuation at
# its very end belongs to the sentence ("url: HTTP 500", "'url'").
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S*[^\s.,;:!?)\]>'\"]")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)(.*)$", re.S)


def url(text: str, *, mark: bool = True) -> str:
    """A URL without userinfo, query, fragment or path parameters (``?…`` marks a query or
    parameters that were there, unless ``mark`` is false)."""
    found = _SCHEME.match(text)
    if found is None:
        return text
    scheme, rest = found.groups()
    cut_at = min((i for i in (rest.find(c) for c in "?#;") if i >= 0), default=len(rest))
    kept, dropped = rest[:cut_at], rest[cut_at:]
    slash = kept.find("/")
    authority = kept if slash < 0 else kept[:slash]
    if "@" in authority:
        kept = kept[authority.rfind("@") + 1 :]
    elif "@" in kept and _odd_port(authority):
        # "user:pa/ss@host": a "/" in the password ended the authority early.
        kept = kept.rsplit("@", 1)[1]
    hidden = "?…" if mark and dropped and dropped[0] in "?;" else ""
    return f"{scheme}{kept}{hidden}"


def _odd_port(authority: str) -> bool:
    if ":" not in authority or authority.endswith("]"):
        return False
    return not authority.rsplit(":", 1)[1].isdigit()


def text(message: str) -> str:
    """``message`` with every URL in it redacted by :func:`url`."""
    if "://" not in message:
        return message
    return _URL.sub(lambda match: url(match.group(0)), message)
