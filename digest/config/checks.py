"""The value checkers of the settings: each takes ``(value, where)``, returns the typed value
or raises ConfigError naming ``where`` and saying what is allowed; and :func:`setting`, which
declares a section's field once (its default and its checker)."""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from digest.common.errors import ConfigError

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


def string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {shown(value)}")
    return value


def nonempty(value: Any, where: str) -> str:
    text = string(value, where)
    if not text.strip():
        raise ConfigError(f"{where}: must not be empty")
    return text


def integer(low: int, high: int) -> Checker:
    def check(value: Any, where: str) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{where}: {shown(value)} is not a whole number from {low} to {high}")
        return value

    return check


MAX_SECONDS = 3650 * 86400.0  # ten years: anything longer is a mistake (and overflows dates)


def seconds(value: Any, where: str) -> float:
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
        f"{where}: {shown(value)} is not a duration (a number of seconds, or like 90s, 15m, 1h, 1d)"
    )


def rate(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        try:
            return rate(float(value), where)
        except ValueError:
            pass
    raise ConfigError(f"{where}: {shown(value)} is not a number of messages per second (0 = no limit)")


def boolean(value: Any, where: str) -> bool:
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
    raise ConfigError(f"{where}: {shown(value)} is not true or false")


def choice(options: tuple[str, ...]) -> Checker:
    def check(value: Any, where: str) -> str:
        if value not in options:
            raise ConfigError(f"{where}: {shown(value)} is not one of {', '.join(options)}")
        return str(value)

    return check


def http_url(value: Any, where: str) -> str:
    text = nonempty(value, where)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where}: {text!r} is not an absolute http(s) URL")
    return text.rstrip("/")


def optional_http_url(value: Any, where: str) -> str:
    return http_url(value, where) if string(value, where).strip() else ""


_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def hostname(value: Any, where: str) -> str:
    text = nonempty(value, where).strip().lower()
    if not _HOST.match(text):
        raise ConfigError(f"{where}: {shown(value)} is not a domain name (such as bounces.example.org)")
    return text


def listen(value: Any, where: str) -> tuple[str, int]:
    if isinstance(value, tuple):
        return value
    text = nonempty(value, where).strip()
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {shown(value)} is not HOST:PORT (such as 127.0.0.1:2525)")
    return host, int(port)


def nameserver(value: Any, where: str) -> tuple[str, int] | None:
    """A DNS server as HOST:PORT (such as 127.0.0.1:53); empty: the system's."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    host, port = listen(value, where)
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ConfigError(f"{where}: {shown(value)}: give the DNS server's IP address and port") from exc
    return host, port


_TOPIC = re.compile(r"^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")


def sns_topic(value: Any, where: str) -> str:
    text = string(value, where).strip()
    if text and not _TOPIC.match(text):
        raise ConfigError(
            f"{where}: {shown(value)} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
        )
    return text


def days(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3650:
        raise ConfigError(
            f"{where}: expected a number of days (more than 0, at most 3650), got {shown(value)}"
        )
    return float(value)


def fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(f"{where}: expected a fraction between 0 and 1 (0.05 is 5%), got {shown(value)}")
    return float(value)


def name_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a list of host names")
    return tuple(v.strip() for v in value)


def selector(value: Any, where: str) -> str:
    from cssselect import GenericTranslator, SelectorError

    text = nonempty(value, where)
    try:
        GenericTranslator().css_to_xpath(text)
    except SelectorError as exc:
        raise ConfigError(f"{where}: {text!r} is not a CSS selector ({exc})") from exc
    return text


def location(value: Any, where: str) -> str:
    text = nonempty(value, where).strip()
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


def timezone(value: Any, where: str) -> str:
    text = nonempty(value, where)
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{where}: {text!r} is not a time zone name (such as UTC or Europe/London)"
        ) from None
    return text


_CRON_FIELD = re.compile(r"^[\w*/,\-?#LW]+$")


def cron(value: Any, where: str) -> str:
    text = nonempty(value, where)
    fields = text.split()
    if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
        raise ConfigError(
            f"{where}: {text!r} is not a cron expression (five fields: minute hour day month weekday;"
            " or six, seconds first)"
        )
    return text


def shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{value!r} ({type(value).__name__})"


# --- the schema: section -> key -> checker ----------------------------------------------------


def setting(default: Any, check: Checker, *, secret: bool = False) -> Any:
    """A field of a section, declared once: its default, and the checker that reads it from
    the file or the environment (a ``secret`` is read from the environment only)."""
    return field(default=default, metadata={"check": check, "secret": secret})


def database_url(value: Any, where: str) -> str:
    """``sqlite:///path`` or a libpq ``postgresql://user@host:port/dbname`` URL; a password in
    it is refused (it belongs in DIGEST_DATABASE_PASSWORD, PGPASSWORD or ~/.pgpass)."""
    text = string(value, where).strip()
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
