"""The records the store hands out and takes in: plain frozen dataclasses, JSON already
decoded (but for :class:`Evidence`, kept encoded), times as aware datetimes. Everything
outside ``digest/store/`` sees these, never a row or a column (``Article`` and
``SourceState`` live in ``digest.common.models``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from digest.common.rhythms import Rhythm

SUBSCRIBER_STATUSES = ("pending", "active", "unsubscribed", "bounced")


@dataclass(frozen=True)
class SourceSpec:
    """A source as the configuration names it (the store does not read the configuration)."""

    name: str
    url: str
    kind: str


@dataclass(frozen=True)
class SourceSummary:
    """A source's fetch state and article count, for `digest status` and /healthz."""

    name: str
    articles: int
    last_fetched: datetime | None
    last_status: int | None
    last_error: str | None
    consecutive_failures: int
    next_fetch: datetime | None
    removed: datetime | None
    created: datetime | None = None
    newest: datetime | None = None  # when its latest new article was first seen
    url: str = ""  # as configured or added
    fetch_url: str = ""  # where it is fetched from now (a redirect or a page's feed moved it)
    kind: str = ""
    # "config": named by the configuration file; "store": added at run time (CLI, API, OPML)
    origin: str = "config"
    paused: datetime | None = None  # (added sources) since when an operator paused it
    options: dict[str, Any] = field(default_factory=dict)  # (added sources) as they were given


@dataclass(frozen=True)
class AddedSource:
    """A source an operator adds at run time: its name, where it is fetched, its kind, and
    its options as a ``[[sources]]`` table would give them (the store keeps them, the
    configuration's reader reads them)."""

    name: str
    url: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    paused: datetime | None = None  # (as the store gives them back) since when it is paused


@dataclass(frozen=True)
class Headline:
    """An article without its text: what a list of headlines shows."""

    id: str
    title: str
    source: str
    published: datetime | None
    first_seen: datetime
    regions: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DroppedItem:
    """An item a source's rules dropped: remembered, so it is not judged again while it and
    the rule stay the same."""

    article_id: str
    source: str
    title: str
    url: str | None
    rule: str  # "drop: RULE" or "keep: no keep rule matched"
    content_hash: str
    dropped: datetime


@dataclass(frozen=True)
class SaveCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class Ungrouped:
    """An article whose text has not been classified since it last changed."""

    id: str
    source: str
    title: str
    summary_text: str
    first_seen: datetime
    published: datetime | None = None
    url: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class Evidence:
    """What classification found in an article: places (with counts by title, lead and
    body) and theme matches (score and phrases, by theme). Kept as the JSON text stores
    keep, decoded on demand: classification encodes it on every core, and rescoring a source
    decodes only what it reads."""

    id: str
    places_json: str
    theme_matches_json: str

    @classmethod
    def of(
        cls, id: str, places: Sequence[Mapping[str, Any]], theme_matches: Mapping[str, Mapping[str, Any]]
    ) -> Evidence:
        return cls(id, json.dumps(list(places), ensure_ascii=False), json.dumps(dict(theme_matches)))

    @property
    def places(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(json.loads(self.places_json))

    @property
    def theme_matches(self) -> Mapping[str, Mapping[str, Any]]:
        found: Mapping[str, Mapping[str, Any]] = json.loads(self.theme_matches_json)
        return found


@dataclass(frozen=True)
class Groups:
    """An article's regions (primary first) and themes; with the ``evidence`` they were
    scored from when that is new (the article is then classified)."""

    id: str
    regions: tuple[str, ...]
    themes: tuple[str, ...]
    evidence: Evidence | None = None


@dataclass(frozen=True)
class StoryRow:
    """What story clustering reads of an article."""

    id: str
    source: str
    title: str
    summary_text: str
    published: datetime | None
    first_seen: datetime
    places: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class StoryWords:
    """An article as the story index keeps it: when it happened (published, else first
    seen), the words it is compared by (``terms(title, lead)``) with their counts, the
    specific places and people that tie it to others, its most telling words (``keys``,
    each with its weight then) and its centrality in its story so far."""

    id: str
    at: datetime
    words: Mapping[str, int]
    entities: tuple[str, ...]
    keys: tuple[tuple[str, float], ...] = ()
    centrality: float = 0.0


@dataclass(frozen=True)
class StoryKey:
    """One telling word of an indexed article."""

    key: str
    at: datetime
    article_id: str
    weight: float


@dataclass(frozen=True)
class StoryEntry:
    """An indexed article as a pull's clustering reads it: no text, its story's words."""

    id: str
    title: str
    first_seen: datetime
    published: datetime | None
    words: Mapping[str, int]
    entities: tuple[str, ...]
    story: str | None
    centrality: float


@dataclass(frozen=True)
class StoryMember:
    """A member of a stored story, as choosing the story's id and label reads it."""

    id: str
    first_seen: datetime
    title: str
    centrality: float


@dataclass(frozen=True)
class StoryHead:
    """A stored story as a pull that extends it reads it, whatever its size: its earliest
    member (first seen, then id) and its most central (the earliest of equals)."""

    earliest: StoryMember
    central: StoryMember


@dataclass(frozen=True)
class Story:
    """A story: its id, label and member article ids, and the stored stories it absorbs
    (every member of each joins it, without being named)."""

    id: str
    label: str
    members: tuple[str, ...]
    absorbed: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegionCount:
    slug: str
    articles: int
    primary: int  # articles with this region first


@dataclass(frozen=True)
class ThemeCount:
    slug: str
    articles: int


@dataclass(frozen=True)
class StoryCount:
    id: str
    label: str
    articles: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class GroupCounts:
    regions: tuple[RegionCount, ...]
    themes: tuple[ThemeCount, ...]
    stories: tuple[StoryCount, ...]


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    status: str
    regions: tuple[str, ...]
    themes: tuple[str, ...]
    created: datetime
    confirmed: datetime | None = None
    unsubscribed: datetime | None = None
    bounces: int = 0
    pending_since: datetime | None = None  # when the current sign-up began (confirm links bind to it)
    rhythm: Rhythm | None = None  # None: the site's schedule, [schedule] digest_cron
    topics: tuple[str, ...] = ()  # search queries whose matches join the digest
    next_due: datetime | None = None  # with a rhythm: when the next digest falls due
    reason: str | None = None  # why a bounce or a complaint moved them to bounced or unsubscribed


@dataclass(frozen=True)
class SubscriberChange:
    """An insert or update of one subscriber, by address. ``None`` leaves a field as it is
    (for a new subscriber: the default; ``created`` defaults to now). ``created`` never
    changes for an existing subscriber: link tokens are bound to it."""

    email: str
    status: str | None = None
    regions: tuple[str, ...] | None = None
    themes: tuple[str, ...] | None = None
    created: datetime | None = None
    confirmed: datetime | None = None
    unsubscribed: datetime | None = None
    pending_since: datetime | None = None
    rhythm: Rhythm | None = None  # a new rhythm also sets when the next digest is due
    topics: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Signup:
    """A request from the subscribe form, queued until a confirmation is sent for it."""

    id: int
    email: str
    regions: tuple[str, ...]
    themes: tuple[str, ...]
    subscriber_id: int | None
    attempts: int
    next_try: datetime
    last_error: str | None = None
    rhythm: Rhythm | None = None
    topics: tuple[str, ...] = ()


@dataclass(frozen=True)
class DigestRecord:
    """A digest: cut at ``until``; ``status`` is sending until no delivery is pending."""

    id: str
    created: datetime
    until: datetime
    status: str


@dataclass(frozen=True)
class DigestSummary:
    digest: DigestRecord
    sent: int
    failed: int
    pending: int
    bounced: int = 0  # deliveries a hard or soft bounce came back about


@dataclass(frozen=True)
class PendingDelivery:
    """A ledger row still to send: the subscriber as they are now, and since when their
    digest runs."""

    subscriber: Subscriber
    since: datetime
    attempts: int
    period: str | None = None  # cadence.period_of's name, None for the site's schedule


@dataclass(frozen=True)
class ApiToken:
    """An API token as the store keeps it: the hash of its secret, never the secret."""

    id: int
    name: str
    scope: str  # "read" or "write"
    hash: str
    created: datetime
    last_used: datetime | None = None
    revoked: datetime | None = None


@dataclass(frozen=True)
class WebhookRecord:
    """An outgoing webhook endpoint added through the API."""

    id: int
    url: str
    events: tuple[str, ...]
    secret: str
    created: datetime


@dataclass(frozen=True)
class QueuedEvent:
    """An event to deliver to one endpoint: ``id`` is its webhook-id (the same on every
    retry), ``payload`` the exact JSON text signed and sent."""

    id: str
    url: str
    type: str
    payload: str
    created: datetime
    attempts: int = 0
    next_attempt: datetime | None = None
    status: str = "pending"  # pending | delivered | failed (given up)
    last_error: str | None = None
    done: datetime | None = None


@dataclass(frozen=True)
class DeliveryRecord:
    """A row of the delivery ledger: one digest for one subscriber, and what became of it."""

    digest_id: str
    subscriber_id: int
    status: str  # pending | sent | failed
    attempts: int
    updated: datetime
    since: datetime
    reply: str | None = None
    period: str | None = None
    feedback: str | None = None  # soft | hard | complaint
    feedback_detail: str | None = None
    feedback_at: datetime | None = None


@dataclass(frozen=True)
class Activity:
    """What happened each day (UTC dates, ``YYYY-MM-DD``): articles first seen, deliveries
    by status (as each last changed), and reports come back by kind."""

    articles: dict[str, int]
    deliveries: dict[str, dict[str, int]]
    feedback: dict[str, dict[str, int]]


@dataclass(frozen=True)
class SubscriberEvent:
    """A subscriber's status changed (to active, unsubscribed or bounced), as noted then."""

    id: int
    subscriber_id: int
    email: str
    status: str
    at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class StoryRecord:
    """A stored story: its label, how many articles, when first seen and last changed."""

    id: str
    label: str
    articles: int
    first_seen: datetime
    updated: datetime


@dataclass(frozen=True)
class AdminRecord:
    """A console account: the argon2id hash of its password, never the password."""

    id: int
    name: str
    hash: str
    created: datetime
    changed: datetime
    last_login: datetime | None = None


@dataclass(frozen=True)
class SessionRecord:
    """A console session: whose, its form token, when made, last seen, and when it ends."""

    id: str
    admin_id: int
    admin: str
    csrf: str
    created: datetime
    seen: datetime
    expires: datetime


@dataclass(frozen=True)
class AuditEntry:
    """One change made in the console: who, what, to what, when."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
