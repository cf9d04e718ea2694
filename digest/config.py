"""Typed settings: built-in defaults < TOML file < ``DIGEST_*`` environment variables.

Every error names the file (or variable) and the key, and says what is allowed, e.g.
``digest.toml: sources[0].kind: 'podcast' is not one of auto, feed, html, text``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from digest import rules
from digest.cadence import CADENCES
from digest.errors import ConfigError, SubscriberError
from digest.rules import Rules

if TYPE_CHECKING:
    from digest.store import Store
from digest.resources import bundled
from digest.sources.kinds import CHOICES

CONFIG_ENV = "DIGEST_CONFIG"
DEFAULT_CONFIG_NAME = "digest.toml"
EMAIL_KIND = "email"  # fed by digest's inbound SMTP server, never pulled
SOURCE_KINDS = (*CHOICES, EMAIL_KIND)  # auto, every kind the registry knows, and email
SMTP_SECURITY = ("none", "starttls", "tls")
SELECTOR_KEYS = ("item", "title", "link", "summary", "date", "author")


# --- value checkers: each takes (value, where) and returns the typed value -------------------

Checker = Callable[[Any, str], Any]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``15m``, ``1h30m`` or ``2d``; ValueError if not one."""
    compact = text.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for match in _DURATION.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not compact or pos != len(compact) or total <= 0:
        raise ValueError(text)
    return total


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {_shown(value)}")
    return value


def _nonempty(value: Any, where: str) -> str:
    text = _string(value, where)
    if not text.strip():
        raise ConfigError(f"{where}: must not be empty")
    return text


def _integer(low: int, high: int) -> Checker:
    def check(value: Any, where: str) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{where}: {_shown(value)} is not a whole number from {low} to {high}")
        return value

    return check


MAX_SECONDS = 3650 * 86400.0  # ten years: anything longer is a mistake (and overflows dates)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= MAX_SECONDS:
        return float(value)
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError:
            pass
        else:
            if seconds <= MAX_SECONDS:
                return seconds
    raise ConfigError(
        f"{where}: {_shown(value)} is not a duration (a number of seconds, or like 90s, 15m, 1h, 1d)"
    )


def _rate(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        try:
            return _rate(float(value), where)
        except ValueError:
            pass
    raise ConfigError(f"{where}: {_shown(value)} is not a number of messages per second (0 = no limit)")


def _boolean(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    ):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise ConfigError(f"{where}: {_shown(value)} is not true or false")


def _choice(options: tuple[str, ...]) -> Checker:
    def check(value: Any, where: str) -> str:
        if value not in options:
            raise ConfigError(f"{where}: {_shown(value)} is not one of {', '.join(options)}")
        return str(value)

    return check


def _http_url(value: Any, where: str) -> str:
    text = _nonempty(value, where)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where}: {text!r} is not an absolute http(s) URL")
    return text.rstrip("/")


def _optional_http_url(value: Any, where: str) -> str:
    return _http_url(value, where) if _string(value, where).strip() else ""


_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _hostname(value: Any, where: str) -> str:
    text = _nonempty(value, where).strip().lower()
    if not _HOST.match(text):
        raise ConfigError(f"{where}: {_shown(value)} is not a domain name (such as bounces.example.org)")
    return text


def _listen(value: Any, where: str) -> tuple[str, int]:
    if isinstance(value, tuple):
        return value
    text = _nonempty(value, where).strip()
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {_shown(value)} is not HOST:PORT (such as 127.0.0.1:2525)")
    return host, int(port)


def _nameserver(value: Any, where: str) -> tuple[str, int] | None:
    """A DNS server as HOST:PORT (such as 127.0.0.1:53); empty: the system's."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    host, port = _listen(value, where)
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ConfigError(f"{where}: {_shown(value)}: give the DNS server's IP address and port") from exc
    return host, port


_TOPIC = re.compile(r"^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")


def _sns_topic(value: Any, where: str) -> str:
    text = _string(value, where).strip()
    if text and not _TOPIC.match(text):
        raise ConfigError(
            f"{where}: {_shown(value)} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
        )
    return text


def _days(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3650:
        raise ConfigError(
            f"{where}: expected a number of days (more than 0, at most 3650), got {_shown(value)}"
        )
    return float(value)


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(f"{where}: expected a fraction between 0 and 1 (0.05 is 5%), got {_shown(value)}")
    return float(value)


def _names(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a list of host names")
    return tuple(v.strip() for v in value)


def _selector(value: Any, where: str) -> str:
    from cssselect import GenericTranslator, SelectorError

    text = _nonempty(value, where)
    try:
        GenericTranslator().css_to_xpath(text)
    except SelectorError as exc:
        raise ConfigError(f"{where}: {text!r} is not a CSS selector ({exc})") from exc
    return text


def _location(value: Any, where: str) -> str:
    text = _nonempty(value, where).strip()
    if urlsplit(text).scheme.lower() in ("http", "https"):
        # The URL itself stays out of the message: it may hold a password.
        if any(c.isspace() or ord(c) < 32 for c in text):
            raise ConfigError(f"{where}: not a valid URL (it contains white space or control characters)")
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
        except ValueError as exc:
            raise ConfigError(f"{where}: not a valid URL ({exc})") from exc
        if not parts.hostname:
            raise ConfigError(f"{where}: not a valid URL (no host)")
    return text


def _timezone(value: Any, where: str) -> str:
    text = _nonempty(value, where)
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{where}: {text!r} is not a time zone name (such as UTC or Europe/London)"
        ) from None
    return text


_CRON_FIELD = re.compile(r"^[\w*/,\-?#LW]+$")


def _cron(value: Any, where: str) -> str:
    text = _nonempty(value, where)
    fields = text.split()
    if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
        raise ConfigError(
            f"{where}: {text!r} is not a cron expression (five fields: minute hour day month weekday;"
            " or six, seconds first)"
        )
    return text


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{value!r} ({type(value).__name__})"


# --- the schema: section -> key -> checker ----------------------------------------------------


def setting(default: Any, check: Checker, *, secret: bool = False) -> Any:
    """A field of a section, declared once: its default, and the checker that reads it from
    the file or the environment (a ``secret`` is read from the environment only)."""
    return field(default=default, metadata={"check": check, "secret": secret})


@dataclass(frozen=True)
class SiteSettings:
    title: str = setting("Digest", _nonempty)
    base_url: str = setting("http://127.0.0.1:8080", _http_url)
    feed_entries: int = setting(50, _integer(1, 1000))
    author: str = setting("", _string)  # the feeds' author (entries without one); the title if empty
    websub_hub: str = setting("", _optional_http_url)  # WebSub hub named in our feeds, pinged after pulls


def _database_url(value: Any, where: str) -> str:
    """``sqlite:///path`` or a libpq ``postgresql://user@host:port/dbname`` URL; a password in
    it is refused (it belongs in DIGEST_DATABASE_PASSWORD, PGPASSWORD or ~/.pgpass)."""
    text = _string(value, where).strip()
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme == "sqlite":
        if parts.netloc or len(parts.path) < 2:
            raise ConfigError(f"{where}: a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path")
        return text
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{where}: {parts.scheme or text!r}: expected sqlite:/// or postgresql:// URL")
    query = {key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if parts.password is not None or "password" in query:
        raise ConfigError(
            f"{where}: the URL holds a password; set DIGEST_DATABASE_PASSWORD (or PGPASSWORD,"
            " or ~/.pgpass) instead and remove it from the URL"
        )
    return text


@dataclass(frozen=True)
class DatabaseSettings:
    path: Path = setting(Path("digest.db"), _nonempty)
    url: str = setting("", _database_url)  # postgresql://… (sqlite:/// URLs become ``path``)
    password: str = setting("", _string, secret=True)
    # How long a worker's claim on a source or a batch of deliveries lasts unrenewed: the
    # longest another worker waits to take over from one that died.
    claim_seconds: float = setting(120.0, _seconds)

    @property
    def target(self) -> Path | str:
        """What ``open_store`` opens: the PostgreSQL URL, else the SQLite file."""
        return self.url or self.path

    @property
    def shown(self) -> str:
        """The database for messages: the file, or the server and database (no password)."""
        if not self.url:
            return str(self.path)
        from digest.store.postgres.base import describe

        return describe(self.url)

    def open(self, *, shared: bool = False, timeout: float | None = None) -> Store:
        """The store of this database (brought up to date)."""
        from digest.store import open_store

        return open_store(self.target, password=self.password or None, shared=shared, timeout=timeout)


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

    @property
    def pulled(self) -> bool:
        """Whether digest fetches it (an email source is fed by mail instead)."""
        return self.kind != EMAIL_KIND


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
    story_window: float = setting(3 * 86400.0, _seconds)
    theme_defaults: bool = True  # from [themes]
    themes: tuple[ThemeSettings, ...] = ()


@dataclass(frozen=True)
class ScheduleSettings:
    pull_every: float = setting(3600.0, _seconds)
    digest_cron: str = setting("0 8 * * mon", _cron)
    timezone: str = setting("UTC", _timezone)
    grace: float = setting(86400.0, _seconds)


@dataclass(frozen=True)
class SmtpSettings:
    host: str = setting("127.0.0.1", _nonempty)
    port: int = setting(1025, _integer(1, 65535))
    # When not set: tls on port 465, starttls on 587, else none (see _smtp_settings).
    security: str = setting("none", _choice(SMTP_SECURITY))
    username: str = setting("", _string)
    password: str = setting("", _string, secret=True)
    sender: str = setting("Digest <digest@example.org>", _nonempty)
    timeout: float = setting(30.0, _seconds)
    pool: int = setting(2, _integer(1, 16))
    rate: float = setting(0.0, _rate)
    allow_plaintext_auth: bool = setting(False, _boolean)  # log in without TLS to another machine


@dataclass(frozen=True)
class BouncesSettings:
    """``[bounces]``: each delivery's envelope sender is ``bounces+TOKEN@domain`` (VERP;
    the domain defaults to the sender's); ``soft_limit`` soft bounces in a row: bounced."""

    domain: str = setting("", _hostname)
    soft_limit: int = setting(3, _integer(1, 100))


@dataclass(frozen=True)
class InboundSettings:
    """``[inbound]``: the SMTP server `digest run` runs for mail coming back (bounces,
    complaints), with its limits."""

    listen: tuple[str, int] = setting(("127.0.0.1", 2525), _listen)
    max_bytes: int = setting(1024 * 1024, _integer(1024, 64 * 1024 * 1024))
    per_minute: int = setting(120, _integer(1, 100_000))  # messages a minute from one client
    connections: int = setting(50, _integer(1, 10_000))  # open at once, from everyone
    # The DNS server newsletters' DKIM keys are asked of (HOST:PORT); empty: the system's.
    resolver: tuple[str, int] | None = setting(None, _nameserver)


@dataclass(frozen=True)
class WebhookSettings:
    """``[webhooks]``: provider notifications of bounces and complaints; each is off until
    its secret is set (the SES topic in the file; the others' keys in the environment)."""

    ses_topic: str = setting("", _sns_topic)  # arn:aws:sns:REGION:ACCOUNT:NAME
    postmark_user: str = setting("digest", _nonempty)
    postmark_password: str = setting("", _string, secret=True)
    mailgun_key: str = setting("", _string, secret=True)


@dataclass(frozen=True)
class AlertSettings:
    """``[alerts]``: who hears when something breaks, and when a source counts as broken."""

    email: str = setting("", _string)
    failures: int = setting(5, _integer(1, 1000))  # a source failing this many pulls in a row
    quiet_days: float = setting(14.0, _days)  # a source with no new article for this long
    bounce_rate: float = setting(0.05, _fraction)  # a digest's share of bounced deliveries


@dataclass(frozen=True)
class DkimSettings:
    """``[dkim]``: sign every message with the key in ``key_file`` for ``domain``."""

    domain: str = setting("", _nonempty)
    selector: str = setting("", _nonempty)
    key_file: Path = setting(Path("dkim.pem"), _nonempty)


@dataclass(frozen=True)
class DigestSettings:
    group_by: str = setting("region", _choice(("region", "theme")))
    # A new subscriber's cadence when they choose none; unset: they follow digest_cron.
    cadence: str | None = setting(None, _choice(CADENCES))
    templates: Path | None = setting(None, _nonempty)  # a folder of the user's own email templates


@dataclass(frozen=True)
class OutboxSettings:
    path: Path = setting(Path("outbox"), _nonempty)


@dataclass(frozen=True)
class WebSettings:
    host: str = setting("127.0.0.1", _nonempty)
    port: int = setting(8080, _integer(0, 65535))
    cache_bytes: int = setting(64 * 1024 * 1024, _integer(0, 1024**3))  # pages and feeds kept in memory
    allowed_hosts: tuple[str, ...] = setting((), _names)  # names served besides base_url's and loopback
    metrics: bool = setting(False, _boolean)  # /metrics, Prometheus text (loopback only)


@dataclass(frozen=True)
class FetchSettings:
    timeout: float = setting(20.0, _seconds)
    deadline: float = setting(60.0, _seconds)
    max_bytes: int = setting(10 * 1024 * 1024, _integer(1024, 1024**3))
    user_agent: str = setting("digest/0.1 (feed reader)", _nonempty)
    fast_parser: bool = setting(True, _boolean)
    max_items: int = setting(10_000, _integer(1, 1_000_000))
    allow_private: bool = setting(False, _boolean)  # every remote source may reach non-public addresses
    full_text_below: int = setting(600, _integer(0, 1_000_000))  # (full_text) shorter text: an excerpt
    per_host: int = setting(2, _integer(1, 16))  # (full_text) article pages fetched at once per host
    page_delay: float = setting(0.5, _seconds)  # (full_text) a pause between one worker's page fetches


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


_SOURCE_KEYS = (
    "name", "url", "kind", "every", "enabled", "selectors", "ignore_places", "allow_private", "keep", "drop",
    "address", "allow_from", "allow_unauthenticated", "full_text",
)  # fmt: skip
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_THEME_KEYS = ("title", "phrases", "strong", "extend")


def _read_themes(raw: Any, origin: str, warnings: list[str]) -> tuple[bool, tuple[ThemeSettings, ...]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: themes: expected a table ([themes])")
    defaults = _boolean(raw.get("defaults", True), f"{origin}: themes.defaults")
    themes = []
    for slug, entry in raw.items():
        if slug == "defaults":
            continue
        where = f"{origin}: themes.{slug}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table ([themes.{slug}]) with phrases")
        if not _SLUG.match(slug):
            raise ConfigError(
                f"{where}: {slug!r} is not a valid theme slug (lower-case letters, digits and '-')"
            )
        for key in entry:
            if key not in _THEME_KEYS:
                warnings.append(f"{where}.{key}: unknown key, ignored (known: {', '.join(_THEME_KEYS)})")
        lists = {}
        for key in ("phrases", "strong"):
            value = entry.get(key, [])
            if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
                raise ConfigError(f"{where}.{key}: expected a list of non-empty phrases")
            lists[key] = tuple(p.strip() for p in value)
        if not lists["phrases"] and not lists["strong"]:
            raise ConfigError(f"{where}: a theme needs phrases (or strong phrases)")
        themes.append(
            ThemeSettings(
                slug=slug,
                title=_nonempty(entry["title"], f"{where}.title") if "title" in entry else None,
                phrases=lists["phrases"],
                strong=lists["strong"],
                extend=_boolean(entry.get("extend", False), f"{where}.extend"),
            )
        )
    return defaults, tuple(themes)


def _read_section(data: Mapping[str, Any], section: str, origin: str, warnings: list[str]) -> dict[str, Any]:
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: {section}: expected a table ([{section}])")
    spec = _SECTIONS[section]
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key in _SECRETS.get(section, {}):
            var = f"DIGEST_{section.upper()}_{key.upper()}"
            raise ConfigError(f"{origin}: {section}.{key}: secrets are not read from the file; set {var}")
        if key not in spec:
            warnings.append(f"{origin}: {section}.{key}: unknown key, ignored (known: {', '.join(spec)})")
            continue
        values[key] = spec[key](raw, f"{origin}: {section}.{key}")
    return values


def _read_source(raw: Any, index: int, origin: str, base_dir: Path, warnings: list[str]) -> SourceSettings:
    where = f"{origin}: sources[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table ([[sources]])")
    for key in raw:
        if key not in _SOURCE_KEYS:
            warnings.append(f"{where}.{key}: unknown key, ignored (known: {', '.join(_SOURCE_KEYS)})")
    email = raw.get("kind") == EMAIL_KIND
    for key in ("name", "address") if email else ("name", "url"):
        if key not in raw:
            needs = "an address" if email else "a url"
            raise ConfigError(f"{where}.{key}: missing (every source needs a name and {needs})")
    name = _nonempty(raw["name"], f"{where}.name")
    if not _NAME.match(name):
        raise ConfigError(
            f"{where}.name: {name!r} is not a valid name (letters, digits, '.', '_' and '-', at most 64)"
        )
    address, allow_from = _mailbox(raw, where) if email else (None, ())
    url = f"mailto:{address}" if email else resolve_location(_location(raw["url"], f"{where}.url"), base_dir)
    selectors = raw.get("selectors", {})
    if not isinstance(selectors, dict):
        raise ConfigError(f"{where}.selectors: expected a table of CSS selectors")
    for key, value in selectors.items():
        if key not in SELECTOR_KEYS:
            raise ConfigError(f"{where}.selectors.{key}: is not one of {', '.join(SELECTOR_KEYS)}")
        _selector(value, f"{where}.selectors.{key}")
    ignore = raw.get("ignore_places", [])
    if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
        raise ConfigError(f"{where}.ignore_places: expected a list of place names")
    return SourceSettings(
        name=name,
        url=url,
        kind=_choice(SOURCE_KINDS)(raw.get("kind", "auto"), f"{where}.kind"),
        every=_seconds(raw["every"], f"{where}.every") if "every" in raw else None,
        enabled=_boolean(raw.get("enabled", True), f"{where}.enabled"),
        selectors=dict(selectors),
        ignore_places=tuple(ignore),
        allow_private=_boolean(raw.get("allow_private", False), f"{where}.allow_private"),
        full_text=_boolean(raw.get("full_text", False), f"{where}.full_text"),
        address=address,
        allow_from=allow_from,
        allow_unauthenticated=_boolean(
            raw.get("allow_unauthenticated", False), f"{where}.allow_unauthenticated"
        ),
        rules=rules.parse(
            _rule_list(raw, "keep", name, origin),
            _rule_list(raw, "drop", name, origin),
            f"{origin}: source {name!r}",
        ),
    )


def _mailbox(raw: Mapping[str, Any], where: str) -> tuple[str, tuple[str, ...]]:
    """An email source's address, and the senders it takes (at least one: addresses, or
    domains, which take their subdomains too)."""
    from digest.addresses import normalise_email

    try:
        address = normalise_email(_nonempty(raw["address"], f"{where}.address")).lower()
    except SubscriberError as exc:
        raise ConfigError(f"{where}.address: {exc}") from exc
    allowed = raw.get("allow_from", [])
    if isinstance(allowed, str):
        allowed = [allowed]
    if (
        not isinstance(allowed, list)
        or not allowed
        or not all(isinstance(a, str) and a.strip() for a in allowed)
    ):
        raise ConfigError(
            f"{where}.allow_from: list the senders this newsletter comes from (addresses or domains);"
            " mail from anyone else is refused"
        )
    senders = []
    for entry in allowed:
        text = entry.strip().lower()
        if "@" in text:
            try:
                text = normalise_email(text).lower()
            except SubscriberError as exc:
                raise ConfigError(f"{where}.allow_from: {exc}") from exc
        else:
            text = _hostname(text, f"{where}.allow_from")
        senders.append(text)
    return address, tuple(senders)


def _rule_list(raw: Mapping[str, Any], key: str, name: str, origin: str) -> list[str]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{origin}: source {name!r}.{key}: expected a list of rules (strings)")
    return value


def resolve_location(url: str, base_dir: Path) -> str:
    """A source location as given, with a relative local path made absolute against ``base_dir``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https", "file") or len(scheme) > 1:
        return url
    path = Path(url).expanduser()
    if path.is_absolute():
        return str(path)
    local = (base_dir / path).resolve()
    # The starter config names "seeds/": with no such folder beside the file, the bundled
    # sample site is meant, so `digest init && digest pull` works anywhere.
    if not local.exists() and path.parts == ("seeds",):
        return str(bundled("seeds"))
    return str(local)


def default_sources() -> tuple[SourceSettings, ...]:
    """The embedded default: the bundled seeds, read as plain-text page dumps."""
    return (SourceSettings(name="seeds", url=str(bundled("seeds")), kind="auto"),)


def _env_overrides(env: Mapping[str, str], merged: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Apply ``DIGEST_<SECTION>_<KEY>`` variables (DIGEST_SMTP_PASSWORD, DIGEST_WEB_PORT, ...)."""
    for section in _SECTIONS:
        for key, check in {**_SECTIONS[section], **_SECRETS.get(section, {})}.items():
            var = f"DIGEST_{section.upper()}_{key.upper()}"
            if var in env:
                merged.setdefault(section, {})[key] = check(env[var], f"environment {var}")
    return merged


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load settings from ``path``, else ``$DIGEST_CONFIG``, else ``./digest.toml`` if present,
    else the embedded default. A path that was asked for and does not exist is an error."""
    env = os.environ if env is None else env
    chosen: Path | None = None
    if path is not None:
        chosen = Path(path)
        asked = "--config"
    elif env.get(CONFIG_ENV):
        chosen = Path(env[CONFIG_ENV])
        asked = CONFIG_ENV
    elif Path(DEFAULT_CONFIG_NAME).is_file():
        chosen = Path(DEFAULT_CONFIG_NAME)
        asked = ""
    if chosen is None:
        return _build({}, "embedded default", Path.cwd(), env)
    if not chosen.is_file():
        raise ConfigError(f"{chosen}: config file not found (given by {asked})")
    try:
        text = chosen.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{chosen}: cannot read config file: {exc}") from exc
    return parse_settings(text, origin=str(chosen), base_dir=chosen.resolve().parent, env=env)


def parse_settings(
    text: str, *, origin: str, base_dir: Path, env: Mapping[str, str] | None = None
) -> Settings:
    """Settings from TOML ``text``; ``origin`` names it in errors, ``base_dir`` anchors relative paths."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: invalid TOML: {exc}") from exc
    return _build(data, origin, base_dir, os.environ if env is None else env)


def _digest_settings(values: Mapping[str, Any], anchored: Callable[..., Path], origin: str) -> DigestSettings:
    templates = anchored("digest", Path(), "templates") if "templates" in values else None
    if templates is not None and not templates.is_dir():
        raise ConfigError(
            f"{origin}: digest.templates: {templates} is not a folder (of digest.html.j2 and digest.txt.j2)"
        )
    return DigestSettings(
        group_by=values.get("group_by", "region"), cadence=values.get("cadence"), templates=templates
    )


def _dkim_settings(values: Mapping[str, Any], anchored: Callable[..., Path], origin: str) -> DkimSettings:
    missing = [key for key in ("domain", "selector") if not values.get(key)]
    if missing:
        raise ConfigError(f"{origin}: dkim: {' and '.join(missing)} must be set to sign messages")
    return DkimSettings(
        values["domain"], values["selector"], anchored("dkim", DkimSettings.key_file, "key_file")
    )


_IMPLICIT_SECURITY = {465: "tls", 587: "starttls"}


def _smtp_settings(values: Mapping[str, Any], origin: str) -> SmtpSettings:
    """SMTP settings, with ``security`` following the port when not given, and never a
    password sent in clear to another machine unless the operator says so."""
    values = dict(values)
    port = values.get("port", SmtpSettings.port)
    values.setdefault("security", _IMPLICIT_SECURITY.get(port, "none"))
    smtp = SmtpSettings(**values)
    if smtp.username and smtp.security == "none" and not smtp.allow_plaintext_auth and not _local(smtp.host):
        raise ConfigError(
            f"{origin}: smtp.security: logging in as {smtp.username!r} to {smtp.host}:{smtp.port} over an"
            ' unencrypted connection would send the password in clear; set security = "starttls" or'
            ' "tls" (or allow_plaintext_auth = true if you must)'
        )
    return smtp


def _local(host: str) -> bool:
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _bounces_settings(values: Mapping[str, Any], smtp: SmtpSettings | None, origin: str) -> BouncesSettings:
    """The bounce domain, by default the sender's own."""
    values = dict(values)
    if not values.get("domain"):
        sender = parseaddr((smtp or SmtpSettings()).sender)[1]
        values["domain"] = _hostname(
            sender.rpartition("@")[2], f"{origin}: bounces.domain (from smtp.sender)"
        )
    return BouncesSettings(**values)


def _alert_settings(values: Mapping[str, Any], origin: str) -> AlertSettings:
    alerts = AlertSettings(**values)
    if alerts.email:
        from digest.addresses import normalise_email

        try:
            return replace(alerts, email=normalise_email(alerts.email))
        except SubscriberError as exc:
            raise ConfigError(f"{origin}: alerts.email: {exc}") from exc
    return alerts


def _database_settings(section: Mapping[str, Any], base_dir: Path) -> DatabaseSettings:
    """``url`` wins over ``path``; a ``sqlite:///`` URL is a path (relative to the config's
    folder, as ``path`` is; ``sqlite:////abs`` is absolute)."""
    url = section.get("url", "")
    password = section.get("password", "")
    claim = section.get("claim_seconds", DatabaseSettings.claim_seconds)
    sqlite = url.startswith("sqlite:")
    given = urlsplit(url).path[1:] if sqlite else section.get("path", DatabaseSettings.path)
    path = Path(given).expanduser()
    path = path if path.is_absolute() else base_dir / path
    return DatabaseSettings(path=path, url="" if sqlite else url, password=password, claim_seconds=claim)


def database_at(url: str, where: str, *, password: str = "") -> DatabaseSettings:
    """The database a URL given on the command line names (``sqlite:///`` paths relative to
    the current folder); ConfigError for a URL that is not one, or that holds a password."""
    checked = _database_url(url, where)
    if not checked:
        raise ConfigError(f"{where}: expected a sqlite:/// or postgresql:// URL")
    return _database_settings({"url": checked, "password": password}, Path.cwd())


def _build(data: Mapping[str, Any], origin: str, base_dir: Path, env: Mapping[str, str]) -> Settings:
    warnings: list[str] = []
    for key in data:
        if key not in _SECTIONS and key not in ("sources", "themes"):
            warnings.append(f"{origin}: {key}: unknown section or key, ignored")
    merged = {name: _read_section(data, name, origin, warnings) for name in _SECTIONS}
    merged = _env_overrides(env, merged)

    raw_sources = data.get("sources")
    if raw_sources is None:
        sources = default_sources()
    elif not isinstance(raw_sources, list):
        raise ConfigError(f"{origin}: sources: expected an array of tables ([[sources]])")
    else:
        sources = tuple(_read_source(raw, i, origin, base_dir, warnings) for i, raw in enumerate(raw_sources))
    seen: set[str] = set()
    for i, source in enumerate(sources):
        if source.name in seen:
            raise ConfigError(f"{origin}: sources[{i}].name: {source.name!r} is used twice")
        if source.address is not None and source.address in seen:
            raise ConfigError(f"{origin}: sources[{i}].address: {source.address!r} is used twice")
        seen.update(filter(None, (source.name, source.address)))

    def anchored(section: str, default: Path, key: str = "path") -> Path:
        value = Path(merged[section].get(key, default)).expanduser()
        return value if value.is_absolute() else base_dir / value

    theme_defaults, themes = _read_themes(data.get("themes", {}), origin, warnings)
    grouping = GroupingSettings(**merged["grouping"], theme_defaults=theme_defaults, themes=themes)
    # A password alone (DIGEST_SMTP_PASSWORD) does not switch SMTP on; a host does.
    wants_smtp = "smtp" in data or "DIGEST_SMTP_HOST" in env
    smtp = _smtp_settings(merged["smtp"], origin) if wants_smtp else None
    # VERP once something reads what comes back: a receiver here, or a [bounces] section.
    wants_bounces = "bounces" in data or "inbound" in data or "DIGEST_BOUNCES_DOMAIN" in env
    return Settings(
        site=SiteSettings(**merged["site"]),
        database=_database_settings(merged["database"], base_dir),
        sources=sources,
        schedule=ScheduleSettings(**merged["schedule"]),
        smtp=smtp,
        outbox=OutboxSettings(path=anchored("outbox", OutboxSettings.path)),
        web=WebSettings(**merged["web"]),
        fetch=FetchSettings(**merged["fetch"]),
        grouping=grouping,
        digest=_digest_settings(merged["digest"], anchored, origin),
        dkim=_dkim_settings(merged["dkim"], anchored, origin) if "dkim" in data else None,
        bounces=_bounces_settings(merged["bounces"], smtp, origin) if wants_bounces else None,
        inbound=InboundSettings(**merged["inbound"]) if "inbound" in data else None,
        webhooks=WebhookSettings(**merged["webhooks"]),
        alerts=_alert_settings(merged["alerts"], origin),
        secret=env.get("DIGEST_SECRET") or None,
        origin=origin,
        warnings=tuple(warnings),
    )
