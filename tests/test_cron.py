"""The site's schedule (a cron in a time zone) over daylight saving changes: each local wall
time due once, worked out in UTC, never an unbounded loop; and `digest run` started on an
autumn night's repeated hour, with its clock moved there, answers and sends once."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from apscheduler.triggers.cron import CronTrigger

from digest.mail.schedule import due_times, last_due
from digest.store import open_store
from tests import clock

from .helpers import SEEDS_SOURCE, add_subscribers, free_port, run, smtp_section, within, write_config
from .servers import Running, SmtpSink


def _cron(expression: str, zone: str) -> CronTrigger:
    return CronTrigger.from_crontab(expression, timezone=ZoneInfo(zone))


def _local(times: list[datetime], zone: str) -> list[str]:
    return [t.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M%z") for t in times]


@pytest.mark.parametrize(
    ("expression", "zone", "night", "expected"),
    [
        # New York falls back at 02:00 EDT on 1 November 2026: 01:30 happens twice.
        ("30 1 * * *", "America/New_York", datetime(2026, 11, 1, 12, tzinfo=UTC),
         ["10-31 01:30-0400", "11-01 01:30-0400"]),
        # London falls back at 02:00 BST on 25 October 2026: Sunday 01:00 happens twice.
        ("0 1 * * sun", "Europe/London", datetime(2026, 10, 25, 12, tzinfo=UTC), ["10-25 01:00+0100"]),
        # Sydney falls back at 03:00 AEDT on 5 April 2026: 02:15 happens twice.
        ("15 2 * * *", "Australia/Sydney", datetime(2026, 4, 4, 22, tzinfo=UTC),
         ["04-04 02:15+1100", "04-05 02:15+1100"]),
        # Lord Howe falls back half an hour at 02:00 on 5 April 2026: 01:45 happens twice.
        ("45 1 * * *", "Australia/Lord_Howe", datetime(2026, 4, 4, 22, tzinfo=UTC),
         ["04-04 01:45+1100", "04-05 01:45+1100"]),
        # Every half hour: the repeated hour's second pass is left out, the rest go on.
        ("*/30 * * * *", "America/New_York", datetime(2026, 11, 1, 7, 10, tzinfo=UTC),
         ["11-01 00:30-0400", "11-01 01:00-0400", "11-01 01:30-0400", "11-01 02:00-0500"]),
    ],
)  # fmt: skip
def test_each_local_wall_time_is_due_once_over_a_fall_back_night(
    expression: str, zone: str, night: datetime, expected: list[str]
) -> None:
    trigger = _cron(expression, zone)
    window = night - timedelta(hours=36 if "*/30" not in expression else 3), night
    started = time.monotonic()
    found = list(due_times(trigger, *window))
    assert _local(found, zone)[-len(expected) :] == expected
    assert found == sorted(set(found))  # strictly later each time
    assert last_due(trigger, window[1], window[0]) == found[-1]
    assert time.monotonic() - started < 5  # returned at all (it looped for ever)


def test_a_spring_forward_night_still_has_its_due_time() -> None:
    trigger = _cron("30 2 * * *", "America/New_York")  # 02:30 does not exist on 14 March 2027
    found = due_times(trigger, datetime(2027, 3, 13, tzinfo=UTC), datetime(2027, 3, 16, tzinfo=UTC))
    assert _local(list(found), "America/New_York") == [
        "03-13 02:30-0500",
        "03-14 03:30-0400",
        "03-15 02:30-0400",
    ]


def test_no_question_walks_an_unbounded_number_of_due_times() -> None:
    every_second = CronTrigger(second="*", timezone=ZoneInfo("UTC"))
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="more than"):
        last_due(every_second, now, now - timedelta(days=10))


def test_digest_run_started_after_the_repeated_hour_answers_and_sends_once(
    tmp_path: Path, smtp: SmtpSink, shim: Path
) -> None:
    """New York's 1 November 2026, 06:35 UTC (01:35 EST): the site's 01:30 fell due at 05:30
    UTC (EDT) and its wall time came round again at 06:30 UTC. A service starting now,
    having sent the day before's, catches up with that night's digest once, and answers
    /healthz; it used to loop for ever working out when it was last due."""
    real = time.time() - int(os.environ.get("TEST_CLOCK_OFFSET", "0"))
    moved = clock.moved(shim, round(datetime(2026, 11, 1, 6, 35, tzinfo=UTC).timestamp() - real))
    web = free_port()
    config = write_config(
        tmp_path,
        f'[schedule]\ndigest_cron = "30 1 * * *"\ntimezone = "America/New_York"\npull_every = "1d"\n'
        f"[web]\nport = {web}\n{smtp_section(smtp.port)}{SEEDS_SOURCE}",
    )
    assert run("--config", str(config), "pull", cwd=tmp_path, env=moved).returncode == 0
    add_subscribers(config, "ann@example.org", env=moved)
    with open_store(tmp_path / "test.db") as store:  # the day before's digest was sent
        store.put_setting("digest_last_due", "2026-10-31T05:30:00+00:00")
    service = Running(config, tmp_path, env=moved)
    try:
        assert within(lambda: service.count("catch-up") == 1, 30), service.lines
        assert httpx.get(f"http://127.0.0.1:{web}/healthz", timeout=5).status_code == 200
        assert within(lambda: len(smtp.messages) >= 1, 30), service.lines
        assert service.count("catch-up", "2026-11-01T05:30:00") == 1  # the first 01:30, once
        time.sleep(1)
    finally:
        code, _ = service.stop()
    assert code == 0 and smtp.recipients() == ["ann@example.org"]
