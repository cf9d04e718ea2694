"""Each subscriber's rhythm: when their digests fall due. Pure logic (but for reading the
time zones forms offer, ``timezones.txt`` beside it): a ``Rhythm`` (daily, weekly or monthly, at
a local hour in an IANA time zone, on a weekday for weekly) and the due instants it gives,
in UTC, and the name of the period each closes (the ledger's key).

A due time is a local wall-clock time, read as PEP 495's ``fold=0`` reads it: on an
autumn-back day an hour that happens twice is taken the first time; on a spring-forward
day an hour that does not exist is read with the offset before the jump, which for the
usual one-hour gap is the very moment the clocks jump (New York's 02:00 on that day is
03:00 EDT). Either way each local day (week, month) has exactly one due instant, and due
instants only move forward.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

from digest.common.models import CADENCES


@dataclass(frozen=True)
class Rhythm:
    cadence: str = "weekly"
    timezone: str = "UTC"
    hour: int = 8
    weekday: int = 0  # Monday; weekly only

    def __post_init__(self) -> None:
        if self.cadence not in CADENCES:
            raise ValueError(f"{self.cadence!r} is not one of {', '.join(CADENCES)}")
        if not 0 <= self.hour <= 23:
            raise ValueError(f"hour {self.hour} is not from 0 to 23")
        if not 0 <= self.weekday <= 6:
            raise ValueError(f"weekday {self.weekday} is not from 0 (Monday) to 6 (Sunday)")
        if self.timezone not in iana_zones():  # not at the first due time, and never a path
            shown = self.timezone if len(self.timezone) <= 60 else self.timezone[:60] + "…"
            raise ValueError(f"{shown!r} is not an IANA time zone (such as Europe/London)")

    def falls_on(self, day: date) -> bool:
        if self.cadence == "weekly":
            return day.weekday() == self.weekday
        if self.cadence == "monthly":
            return day.day == 1
        return True

    def due_on(self, day: date) -> datetime:
        """The UTC instant of this rhythm's local hour on ``day`` (whether or not it falls on it)."""
        return datetime.combine(day, time(self.hour), tzinfo=zone(self.timezone)).astimezone(UTC)


def due_times(rhythm: Rhythm, after: datetime, until: datetime) -> Iterator[datetime]:
    """The due instants in ``(after, until]``, oldest first (UTC)."""
    local = zone(rhythm.timezone)
    day = after.astimezone(local).date() - timedelta(days=1)  # a due time just after ``after``
    last = until.astimezone(local).date() + timedelta(days=1)
    while day <= last:
        if rhythm.falls_on(day):
            due = rhythm.due_on(day)
            if after < due <= until:
                yield due
        day += timedelta(days=1)


def last_due(rhythm: Rhythm, now: datetime) -> datetime:
    """The latest due instant at or before ``now``."""
    return max(due for due in _around(rhythm, now) if due <= now)


def next_due(rhythm: Rhythm, after: datetime) -> datetime:
    """The first due instant strictly after ``after``."""
    return min(due for due in _around(rhythm, after) if due > after)


def _around(rhythm: Rhythm, moment: datetime) -> list[datetime]:
    """Three due instants in a row about ``moment``: the one at or before it is the middle
    or the first, the one after it the middle or the last (worked out, not searched for:
    a tick does this for every subscriber it finds due)."""
    day = moment.astimezone(zone(rhythm.timezone)).date()
    if rhythm.cadence == "daily":
        days = [day - timedelta(days=1), day, day + timedelta(days=1)]
    elif rhythm.cadence == "weekly":
        on = day - timedelta(days=(day.weekday() - rhythm.weekday) % 7)
        days = [on - timedelta(days=7), on, on + timedelta(days=7)]
    else:
        first = day.replace(day=1)
        days = [
            (first - timedelta(days=1)).replace(day=1),
            first,
            (first + timedelta(days=32)).replace(day=1),
        ]
    return [rhythm.due_on(d) for d in days]


def previous_due(rhythm: Rhythm, due: datetime) -> datetime:
    """The due instant one period before ``due`` (where a newcomer's first digest starts)."""
    return last_due(rhythm, due - timedelta(microseconds=1))


def day_of(rhythm: Rhythm, due: datetime) -> date:
    """The local day ``due`` is that day's due time for: its local date, or the day before
    when that day's hour did not exist and the jump carried it past midnight (America/Nuuk
    springs forward at 23:00 on a Saturday: that Saturday's 23:00 is Sunday's 00:00)."""
    local = due.astimezone(zone(rhythm.timezone)).date()
    before = local - timedelta(days=1)
    return before if rhythm.due_on(before) == due and rhythm.due_on(local) != due else local


def period_of(rhythm: Rhythm, due: datetime) -> str:
    """The ledger's name for the period a due instant closes: one digest per name and
    subscriber, whatever the clock does ("daily:2026-12-03@Asia/Tokyo",
    "weekly:2026-12-07@Europe/London", "monthly:2026-12@UTC"). Named by the day the due time
    is for, and in its zone: two due instants never share a name, nor does a reader's day
    in a new zone share one with a day in the zone they left."""
    day = day_of(rhythm, due)
    name = f"{day:%Y-%m}" if rhythm.cadence == "monthly" else day.isoformat()
    return f"{rhythm.cadence}:{name}@{rhythm.timezone}"


def period_label(period: str) -> str:
    """What a subject and a heading call a period: "Your daily digest, 3 December", "Week
    of 30 November" (the week it looks back on), "Your monthly digest, November 2026"."""
    cadence, _, value = period.partition(":")
    value = value.partition("@")[0]  # the zone a period is in, since names carry it
    try:
        if cadence == "monthly":
            year, month = (int(part) for part in value.split("-"))
            last = date(year, month, 1) - timedelta(days=1)
            return f"Your monthly digest, {last:%B %Y}"
        day = date.fromisoformat(value)
    except ValueError:
        return ""
    if cadence == "weekly":
        start = day - timedelta(days=7)
        return f"Week of {start.day} {start:%B}"
    return f"Your daily digest, {day.day} {day:%B}" if cadence == "daily" else ""


DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def described(rhythm: Rhythm) -> str:
    """A rhythm in words: "weekly on Friday at 06:00 (Asia/Tokyo)"."""
    on = {"weekly": f" on {DAY_NAMES[rhythm.weekday].title()}", "monthly": " on the 1st"}.get(
        rhythm.cadence, ""
    )
    return f"{rhythm.cadence}{on} at {rhythm.hour:02d}:00 ({rhythm.timezone})"


def weekday_name(number: int) -> str:
    return DAY_NAMES[number][:3]


def weekday_number(text: str) -> int:
    """Monday = 0 from a name ("mon", "Tues", "Monday") or an ISO number (1 = Monday … 7 = Sunday)."""
    word = text.strip().lower()
    if word.isdigit() and 1 <= int(word) <= 7:
        return int(word) - 1
    for number, name in enumerate(DAY_NAMES):
        if len(word) >= 3 and name.startswith(word):
            return number
    raise ValueError(f"weekday {text!r} is not a day of the week (mon … sun, or 1 … 7)")


@cache
def zone(name: str) -> ZoneInfo:
    """The zone of a valid name, loaded once: ``ZoneInfo`` itself keeps only the last few
    strongly, and a tick goes through many zones."""
    return ZoneInfo(name)


@cache
def iana_zones() -> frozenset[str]:
    """Every time zone a subscriber may have: the IANA names this system knows, without the
    files that are not zones of a place ("localtime" is this host's, "posixrules" and
    "Factory" are placeholders, "right/" and "posix/" are other copies of the database)."""
    return frozenset(
        name
        for name in available_timezones()
        if name not in ("localtime", "posixrules", "Factory") and not name.startswith(("right/", "posix/"))
    )


@cache
def common_zones() -> tuple[str, ...]:
    """The time zones forms offer (``timezones.txt`` beside it), west to east."""
    lines = (Path(__file__).resolve().parent / "timezones.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def local_time(moment: datetime, timezone: str) -> str:
    """A due time as a reader reads it: "Monday 7 December 2026, 08:00 (Europe/London)"."""
    local = moment.astimezone(zone(timezone))
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M} ({timezone})"
