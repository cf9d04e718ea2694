"""A subscriber's choices on the subscribe and preferences forms: read from a sent form and
checked (:class:`~digest.common.errors.SubscriberError` says what is wrong), and filled in
again for a form to show (a form's own choices after a mistake, a subscriber's saved ones,
a new form's defaults). Pure, but for :func:`next_delivery`, which reads the store.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from digest.common import query
from digest.common.errors import SubscriberError
from digest.common.rhythms import Rhythm, common_zones, local_time, next_due, weekday_name
from digest.config import Settings
from digest.mail import schedule
from digest.publish.site import Site
from digest.store import SettingsStore, Subscriber
from digest.subscribers import lifecycle

WEEKDAYS = tuple(weekday_name(n) for n in range(7))  # the form's values, Monday first


def offered_zones(settings: Settings) -> tuple[str, ...]:
    """The time zones the forms offer: the common ones, and the site's own first if it is
    not one of them."""
    zones = list(common_zones())
    if settings.schedule.timezone not in zones:
        zones.insert(0, settings.schedule.timezone)
    return tuple(zones)


def zones_for(zones: tuple[str, ...], subscriber: Subscriber | None) -> tuple[str, ...]:
    """The zones a form offers: ``zones``, and the reader's own wherever it came from (the
    CLI or a CSV may set any IANA zone), so that saving keeps it."""
    own = subscriber.rhythm.timezone if subscriber and subscriber.rhythm else None
    return zones if own is None or own in zones else (own, *zones)


def slugs_from(site: Site, form: FormData) -> tuple[list[str], list[str]]:
    """The regions and themes ticked on a form, checked (SubscriberError otherwise)."""
    regions = lifecycle.check_slugs(
        [str(r) for r in form.getlist("region")], list(site.names["regions"]), "region"
    )
    themes = lifecycle.check_slugs(
        [str(t) for t in form.getlist("theme")], list(site.names["themes"]), "theme"
    )
    return regions, themes


def rhythm_from(
    settings: Settings, zones: tuple[str, ...], form: FormData, existing: Subscriber | None
) -> Rhythm | None:
    """The rhythm chosen on a form (SubscriberError otherwise). None: as it was, or for a new
    subscriber the site's default (a form without a cadence, or its "with everyone" choice,
    keeps a subscriber on the site's schedule)."""
    defaults = lifecycle.defaults_for(settings)
    if "cadence" not in form:
        return defaults.rhythm({}, existing)
    given = {k: str(form.get(k, ""))[:64] for k in lifecycle.RHYTHM_FIELDS}
    if given["timezone"] and given["timezone"] not in zones_for(zones, existing):
        raise SubscriberError("choose a time zone from the list")
    return defaults.rhythm(given, existing) if given["cadence"] else None


def topics_from(form: FormData) -> tuple[str, ...] | None:
    """The topics written on a form (None: the form has no topic field)."""
    if "topic" not in form:
        return None
    return lifecycle.chosen_topics(str(t)[: query.MAX_LENGTH + 1] for t in form.getlist("topic")[:20])


def chosen_on(form: FormData) -> dict[str, Any]:
    """A form's choices, to show it again with what was chosen."""
    hour, weekday = str(form.get("hour", "")), str(form.get("weekday", ""))
    return {
        "regions": form.getlist("region"),
        "themes": form.getlist("theme"),
        "cadence": str(form.get("cadence", "")),
        "timezone": str(form.get("timezone", "")),
        "hour": int(hour) if hour.isascii() and hour.isdigit() and len(hour) <= 2 else 8,
        "weekday": WEEKDAYS.index(weekday) if weekday in WEEKDAYS else 0,
        "topics": [str(t) for t in form.getlist("topic")][: query.MAX_TOPICS],
    }


def chosen_by(settings: Settings, subscriber: Subscriber) -> dict[str, Any]:
    """A subscriber's saved choices, to show on their preferences page."""
    defaults = lifecycle.defaults_for(settings)
    rhythm = subscriber.rhythm or Rhythm(defaults.cadence or "weekly", defaults.timezone)
    return {
        "regions": list(subscriber.regions),
        "themes": list(subscriber.themes),
        "cadence": subscriber.rhythm.cadence if subscriber.rhythm else "",
        "timezone": rhythm.timezone,
        "hour": rhythm.hour,
        "weekday": rhythm.weekday,
        "topics": list(subscriber.topics),
    }


def blank(settings: Settings) -> dict[str, Any]:
    """A new subscribe form's choices: the site's defaults."""
    defaults = lifecycle.defaults_for(settings)
    return {
        "regions": [], "themes": [], "cadence": defaults.cadence or "weekly",
        "timezone": defaults.timezone, "hour": 8, "weekday": 0, "topics": [],
    }  # fmt: skip


def next_delivery(settings: Settings, store: SettingsStore, subscriber: Subscriber) -> str | None:
    """When the subscriber's next digest is due, in their own time."""
    now = store.now()
    if subscriber.rhythm is None:
        due = schedule.next_due(store, settings, now)
        return local_time(due, settings.schedule.timezone) if due else None
    due = subscriber.next_due if subscriber.next_due and subscriber.next_due > now else None
    return local_time(due or next_due(subscriber.rhythm, now), subscriber.rhythm.timezone)
