"""The sections of the configuration, one frozen dataclass each, and :class:`Settings`, which
holds them all. Each field is declared once with :func:`~digest.config.checks.setting`: its
default and the checker that reads it from the file or the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from digest.common import redact
from digest.common.errors import ConfigError
from digest.common.models import CADENCES, PARSED_KINDS
from digest.common.rules import Rules
from digest.config import checks
from digest.config.checks import Checker, setting

CONFIG_ENV = "DIGEST_CONFIG"
DEFAULT_CONFIG_NAME = "digest.toml"
EMAIL_KIND = "email"  # fed by digest's inbound SMTP server, never pulled
SOURCE_KINDS = ("auto", *PARSED_KINDS, EMAIL_KIND)  # auto, every kind a parser reads, and email
SMTP_SECURITY = ("none", "starttls", "tls")
SELECTOR_KEYS = ("item", "title", "link", "summary", "date", "author")


@dataclass(frozen=True)
class SiteSettings:
    title: str = setting("Digest", checks.nonempty)
    base_url: str = setting("http://127.0.0.1:8080", checks.http_url)
    feed_entries: int = setting(50, checks.integer(1, 1000))
    author: str = setting("", checks.string)  # the feeds' author (entries without one); the title if empty
    websub_hub: str = setting(
        "", checks.optional_http_url
    )  # WebSub hub named in our feeds, pinged after pulls


@dataclass(frozen=True)
class DatabaseSettings:
    path: Path = setting(Path("digest.db"), checks.nonempty)
    url: str = setting("", checks.database_url)  # postgresql://… (sqlite:/// URLs become ``path``)
    password: str = setting("", checks.string, secret=True)
    # How long a worker's claim on a source or a batch of deliveries lasts unrenewed: the
    # longest another worker waits to take over from one that died.
    claim_seconds: float = setting(120.0, checks.seconds)

    @property
    def target(self) -> Path | str:
        """What ``open_store`` opens (as ``open_database`` does with these settings): the
        PostgreSQL URL, else the SQLite file."""
        return self.url or self.path

    @property
    def shown(self) -> str:
        """The database for messages: the file, or the server and database (no password)."""
        if not self.url:
            return str(self.path)
        return redact.database(self.url)


@dataclass(frozen=True)
class SourceSettings:
    name: str
    url: str
    kind: str = "auto"
    every: float | None = None
    enabled: bool = True
    selectors: Mapping[str, str] = field(default_factory=dict)
    ignore_places: tuple[str, ...] = ()
    allow_private: bool = False  # may reach loopback/private addresses though its URL is public
    rules: Rules = field(default_factory=Rules)  # keep = [...] and drop = [...], compiled
    full_text: bool = False  # fetch each excerpt-only item's page for its main text
    address: str | None = None  # kind = "email": the address newsletters are sent to
    allow_from: tuple[str, ...] = ()  # kind = "email": senders taken (addresses or domains)
    allow_unauthenticated: bool = False  # kind = "email": keep (unpublished) mail without DKIM
    # Regions the source is about as a whole: an article of it that names no place of its
    # own is filed under them (a regional outlet's "the minister said" is still regional).
    regions: tuple[str, ...] = ()
    label: str | None = None  # a category, as an OPML file's outline gave it
    added: bool = False  # added at run time (CLI, API, OPML), kept in the database, not the file

    @property
    def pulled(self) -> bool:
        """Whether digest fetches it (an email source is fed by mail instead)."""
        return self.kind != EMAIL_KIND


@dataclass(frozen=True)
class WebhookOutSettings:
    """An endpoint of ``[[webhooks_out]]``: events of these types are POSTed to ``url``,
    signed with ``secret`` (Standard Webhooks)."""

    url: str
    events: tuple[str, ...]
    secret: str = field(repr=False, default="")
    allow_private: bool = False  # its host may be a loopback or private address


@dataclass(frozen=True)
class ThemeSettings:
    """A theme from the config: a new one, a replacement, or (``extend``) more phrases for a default."""

    slug: str
    title: str | None = None
    phrases: tuple[str, ...] = ()
    strong: tuple[str, ...] = ()
    extend: bool = False


@dataclass(frozen=True)
class GroupingSettings:
    story_window: float = setting(3 * 86400.0, checks.seconds)
    theme_defaults: bool = True  # from [themes]
    themes: tuple[ThemeSettings, ...] = ()


@dataclass(frozen=True)
class ScheduleSettings:
    pull_every: float = setting(3600.0, checks.seconds)
    digest_cron: str = setting("0 8 * * mon", checks.cron)
    timezone: str = setting("UTC", checks.timezone)
    grace: float = setting(86400.0, checks.seconds)
    # How often `digest run` takes up sources added, paused or removed at run time
    sources_every: float = setting(20.0, checks.seconds)


@dataclass(frozen=True)
class SmtpSettings:
    host: str = setting("127.0.0.1", checks.nonempty)
    port: int = setting(1025, checks.integer(1, 65535))
    # When not set: tls on port 465, starttls on 587, else none (see _smtp_settings).
    security: str = setting("none", checks.choice(SMTP_SECURITY))
    username: str = setting("", checks.string)
    password: str = setting("", checks.string, secret=True)
    sender: str = setting("Digest <digest@example.org>", checks.nonempty)
    timeout: float = setting(30.0, checks.seconds)
    pool: int = setting(2, checks.integer(1, 16))
    rate: float = setting(0.0, checks.rate)
    allow_plaintext_auth: bool = setting(False, checks.boolean)  # log in without TLS to another machine


@dataclass(frozen=True)
class BouncesSettings:
    """``[bounces]``: each delivery's envelope sender is ``bounces+TOKEN@domain`` (VERP;
    the domain defaults to the sender's); ``soft_limit`` soft bounces in a row: bounced."""

    domain: str = setting("", checks.hostname)
    soft_limit: int = setting(3, checks.integer(1, 100))


@dataclass(frozen=True)
class InboundSettings:
    """``[inbound]``: the SMTP server `digest run` runs for mail coming back (bounces,
    complaints), with its limits."""

    listen: tuple[str, int] = setting(("127.0.0.1", 2525), checks.listen)
    max_bytes: int = setting(1024 * 1024, checks.integer(1024, 64 * 1024 * 1024))
    per_minute: int = setting(120, checks.integer(1, 100_000))  # messages a minute from one client
    connections: int = setting(50, checks.integer(1, 10_000))  # open at once, from everyone
    # The DNS server newsletters' DKIM keys are asked of (HOST:PORT); empty: the system's.
    resolver: tuple[str, int] | None = setting(None, checks.nameserver)


@dataclass(frozen=True)
class WebhookSettings:
    """``[webhooks]``: provider notifications of bounces and complaints; each is off until
    its secret is set (the SES topic in the file; the others' keys in the environment)."""

    ses_topic: str = setting("", checks.sns_topic)  # arn:aws:sns:REGION:ACCOUNT:NAME
    postmark_user: str = setting("digest", checks.nonempty)
    postmark_password: str = setting("", checks.string, secret=True)
    mailgun_key: str = setting("", checks.string, secret=True)


@dataclass(frozen=True)
class AlertSettings:
    """``[alerts]``: who hears when something breaks, and when a source counts as broken."""

    email: str = setting("", checks.string)
    failures: int = setting(5, checks.integer(1, 1000))  # a source failing this many pulls in a row
    quiet_days: float = setting(14.0, checks.days)  # a source with no new article for this long
    bounce_rate: float = setting(0.05, checks.fraction)  # a digest's share of bounced deliveries


@dataclass(frozen=True)
class DkimSettings:
    """``[dkim]``: sign every message with the key in ``key_file`` for ``domain``."""

    domain: str = setting("", checks.nonempty)
    selector: str = setting("", checks.nonempty)
    key_file: Path = setting(Path("dkim.pem"), checks.nonempty)


@dataclass(frozen=True)
class DigestSettings:
    group_by: str = setting("region", checks.choice(("region", "theme")))
    # A new subscriber's cadence when they choose none; unset: they follow digest_cron.
    cadence: str | None = setting(None, checks.choice(CADENCES))
    templates: Path | None = setting(None, checks.nonempty)  # a folder of the user's own email templates


@dataclass(frozen=True)
class OutboxSettings:
    path: Path = setting(Path("outbox"), checks.nonempty)


@dataclass(frozen=True)
class WebSettings:
    host: str = setting("127.0.0.1", checks.nonempty)
    port: int = setting(8080, checks.integer(0, 65535))
    cache_bytes: int = setting(64 * 1024 * 1024, checks.integer(0, 1024**3))  # pages and feeds kept in memory
    allowed_hosts: tuple[str, ...] = setting(
        (), checks.name_list
    )  # names served besides base_url's and loopback
    metrics: bool = setting(False, checks.boolean)  # /metrics, Prometheus text (loopback only)
    # Failed API token attempts a network may make in 10 minutes before every call from it
    # waits out the window (a right token too)
    api_failures: int = setting(20, checks.integer(1, 1_000_000))


@dataclass(frozen=True)
class FetchSettings:
    timeout: float = setting(20.0, checks.seconds)
    deadline: float = setting(60.0, checks.seconds)
    max_bytes: int = setting(10 * 1024 * 1024, checks.integer(1024, 1024**3))
    user_agent: str = setting("digest/0.1 (feed reader)", checks.nonempty)
    fast_parser: bool = setting(True, checks.boolean)
    max_items: int = setting(10_000, checks.integer(1, 1_000_000))
    allow_private: bool = setting(False, checks.boolean)  # every remote source may reach non-public addresses
    full_text_below: int = setting(600, checks.integer(0, 1_000_000))  # (full_text) shorter text: an excerpt
    workers: int = setting(8, checks.integer(1, 64))  # sources fetched at once (pull and run)
    per_host: int = setting(2, checks.integer(1, 16))  # requests at once to one server: feeds, article pages
    page_delay: float = setting(0.5, checks.seconds)  # (full_text) a pause between one worker's page fetches


# The file's sections: each key's checker comes from its field (declared once, above).
_SECTION_CLASSES: dict[str, type] = {
    "site": SiteSettings,
    "database": DatabaseSettings,
    "schedule": ScheduleSettings,
    "smtp": SmtpSettings,
    "digest": DigestSettings,
    "dkim": DkimSettings,
    "bounces": BouncesSettings,
    "inbound": InboundSettings,
    "webhooks": WebhookSettings,
    "alerts": AlertSettings,
    "outbox": OutboxSettings,
    "web": WebSettings,
    "fetch": FetchSettings,
    "grouping": GroupingSettings,
}


def _checkers(*, secret: bool) -> dict[str, dict[str, Checker]]:
    return {
        section: {
            f.name: f.metadata["check"]
            for f in fields(cls)
            if "check" in f.metadata and f.metadata["secret"] == secret
        }
        for section, cls in _SECTION_CLASSES.items()
    }


_SECTIONS = _checkers(secret=False)
# Secrets: read from the environment only (DIGEST_SMTP_PASSWORD), never from the file.
_SECRETS = {section: keys for section, keys in _checkers(secret=True).items() if keys}


@dataclass(frozen=True)
class Settings:
    """Everything digest needs to run, resolved and validated."""

    site: SiteSettings = field(default_factory=SiteSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    sources: tuple[SourceSettings, ...] = ()
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    smtp: SmtpSettings | None = None
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    web: WebSettings = field(default_factory=WebSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    grouping: GroupingSettings = field(default_factory=GroupingSettings)
    digest: DigestSettings = field(default_factory=DigestSettings)
    dkim: DkimSettings | None = None  # absent: messages go out unsigned
    bounces: BouncesSettings | None = None  # absent: the envelope sender is [smtp] sender's address
    inbound: InboundSettings | None = None  # absent: no SMTP server for mail coming back
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    webhooks_out: tuple[WebhookOutSettings, ...] = ()  # [[webhooks_out]]: events sent out
    alerts: AlertSettings = field(default_factory=AlertSettings)
    secret: str | None = None
    origin: str = "embedded default"
    warnings: tuple[str, ...] = ()

    def source(self, name: str) -> SourceSettings:
        """The source called ``name``, or a ConfigError listing the known names."""
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"{self.origin}: no source named {name!r} (configured: {known})")
