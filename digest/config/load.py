"""Reading the settings: built-in defaults < TOML file < ``DIGEST_*`` environment variables,
each value checked where it is read, so that every error names the file (or variable) and
the key."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import replace
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from digest.common import extras, redact, rules
from digest.common.errors import ConfigError, SubscriberError
from digest.common.models import EVENT_TYPES, REGION_SLUGS
from digest.common.resources import bundled
from digest.config import checks
from digest.config.sections import (
    _SECRETS,
    _SECTIONS,
    CONFIG_ENV,
    DEFAULT_CONFIG_NAME,
    EMAIL_KIND,
    SELECTOR_KEYS,
    SOURCE_KINDS,
    AlertSettings,
    BouncesSettings,
    DatabaseSettings,
    DigestSettings,
    DkimSettings,
    FetchSettings,
    GroupingSettings,
    InboundSettings,
    OutboxSettings,
    ScheduleSettings,
    Settings,
    SiteSettings,
    SmtpSettings,
    SourceSettings,
    ThemeSettings,
    WebhookOutSettings,
    WebhookSettings,
    WebSettings,
)

_SOURCE_KEYS = (
    "name", "url", "kind", "every", "enabled", "selectors", "ignore_places", "allow_private", "keep", "drop",
    "address", "allow_from", "allow_unauthenticated", "full_text", "regions", "label",
)  # fmt: skip
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_THEME_KEYS = ("title", "phrases", "strong", "extend")


def _read_themes(raw: Any, origin: str, warnings: list[str]) -> tuple[bool, tuple[ThemeSettings, ...]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: themes: expected a table ([themes])")
    defaults = checks.boolean(raw.get("defaults", True), f"{origin}: themes.defaults")
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
                title=checks.nonempty(entry["title"], f"{where}.title") if "title" in entry else None,
                phrases=lists["phrases"],
                strong=lists["strong"],
                extend=checks.boolean(entry.get("extend", False), f"{where}.extend"),
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
    return read_source(raw, f"{origin}: sources[{index}]", origin, base_dir, warnings)


def read_source(raw: Any, where: str, origin: str, base_dir: Path, warnings: list[str]) -> SourceSettings:
    """A ``[[sources]]`` table read and checked (``where`` names it in errors, ``origin``
    where it came from); also how a source added at run time is read from its options."""
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
    name = checks.nonempty(raw["name"], f"{where}.name")
    if not _NAME.match(name):
        raise ConfigError(
            f"{where}.name: {name!r} is not a valid name (letters, digits, '.', '_' and '-', at most 64)"
        )
    address, allow_from = _mailbox(raw, where) if email else (None, ())
    url = (
        f"mailto:{address}"
        if email
        else resolve_location(checks.location(raw["url"], f"{where}.url"), base_dir)
    )
    selectors = raw.get("selectors", {})
    if not isinstance(selectors, dict):
        raise ConfigError(f"{where}.selectors: expected a table of CSS selectors")
    for key, value in selectors.items():
        if key not in SELECTOR_KEYS:
            raise ConfigError(f"{where}.selectors.{key}: is not one of {', '.join(SELECTOR_KEYS)}")
        checks.selector(value, f"{where}.selectors.{key}")
    ignore = raw.get("ignore_places", [])
    if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
        raise ConfigError(f"{where}.ignore_places: expected a list of place names")
    return SourceSettings(
        name=name,
        url=url,
        kind=checks.choice(SOURCE_KINDS)(raw.get("kind", "auto"), f"{where}.kind"),
        every=checks.seconds(raw["every"], f"{where}.every") if "every" in raw else None,
        enabled=checks.boolean(raw.get("enabled", True), f"{where}.enabled"),
        selectors=dict(selectors),
        ignore_places=tuple(ignore),
        allow_private=checks.boolean(raw.get("allow_private", False), f"{where}.allow_private"),
        full_text=checks.boolean(raw.get("full_text", False), f"{where}.full_text"),
        address=address,
        allow_from=allow_from,
        allow_unauthenticated=checks.boolean(
            raw.get("allow_unauthenticated", False), f"{where}.allow_unauthenticated"
        ),
        rules=rules.parse(
            _rule_list(raw, "keep", name, origin),
            _rule_list(raw, "drop", name, origin),
            f"{origin}: source {name!r}",
        ),
        regions=tuple(
            checks.choice(REGION_SLUGS)(region, f"{where}.regions")
            for region in _strings(raw, "regions", where)
        ),
        label=_label(raw["label"], f"{where}.label") if "label" in raw else None,
    )


def _label(value: Any, where: str) -> str | None:
    """A label: one line of at most 200 characters, no control characters (it goes into
    OPML, JSON and pages)."""
    text = checks.string(value, where).strip()
    if len(text) > 200 or any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in text):
        raise ConfigError(
            f"{where}: a label is one line of at most 200 characters, without control characters"
        )
    return text or None


def _strings(raw: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key}: expected a list of strings")
    return value


_WEBHOOK_KEYS = ("url", "events", "secret", "secret_env", "allow_private")


def _webhooks_out(
    raw: Any, origin: str, env: Mapping[str, str], warnings: list[str]
) -> tuple[WebhookOutSettings, ...]:
    """``[[webhooks_out]]``: where events go. The secret from ``secret_env`` (a variable's
    name) or ``secret``; a Standard Webhooks ``whsec_`` key, or any text of 24 characters
    or more."""
    if not isinstance(raw, list):
        raise ConfigError(f"{origin}: webhooks_out: expected an array of tables ([[webhooks_out]])")
    found: list[WebhookOutSettings] = []
    for index, table in enumerate(raw):
        where = f"{origin}: webhooks_out[{index}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table ([[webhooks_out]])")
        for key in table:
            if key not in _WEBHOOK_KEYS:
                warnings.append(f"{where}.{key}: unknown key, ignored (known: {', '.join(_WEBHOOK_KEYS)})")
        if "url" not in table:
            raise ConfigError(f"{where}.url: missing (where the events go)")
        url = checks.http_url(table["url"], f"{where}.url")
        events = _strings(table, "events", where) or list(EVENT_TYPES)
        for event in events:
            checks.choice(EVENT_TYPES)(event, f"{where}.events")
        if "secret_env" in table:
            name = checks.nonempty(table["secret_env"], f"{where}.secret_env")
            secret = env.get(name, "")
            if not secret:
                raise ConfigError(f"{where}.secret_env: {name} is not set in the environment")
        elif "secret" in table:
            secret = checks.nonempty(table["secret"], f"{where}.secret")
        else:
            raise ConfigError(f"{where}: give secret_env (a variable holding the signing secret) or secret")
        if not webhook_key_ok(secret):
            raise ConfigError(
                f"{where}: the secret must be a whsec_ key (base64 of 24 to 64 bytes)"
                " or text of 24 characters or more"
            )
        if any(w.url == url for w in found):
            raise ConfigError(f"{where}.url: {redact.url(url)} is listed twice")
        found.append(
            WebhookOutSettings(
                url, tuple(dict.fromkeys(events)), secret,
                checks.boolean(table.get("allow_private", False), f"{where}.allow_private"),
            )
        )  # fmt: skip
    return tuple(found)


def webhook_key_ok(secret: str) -> bool:
    """Whether ``secret`` can sign: a whsec_ key of 24 to 64 bytes, or 24+ characters."""
    import base64
    import binascii

    if secret.startswith("whsec_"):
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            return False
        return 24 <= len(key) <= 64
    return len(secret) >= 24


def _mailbox(raw: Mapping[str, Any], where: str) -> tuple[str, tuple[str, ...]]:
    """An email source's address, and the senders it takes (at least one: addresses, or
    domains, which take their subdomains too)."""
    from digest.common.addresses import normalise_email  # email_validator: only when needed

    try:
        address = normalise_email(checks.nonempty(raw["address"], f"{where}.address")).lower()
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
            text = checks.hostname(text, f"{where}.allow_from")
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
    if chosen.is_dir():
        raise ConfigError(f"{chosen}: is a folder, not a config file (given by {asked})")
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
        values["domain"] = checks.hostname(
            sender.rpartition("@")[2], f"{origin}: bounces.domain (from smtp.sender)"
        )
    return BouncesSettings(**values)


def _alert_settings(values: Mapping[str, Any], origin: str) -> AlertSettings:
    alerts = AlertSettings(**values)
    if alerts.email:
        from digest.common.addresses import normalise_email

        try:
            return replace(alerts, email=normalise_email(alerts.email))
        except SubscriberError as exc:
            raise ConfigError(f"{origin}: alerts.email: {exc}") from exc
    return alerts


def _database_settings(section: Mapping[str, Any], base_dir: Path, origin: str) -> DatabaseSettings:
    """``url`` wins over ``path``; a ``sqlite:///`` URL is a path (relative to the config's
    folder, as ``path`` is; ``sqlite:////abs`` is absolute)."""
    url = section.get("url", "")
    password = section.get("password", "")
    claim = section.get("claim_seconds", DatabaseSettings.claim_seconds)
    sqlite = url.startswith("sqlite:")
    given = urlsplit(url).path[1:] if sqlite else section.get("path", DatabaseSettings.path)
    path = Path(given).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if url and not sqlite:
        extras.require("postgres", f"{origin}: database.url (a PostgreSQL URL)")
    return DatabaseSettings(path=path, url="" if sqlite else url, password=password, claim_seconds=claim)


def database_at(url: str, where: str, *, password: str = "") -> DatabaseSettings:
    """The database a URL given on the command line names (``sqlite:///`` paths relative to
    the current folder); ConfigError for a URL that is not one, or that holds a password."""
    checked = checks.database_url(url, where)
    if not checked:
        raise ConfigError(f"{where}: expected a sqlite:/// or postgresql:// URL")
    return _database_settings({"url": checked, "password": password}, Path.cwd(), where)


def _build(data: Mapping[str, Any], origin: str, base_dir: Path, env: Mapping[str, str]) -> Settings:
    warnings: list[str] = []
    for key in data:
        if key not in _SECTIONS and key not in ("sources", "themes", "webhooks_out"):
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
        if source.full_text:
            extras.require("fulltext", f"{origin}: source {source.name!r}: full_text = true")

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
        database=_database_settings(merged["database"], base_dir, origin),
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
        webhooks_out=_webhooks_out(data.get("webhooks_out", []), origin, env, warnings),
        alerts=_alert_settings(merged["alerts"], origin),
        secret=env.get("DIGEST_SECRET") or None,
        origin=origin,
        warnings=tuple(warnings),
    )
