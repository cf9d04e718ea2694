"""The exceptions digest raises for expected failures.

Every message is one readable line that names what failed and where (a file and key, a
URL, a source name), so the CLI can print it as is and exit non-zero without a traceback.
URLs in messages are redacted (no credentials, no query string: see :mod:`digest.common.redact`), since
messages end up in logs, the database, ``digest status`` and ``/healthz``.
"""

from __future__ import annotations

from datetime import datetime

from digest.common import redact


class DigestError(Exception):
    """Base class: an expected failure with a message fit for a user."""

    def __init__(self, message: str = "") -> None:
        super().__init__(redact.text(message))


class ConfigError(DigestError):
    """The configuration file or environment is invalid."""


class StoreError(DigestError):
    """The database cannot be opened or written."""


class SearchTimeout(StoreError):
    """A search needed more than its share of the database's time (a reader is told to ask
    with fewer words; any other StoreError during a search is the database's trouble)."""


class FetchError(DigestError):
    """A source could not be fetched.

    ``status`` is the HTTP status when there was one; ``retry_after`` is set when the server
    asked us to come back later (429/503).
    """

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: datetime | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ParseError(DigestError):
    """A fetched document is not a feed, a listing page or a text dump we can read."""


class SourceError(DigestError):
    """A source cannot be added or changed as asked: a name or URL taken, a source of the
    config file (changed there), a URL with nothing readable."""


class SubscriberError(DigestError):
    """A subscriber request that cannot be honoured: a bad address, an unknown slug."""


class SendError(DigestError):
    """Mail could not be sent at all: SMTP refused us (authentication, TLS) or the outbox is unwritable."""
