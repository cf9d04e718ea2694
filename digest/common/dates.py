"""Parsing and formatting dates. Everything digest stores is an aware UTC datetime."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}


EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)  # no feed item we read was published before
AHEAD = timedelta(days=1)  # clocks and time zones drift; further ahead is not a publication date


def plausible(value: datetime | None, now: datetime) -> datetime | None:
    """A source's date when it can be a publication date (from 1990 to a day after ``now``),
    else None: Hugo's year-1 "zero" dates, year-9999 sentinels and typos are not dates."""
    if value is None or value < EARLIEST or value > now + AHEAD:
        return None
    return value


def utcnow() -> datetime:
    """Now, in UTC: the system's clock, and every ``Clock``'s default."""
    return datetime.now(UTC)


# Where code that decides by the time reads it. A store carries one (``store.now()``), so
# whatever is given a store reads the same clock: the system's in use, a fixed or stepped
# moment in a test.
Clock = Callable[[], datetime]


def to_iso(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds, the one form stored (so stored times compare as
    text, and an article pulled in the same second as a digest is not mistaken for older)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def given_moment(text: str) -> datetime:
    """An ISO 8601 date or time as a person or a client gives one (``Z`` for UTC), read as
    UTC when it names no zone; ValueError for text that is none."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def optional_iso(value: datetime | None) -> str | None:
    """:func:`to_iso`, or None for no time."""
    return to_iso(value) if value is not None else None


def human(value: datetime, timezone: str = "UTC", *, now: datetime | None = None) -> str:
    """A moment as the command line shows it to a person, in ``timezone`` (an IANA name):
    "Tue 8 Dec 08:00 UTC", with the year when it is not ``now``'s."""
    from zoneinfo import ZoneInfo

    local = value.astimezone(ZoneInfo(timezone))
    year = f" {local.year}" if now is not None and now.astimezone(local.tzinfo).year != local.year else ""
    return f"{local:%a} {local.day} {local:%b}{year} {local:%H:%M %Z}"


def from_iso(text: str) -> datetime:
    """Read an ISO 8601 timestamp; naive ones are taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def from_struct(value: time.struct_time | None) -> datetime | None:
    """A feedparser ``*_parsed`` value (UTC struct_time) as a datetime."""
    if value is None:
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def parse_date(text: str | None) -> datetime | None:
    """A machine-written date (ISO 8601 or RFC 822) as UTC, or None when it is not one."""
    if not text or not text.strip():
        return None
    text = text.strip()
    try:
        return from_iso(text).astimezone(UTC)
    except (ValueError, OverflowError):  # year 1 at -05:00 is before datetime's first day
        pass
    import email.utils  # here: it brings sockets and MIME along, which start-up can do without

    try:
        parsed = email.utils.parsedate_to_datetime(text)
        if parsed is not None:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        pass
    found = find_dates(text)
    return _midnight(found[0]) if found else None


_MONTH = "(?:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_PROSE_DATE = re.compile(
    rf"\b(?:{_DAY}\s+({_MONTH})(?:,?\s+(\d{{4}}))?|({_MONTH})\s+{_DAY}(?:\s*[-–]\s*\d{{1,2}})?(?:,?\s+(\d{{4}}))?)\b",
    re.IGNORECASE,
)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


def find_dates(text: str) -> list[date]:
    """Full dates written in prose (``August 15, 2025``, ``11 November 2025``, ``2025-08-15``),
    in order of appearance. Dates without a year are left out."""
    return [d for d, has_year in _prose_dates(text) if has_year]


def find_partial_dates(text: str) -> list[tuple[int, int, int | None]]:
    """Every (month, day, year or None) written in prose, in order of appearance."""
    found: list[tuple[int, tuple[int, int, int | None]]] = []
    for match in _PROSE_DATE.finditer(text):
        day_first, month_a, year_a, month_b, day_b, year_b = match.groups()
        month = MONTHS[(month_a or month_b).lower().rstrip(".")]
        year = year_a or year_b
        found.append((match.start(), (month, int(day_first or day_b), int(year) if year else None)))
    for match in _ISO_DATE.finditer(text):
        found.append((match.start(), (int(match.group(2)), int(match.group(3)), int(match.group(1)))))
    return [value for _, value in sorted(found)]


def _prose_dates(text: str) -> list[tuple[date, bool]]:
    out = []
    for month, day, year in find_partial_dates(text):
        try:
            out.append((date(year or 2000, month, day), year is not None))
        except ValueError:
            continue
    return out


def infer_date(text: str, reference: date | None) -> datetime | None:
    """The first date a post's text states, as midnight UTC. A date written without a year
    takes the year that puts it closest before ``reference`` (the newest full date nearby)."""
    for month, day, year in find_partial_dates(text):
        try:
            if year is not None:
                return _midnight(date(year, month, day))
            if reference is None:
                continue
            guess = date(reference.year, month, day)
            if guess > reference + timedelta(days=31):
                guess = date(reference.year - 1, month, day)
            return _midnight(guess)
        except ValueError:
            continue
    return None


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
