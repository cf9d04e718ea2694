"""Each subscriber's rhythm: due instants for daily, weekly and monthly digests at a local
hour, through DST changes in both directions, as properties over many zones and days."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.common.rhythms import Rhythm, due_times, last_due, next_due, period_of, previous_due

ZONES = ["UTC", "Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "Pacific/Auckland"]
# Any rhythm in those zones, and any moment over three years: what the properties range over.
RHYTHMS = {
    "cadence": st.sampled_from(["daily", "weekly", "monthly"]),
    "zone": st.sampled_from(ZONES),
    "hour": st.integers(0, 23),
    "weekday": st.integers(0, 6),
}
MOMENTS = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1))


def test_a_weekly_digest_is_due_on_mondays_at_eight_local() -> None:
    rhythm = Rhythm("weekly", "America/New_York", 8, 0)
    found = list(due_times(rhythm, datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 12, 15, tzinfo=UTC)))
    assert found == [datetime(2026, 11, 30, 13, tzinfo=UTC), datetime(2026, 12, 7, 13, tzinfo=UTC),
                     datetime(2026, 12, 14, 13, tzinfo=UTC)]  # fmt: skip


@pytest.mark.parametrize(
    ("zone", "day", "hour", "expected"),
    [
        ("Europe/London", 29, 1, datetime(2026, 3, 29, 1, tzinfo=UTC)),  # 01:00 does not exist: 02:00 BST
        ("America/New_York", 8, 2, datetime(2026, 3, 8, 7, tzinfo=UTC)),  # 02:00 does not exist: 03:00 EDT
    ],
)
def test_an_hour_skipped_by_spring_forward_is_due_once_when_the_clocks_jump(
    zone: str, day: int, hour: int, expected: datetime
) -> None:
    rhythm = Rhythm("daily", zone, hour)
    found = [d for d in due_times(rhythm, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))
             if d.astimezone(ZoneInfo(zone)).day == day]  # fmt: skip
    assert found == [expected]


@pytest.mark.parametrize(("zone", "day"), [("Europe/London", 25), ("America/New_York", 1)])
def test_an_hour_repeated_by_autumn_back_is_due_once(zone: str, day: int) -> None:
    rhythm = Rhythm("daily", zone, 1)
    month = 10 if zone == "Europe/London" else 11
    found = [d for d in due_times(rhythm, datetime(2026, month, 1, tzinfo=UTC) - timedelta(days=3),
                                  datetime(2026, month, 28, tzinfo=UTC))
             if d.astimezone(ZoneInfo(zone)).day == day and d.astimezone(ZoneInfo(zone)).month == month]  # fmt: skip
    assert len(found) == 1 and found[0].astimezone(ZoneInfo(zone)).hour == 1


@settings(max_examples=150, deadline=None)
@given(**RHYTHMS, start=MOMENTS, days=st.integers(1, 120))
def test_one_due_instant_per_local_period_ever_forward(
    cadence: str, zone: str, hour: int, weekday: int, start: datetime, days: int
) -> None:
    rhythm = Rhythm(cadence, zone, hour, weekday)
    after = start.replace(tzinfo=UTC)
    until = after + timedelta(days=days)
    found = list(due_times(rhythm, after, until))
    assert all(after < d <= until for d in found) and found == sorted(set(found))
    local = [d.astimezone(ZoneInfo(zone)) for d in found]
    periods = [(x.date() if cadence == "daily" else x.isocalendar()[:2] if cadence == "weekly" else (x.year, x.month))
               for x in local]  # fmt: skip
    assert len(periods) == len(set(periods))  # never twice in one day, week or month
    assert all(x.hour in (hour, (hour + 1) % 24) for x in local)  # the hour, or just past a gap
    if cadence == "weekly":
        assert all(x.weekday() == weekday for x in local)
    if cadence == "monthly":
        assert all(x.day == 1 for x in local)
    expected_at_least = {"daily": days - 1, "weekly": days // 7 - 1, "monthly": days // 31 - 1}[cadence]
    assert len(found) >= expected_at_least  # none missed
    if found:
        assert last_due(rhythm, found[-1] + timedelta(seconds=1)) == found[-1]


def test_bad_rhythms_are_refused() -> None:
    for bad in (dict(cadence="hourly"), dict(hour=24), dict(weekday=7), dict(timezone="Mars/Olympus"),
                dict(timezone="../../etc/passwd")):  # fmt: skip
        with pytest.raises(ValueError, match=r"hourly|24|7|not an IANA time zone"):
            Rhythm(**bad)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(**RHYTHMS, moment=MOMENTS)
def test_the_due_times_about_a_moment_are_the_ones_a_search_finds(
    cadence: str, zone: str, hour: int, weekday: int, moment: datetime
) -> None:
    rhythm = Rhythm(cadence, zone, hour, weekday)
    now = moment.replace(tzinfo=UTC)
    span = timedelta(days=40)
    searched_last = list(due_times(rhythm, now - span, now))[-1]
    searched_next = next(due_times(rhythm, now, now + span))
    assert last_due(rhythm, now) == searched_last and next_due(rhythm, now) == searched_next
    assert previous_due(rhythm, searched_last) == list(due_times(rhythm, now - 2 * span, searched_last))[-2]
    assert period_of(rhythm, searched_last) != period_of(rhythm, searched_next)


# Zones whose clocks jump at odd hours or by odd amounts: Nuuk springs forward at 23:00 on a
# Saturday, Lord Howe by half an hour, Santiago at midnight, Tehran (until 2022) at midnight.
JUMPY = ["America/Nuuk", "Australia/Lord_Howe", "America/Santiago", "America/New_York", "Europe/London"]


@pytest.mark.parametrize("zone", JUMPY)
def test_every_due_time_of_a_year_names_a_period_of_its_own(zone: str) -> None:
    """Each day's due time is that day's: at every hour, in zones whose jumps land on any
    hour, a year of daily due times gives a year of distinct period names, day after day."""
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    for hour in range(24):
        rhythm = Rhythm("daily", zone, hour)
        periods = [period_of(rhythm, due) for due in due_times(rhythm, start, end)]
        assert len(periods) == len(set(periods)), (hour, [p for p in periods if periods.count(p) > 1][:2])
        days = [datetime.fromisoformat(p.split(":")[1].split("@")[0]).date() for p in periods]
        assert all(later - earlier == timedelta(days=1) for earlier, later in itertools.pairwise(days))


def test_the_saturday_nuuk_jumps_at_23_is_saturdays_digest() -> None:
    rhythm = Rhythm("daily", "America/Nuuk", 23)
    found = list(
        due_times(rhythm, datetime(2026, 3, 27, 12, tzinfo=UTC), datetime(2026, 3, 30, 12, tzinfo=UTC))
    )
    assert [period_of(rhythm, due) for due in found] == [
        "daily:2026-03-27@America/Nuuk", "daily:2026-03-28@America/Nuuk", "daily:2026-03-29@America/Nuuk"
    ]  # fmt: skip
    # Saturday's 23:00 did not exist: its digest goes at the jump, Sunday 00:00 local.
    assert found[1] == datetime(2026, 3, 29, 1, tzinfo=UTC)


def test_a_reader_who_moves_west_keeps_the_day_their_new_zone_gives_them() -> None:
    tokyo, los_angeles = Rhythm("daily", "Asia/Tokyo", 7), Rhythm("daily", "America/Los_Angeles", 7)
    sent = period_of(tokyo, datetime(2026, 12, 2, 22, tzinfo=UTC))  # 3 December, 07:00 in Tokyo
    next_in_la = next_due(los_angeles, datetime(2026, 12, 2, 23, tzinfo=UTC))  # they move an hour later
    assert next_in_la == datetime(2026, 12, 3, 15, tzinfo=UTC)  # 3 December, 07:00 in Los Angeles
    assert period_of(los_angeles, next_in_la) != sent  # a day of its own: the ledger keeps it
