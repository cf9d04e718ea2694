"""The digest's schedule: the cron trigger the config describes, when it was last due, and
when it is next due (kept in the database, so that ``digest status`` need not load the
scheduler, which costs more than the rest of that command).

Due instants are worked out in UTC, one after another, each strictly later than the one
before, and never more than ``MAX_STEPS`` of them for one question: a window holding an
autumn night's repeated hour cannot loop. A local wall time is due once: in the repeated
hour only its first pass fires (cron's own rule), so "30 1 * * *" in New York sends one
digest on that night, not two an hour apart. Blocking (APScheduler's arithmetic is not
free): the service asks from a thread, never on its event loop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from digest.common.dates import utcnow
from digest.common.errors import ConfigError

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

    from digest.config import Settings
    from digest.store import SettingsStore

NEXT_DUE = "digest_next_due"
_SIX_FIELDS = ("second", "minute", "hour", "day", "month", "day_of_week")  # a crontab's, seconds first


def cron_trigger(settings: Settings) -> CronTrigger:
    """The digest's trigger: five cron fields (or six, seconds first) in the configured zone."""
    from apscheduler.triggers.cron import CronTrigger

    expression, zone = settings.schedule.digest_cron, ZoneInfo(settings.schedule.timezone)
    fields = expression.split()
    try:
        if len(fields) == 6:
            trigger = CronTrigger(**dict(zip(_SIX_FIELDS, fields, strict=True)), timezone=zone)
        else:
            trigger = CronTrigger.from_crontab(expression, timezone=zone)
    except ValueError as exc:
        raise ConfigError(f"{settings.origin}: schedule.digest_cron: {expression!r}: {exc}") from exc
    if trigger.get_next_fire_time(None, utcnow()) is None:
        raise ConfigError(
            f"{settings.origin}: schedule.digest_cron: {expression!r} never fires"
            " (a date that does not exist, such as 31 February)"
        )
    return trigger


MAX_STEPS = 200_000  # due instants one question may walk through (a 2-second cron: 4.6 days)
_TICK = timedelta(microseconds=1)


def _after(trigger: CronTrigger, moment: datetime) -> datetime | None:
    """The first due instant strictly after ``moment`` (UTC), the repeated hour's second
    pass of a wall time left out."""
    cursor = moment.astimezone(UTC) + _TICK  # in UTC: a local time's fold would be lost
    for _ in range(3):  # a repeat is followed by a fresh instant within two more asks
        found: datetime | None = trigger.get_next_fire_time(None, cursor)
        if found is None:
            return None
        due = found.astimezone(UTC)
        if not _repeat(trigger, due):
            return due
        cursor = due + _TICK
    return None


def _repeat(trigger: CronTrigger, due: datetime) -> bool:
    """Whether ``due`` is the second pass of a wall time the trigger was already due at,
    in an autumn night's repeated hour."""
    local = due.astimezone(trigger.timezone)
    first = local.replace(fold=0).astimezone(UTC)
    if first == due:
        return False
    again: datetime | None = trigger.get_next_fire_time(None, first - _TICK)
    # Compared in UTC: PEP 495 makes an ambiguous local time unequal to every other zone's.
    return again is not None and again.astimezone(UTC) == first


def due_times(trigger: CronTrigger, after: datetime, until: datetime) -> Iterator[datetime]:
    """The due instants in ``(after, until]``, oldest first (UTC); ValueError past
    ``MAX_STEPS`` of them (a window no question of digest's needs)."""
    cursor = after
    for _ in range(MAX_STEPS):
        due = _after(trigger, cursor)
        if due is None or due > until:
            return
        yield due
        cursor = due
    raise ValueError(f"more than {MAX_STEPS} due times between {after} and {until}")


def last_due(trigger: CronTrigger, now: datetime, since: datetime) -> datetime | None:
    """The latest time the trigger was due in ``(since, now]``, if any."""
    times = list(due_times(trigger, since, now))
    return times[-1] if times else None


def next_due(store: SettingsStore, settings: Settings, now: datetime) -> datetime | None:
    """When the digest is next due after ``now``. For one schedule that answer holds from
    the moment it is worked out until the time it names (nothing is due in between), so it
    is kept with both and reused within them."""
    schedule = [settings.schedule.digest_cron, settings.schedule.timezone]
    try:
        kept = json.loads(store.get_setting(NEXT_DUE) or "{}")
        since, due = datetime.fromisoformat(kept["since"]), datetime.fromisoformat(kept["due"])
        if kept["schedule"] == schedule and since <= now < due:
            return due
    except (KeyError, TypeError, ValueError):
        pass  # none kept yet, or unreadable: worked out again
    found = _after(cron_trigger(settings), now)
    if found is not None:
        store.put_setting(
            NEXT_DUE, json.dumps({"schedule": schedule, "since": now.isoformat(), "due": found.isoformat()})
        )
    return found
