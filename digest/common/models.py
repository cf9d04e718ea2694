"""Plain data passed between the layers: no I/O here. Datetimes are always timezone-aware."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

# Vocabulary every layer shares (the configuration checks against it; the areas act on it).
CADENCES = ("daily", "weekly", "monthly")  # a subscriber's rhythm: digest.common.rhythms
# Region slugs, a contract (they appear in URLs): the grouping's data file lists the same.
REGION_SLUGS = (
    "east-asia", "southeast-asia", "south-asia", "central-asia", "middle-east", "europe", "africa",
    "latin-america", "north-america", "oceania", "global",
)  # fmt: skip
# What outgoing webhooks may be sent (a contract: receivers subscribe by these names).
EVENT_TYPES = (
    "article.new", "story.new", "digest.sent", "subscriber.confirmed", "subscriber.unsubscribed",
    "subscriber.bounced", "source.failing",
)  # fmt: skip
PARSED_KINDS = ("feed", "html", "text")  # a source kind a parser reads: digest.intake.kinds.<kind>


@dataclass(frozen=True)
class Document:
    """One fetched document: its bytes, where it came from (the base for relative links)
    and the content type the server or the file name gave."""

    body: bytes
    url: str
    content_type: str | None
    name: str


@dataclass(frozen=True)
class ParsedItem:
    """One item as a parser found it, before normalisation.

    ``content_html`` is untrusted HTML straight from the source; ``title`` is plain text.
    """

    title: str
    url: str | None = None
    guid: str | None = None
    content_html: str = ""
    author: str | None = None
    published: datetime | None = None
    updated: datetime | None = None


@dataclass(frozen=True)
class Article:
    """A stored article: normalised, sanitised and with a stable id."""

    id: str
    source: str
    title: str
    url: str | None
    guid: str | None
    summary_html: str
    summary_text: str
    author: str | None
    published: datetime | None
    first_seen: datetime
    updated: datetime
    content_hash: str
    regions: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()
    story: str | None = None
    # The evidence: places found (with counts by title, lead, body) and theme phrases matched.
    places: tuple[dict[str, Any], ...] = ()
    theme_matches: dict[str, Any] = field(default_factory=dict)
    # The id the same item had when URI GUIDs and links were global (before ids were made
    # per source); an article stored under it by its own source keeps it. None: the same.
    former_id: str | None = None
    # What the search index is given of the title and the text, when worked out with the
    # rest of normalisation (on every core, for a big batch); None: the store works them
    # out, as it does when the title or text is no longer the one they were made of.
    search_tokens: SearchTokens | None = field(default=None, compare=False, repr=False)


class SearchTokens(NamedTuple):
    """What the search index is given of a title and a text (digest.common.query's
    ``index_text`` of each), with the title and text they were made of."""

    title: str
    text: str
    title_tokens: str
    text_tokens: str


@dataclass(frozen=True)
class SourceState:
    """What the store remembers about a source between pulls. ``url`` is where to fetch it now
    (a permanent redirect or a discovered feed changes it); ``enabled`` turns false on 410 Gone."""

    name: str
    url: str
    kind: str
    id_name: str = ""  # the name article ids are made with (the first name, through renames)
    enabled: bool = True
    etag: str | None = None
    last_modified: str | None = None
    last_status: int | None = None
    last_error: str | None = None
    last_fetched: datetime | None = None
    consecutive_failures: int = 0
    next_fetch: datetime | None = None


@dataclass
class SourceReport:
    """The outcome of pulling one source: counts, or the error that stopped it."""

    name: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    not_modified: bool = False
    not_due: bool = False  # a scheduled pull that waited out backoff or a cache lifetime
    dropped: int = 0  # items the source's rules dropped in this pull (not those remembered)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        """One line for the terminal: the counts, or the error."""
        if self.error is not None:
            return f"{self.name}: error: {self.error}"
        if self.not_due:
            return f"{self.name}: not due yet"
        if self.not_modified:
            return f"{self.name}: not modified"
        line = f"{self.name}: {self.new} new, {self.updated} updated, {self.unchanged} unchanged"
        return line + (f", {self.dropped} dropped by rules" if self.dropped else "")
