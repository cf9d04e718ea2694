"""The digest's schedule: the cron trigger the config describes, when it was last due, and
when it is next due (kept in the database, so that ``digest status`` need not load the
scheduler, which costs more than the rest of that command)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from digest.dates import utcnow
from digest.errors import ConfigError

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

    from digest.config import Settings
    from digest.store import Store

NEXT_DUE = "digest_next_due"


def cron_trigger(settings: Settings) -> CronTrigger:
    """The digest's trigger: five cron fields (or six, seconds first) in the configured zone."""
    from apscheduler.triggers.cron import CronTrigger

    expression, zone = settings.schedule.digest_cron, ZoneInfo(settings.schedule.timezone)
    fields = expression.split()
    try:
        if len(fields) == 6:
            second, minute, hour, day, month, weekday = fields
            trigger = CronTrigger(
                second=second,
                minute=minute,
                hour=hour,
                day=day,
                month=month,
                day_of_week=weekday,
                timezone=zone,
            )
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


def last_due(trigger: CronTrigger, now: datetime, since: datetime) -> datetime | None:
    """The latest time the trigger was due in ``(since, now]``, if any."""
    found, cursor = None, since + timedelta(microseconds=1)  # since itself was handled
    while True:
        due = trigger.get_next_fire_time(None, cursor)
        if due is None or due > now:
            return found
        found, cursor = due, due + timedelta(microseconds=1)


def next_due(store: Store, settings: Settings, now: datetime) -> datetime | None:
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
    found: datetime | None = cron_trigger(settings).get_next_fire_time(None, now)
    if found is not None:
        store.put_setting(
            NEXT_DUE, json.dumps({"schedule": schedule, "since": now.isoformat(), "due": found.isoformat()})
        )
    return found
