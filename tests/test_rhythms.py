"""Each subscriber's own rhythm, over simulated weeks: daily, weekly and monthly subscribers in
three time zones, a real SMTP sink, the clock moved by `digest send --at` (and the same
library call the command makes), articles arriving all along. Each subscriber gets exactly
the digests their cadence implies, each covering exactly what was first seen since their
previous one: none twice, none missed, through DST changes, restarts, a clock that jumps
back, a gap in the ticks, and a change of cadence in mid-week."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.common.dates import from_iso, to_iso
from digest.common.models import Article
from digest.common.rhythms import Rhythm, due_times, last_due, next_due, period_of, previous_due
from digest.config import Settings
from digest.mail.send import send_all
from digest.store import SourceSpec, Store, SubscriberChange, open_store
from tests import clock

from .helpers import article, run, settings_for, smtp_section, write_config
from .servers import SmtpSink

RHYTHMS = {
    "ann": Rhythm("daily", "America/New_York", 2),  # 02:00 does not exist on spring-forward day
    "bea": Rhythm("daily", "America/New_York", 1),  # 01:00 happens twice on autumn-back day
    "cat": Rhythm("daily", "Europe/London", 1),  # both, in London
    "dan": Rhythm("weekly", "Europe/London", 8, weekday=6),
    "eve": Rhythm("weekly", "Asia/Tokyo", 9, weekday=0),
    "fay": Rhythm("monthly", "America/New_York", 6),
    "gus": Rhythm("monthly", "Asia/Tokyo", 0),
}
ARTICLE_EVERY = timedelta(hours=3)


@dataclass
class Simulation:
    settings: Settings
    config: Path
    folder: Path
    store: Store
    smtp: SmtpSink
    start: datetime
    clock: datetime
    articles: list[datetime]
    shim: Path  # moves a command's clock (tests/clock.py)
    since: float = 0.0  # time.monotonic() when ``clock`` was last set

    def advance(self, to: datetime) -> None:
        """Articles first seen every three hours up to ``to`` (the sources never sleep)."""
        batch = []
        moment = self.articles[-1] + ARTICLE_EVERY if self.articles else self.start
        while moment <= to:
            n = len(self.articles)
            batch.append(_wire_story(n, moment))
            self.articles.append(moment)
            moment += ARTICLE_EVERY
        for story in batch:
            self.store.save_articles("wire", [story], now=story.first_seen)
        self.clock, self.since = to, time.monotonic()

    def now(self) -> datetime:
        """The simulated moment, ticking on in real time while the code at it runs (claims
        and the ledger tell earlier from later)."""
        return self.clock + timedelta(seconds=time.monotonic() - self.since)

    def send(self, at: datetime) -> None:
        """`digest send --at` as the library call the command makes (fast, in this process)."""
        self.advance(at)
        asyncio.run(send_all(self.store, self.settings, now=at))

    def send_in_a_new_process(self, at: datetime) -> None:
        """The command itself, in a process whose clock says ``at`` too (tests/clock.py)."""
        self.advance(at)
        real = time.time() - int(os.environ.get("TEST_CLOCK_OFFSET", "0"))
        moved = clock.moved(self.shim, round(at.timestamp() - real))
        done = run("--config", str(self.config), "send", "--at", to_iso(at), cwd=self.folder, env=moved)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr

    def ledger(self) -> dict[str, list[tuple[datetime, datetime, str]]]:
        """Each subscriber's sent deliveries: (since, until, period), oldest first."""
        with sqlite3.connect(self.settings.database.path) as db:
            rows = db.execute(
                "SELECT s.email, l.since, d.until, l.period, l.status FROM deliveries l"
                " JOIN digests d ON d.id = l.digest_id JOIN subscribers s ON s.id = l.subscriber_id"
                " ORDER BY d.until"
            ).fetchall()
        db.close()
        found: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
        for email, since, until, period, status in rows:
            assert status == "sent", (email, period, status)
            found[email.split("@")[0]].append((from_iso(since), from_iso(until), period))
        return found

    def mail(self) -> dict[str, list[int]]:
        """Each subscriber's messages: the article count each subject announces."""
        found: dict[str, list[int]] = defaultdict(list)
        for recipients, message in self.smtp.messages:
            count = re.search(r"(\d+) new articles?", str(message["Subject"]))
            assert count, message["Subject"]
            for rcpt in recipients:
                found[rcpt.split("@")[0]].append(int(count.group(1)))
        return found


def _wire_story(n: int, first_seen: datetime) -> Article:
    return article(
        f"w{n}", first_seen, source="wire", title=f"Wire story number {n}", url=f"https://wire.example/{n}",
        summary_html=f"<p>Story {n}.</p>", summary_text=f"Story {n}.", published=None, content_hash=f"h{n}",
    )  # fmt: skip


@pytest.fixture
def simulation(tmp_path: Path, smtp: SmtpSink, request: pytest.FixtureRequest, shim: Path) -> Simulation:
    start: datetime = request.param
    body = smtp_section(smtp.port, timeout="5s")
    config = write_config(tmp_path, body)
    settings = settings_for(tmp_path, body)
    # The store's clock is the simulation's: a digest ends at the moment it is sent as of.
    simulated: list[Simulation] = []
    store = open_store(settings.database.path, clock=lambda: simulated[0].now() if simulated else start)
    store.sync_sources([SourceSpec("wire", "https://wire.example/feed", "feed")])
    store.upsert_subscribers(
        [
            SubscriberChange(f"{name}@example.org", status="active", rhythm=rhythm, created=start)
            for name, rhythm in RHYTHMS.items()
        ]
    )
    # They joined at ``start``: their first digests fall due at their first due times after it.
    store.set_next_due(
        [
            (s.id, next(due_times(RHYTHMS[s.email.split("@")[0]], start, start + timedelta(days=32))))
            for s in store.subscribers()
        ]
    )
    simulated.append(Simulation(settings, config, tmp_path, store, smtp, start, start, [], shim))
    return simulated[0]


def _expected_periods(rhythm: Rhythm, ticks: list[datetime], start: datetime) -> list[str]:
    """The periods a subscriber is owed: at each tick, the latest due time since the tick
    before (several due times in one gap are one digest: the latest period)."""
    owed, previous = [], start
    for tick in ticks:
        if any(True for _ in due_times(rhythm, previous, tick)):
            owed.append(period_of(rhythm, last_due(rhythm, tick)))
        previous = tick
    return owed


def _check(sim: Simulation, ticks: list[datetime], rhythms: dict[str, Rhythm]) -> None:
    ledger, mail = sim.ledger(), sim.mail()
    for name, rhythm in rhythms.items():
        delivered = ledger[name]
        periods = [period for _, _, period in delivered]
        assert periods == _expected_periods(rhythm, ticks, sim.start), name
        assert len(set(periods)) == len(periods), name  # none twice
        # The windows tile: the first starts one period before its due time, each next one
        # where the one before ended; and each says how many articles came in it.
        first_since, first_until, _ = delivered[0]
        assert first_since == previous_due(rhythm, last_due(rhythm, first_until)), name
        for (_, until, _), (since, _, _) in itertools.pairwise(delivered):
            assert since == until, name
        assert mail[name] == [
            sum(1 for seen in sim.articles if since <= seen < until) for since, until, _ in delivered
        ], name


@pytest.mark.parametrize(
    "simulation",
    [datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 10, 15, tzinfo=UTC)],
    ids=["spring-forward", "autumn-back"],
    indirect=True,
)
def test_thirty_five_days_of_rhythms_across_three_time_zones(simulation: Simulation) -> None:
    sim = simulation
    ticks: list[datetime] = []
    for hour in range(1, 35 * 24 + 1):
        at = sim.start + timedelta(hours=hour)
        if timedelta(days=20) < at - sim.start <= timedelta(days=23):
            continue  # the service was down for three days: one catch-up digest each, not three
        if timedelta(days=9) < at - sim.start <= timedelta(days=10):
            sim.send_in_a_new_process(at)  # a day of restarts: a new process each hour
        else:
            sim.send(at)
        ticks.append(at)
        if hour == 15 * 24:
            before = len(sim.smtp.messages)
            sim.send(at - timedelta(days=2))  # the clock jumps back two days: nothing is due
            sim.send(at)  # and forward again: nothing new is due either
            assert len(sim.smtp.messages) == before
    _check(sim, ticks, RHYTHMS)
    ledger = sim.ledger()
    # The DST days: one digest each, at the due instant fold=0 gives.
    if sim.start.month == 3:
        assert ("daily:2027-03-14@America/New_York", datetime(2027, 3, 14, 7, tzinfo=UTC)) in {
            (p, u) for _, u, p in ledger["ann"]
        }
        assert ("daily:2027-03-28@Europe/London", datetime(2027, 3, 28, 1, tzinfo=UTC)) in {
            (p, u) for _, u, p in ledger["cat"]
        }
    else:
        assert ("daily:2027-11-07@America/New_York", datetime(2027, 11, 7, 5, tzinfo=UTC)) in {
            (p, u) for _, u, p in ledger["bea"]
        }
        assert ("daily:2027-10-31@Europe/London", datetime(2027, 10, 31, 0, tzinfo=UTC)) in {
            (p, u) for _, u, p in ledger["cat"]
        }
    # Monthly: the 1st, in their own zone (Tokyo's midnight is the day before in UTC).
    assert [p for _, _, p in ledger["gus"]] == [
        f"monthly:{sim.start.year}-{sim.start.month + m:02d}@Asia/Tokyo" for m in (1, 2)
    ][: len(ledger["gus"])]
    assert len(sim.smtp.messages) == sum(len(v) for v in ledger.values())


@pytest.mark.parametrize("simulation", [datetime(2027, 1, 4, tzinfo=UTC)], indirect=True)
def test_changing_cadence_in_mid_week_leaves_no_gap_and_no_duplicate(simulation: Simulation) -> None:
    sim = simulation
    weekly, daily = Rhythm("weekly", "Europe/London", 8), Rhythm("daily", "Europe/London", 8)
    dan = sim.store.subscriber(email="dan@example.org")
    assert dan is not None
    sim.store.set_preferences(dan.id, [], [], rhythm=weekly, now=sim.start)  # Mondays at 08:00
    changes = {
        datetime(2027, 1, 13, 12, tzinfo=UTC): daily,  # Wednesday: daily from Thursday
        datetime(2027, 1, 16, 7, tzinfo=UTC): weekly,  # Saturday before 08:00: weekly again
        datetime(2027, 1, 18, 8, 30, tzinfo=UTC): daily,  # Monday, after that day's digest
    }
    for hour in range(1, 21 * 24 + 1):
        at = sim.start + timedelta(hours=hour)
        for when, rhythm in changes.items():
            if at - timedelta(hours=1) < when <= at:
                sim.advance(when)
                sim.store.set_preferences(
                    dan.id, [], [], rhythm=rhythm, now=when
                )  # as the preferences page does
        sim.send(at)
    periods = [(p, u) for _, u, p in sim.ledger()["dan"]]
    assert periods[:7] == [
        ("weekly:2027-01-04@Europe/London", datetime(2027, 1, 4, 8, tzinfo=UTC)),
        ("weekly:2027-01-11@Europe/London", datetime(2027, 1, 11, 8, tzinfo=UTC)),
        (
            "daily:2027-01-14@Europe/London",
            datetime(2027, 1, 14, 8, tzinfo=UTC),
        ),  # no second Wednesday digest
        ("daily:2027-01-15@Europe/London", datetime(2027, 1, 15, 8, tzinfo=UTC)),
        (
            "weekly:2027-01-18@Europe/London",
            datetime(2027, 1, 18, 8, tzinfo=UTC),
        ),  # none on Saturday or Sunday
        ("daily:2027-01-19@Europe/London", datetime(2027, 1, 19, 8, tzinfo=UTC)),  # none again on Monday
        ("daily:2027-01-20@Europe/London", datetime(2027, 1, 20, 8, tzinfo=UTC)),
    ]
    windows = sim.ledger()["dan"]
    for (_, until, _), (since, _, _) in itertools.pairwise(windows):
        assert since == until  # no gap, no overlap
    assert sim.mail()["dan"] == [sum(1 for t in sim.articles if s <= t < u) for s, u, _ in windows]


def test_a_clock_that_ran_ahead_or_a_zone_that_left_silences_nobody(tmp_path: Path) -> None:
    from digest.mail.planner import Planner

    settings = settings_for(tmp_path, "")
    now = datetime(2027, 2, 1, 12, tzinfo=UTC)
    # The store's clock is the tick's moment (planned as of a moment ahead of the store's
    # clock, a digest records nothing ahead: that is `send --at`, tested in test_mail_cli).
    with open_store(settings.database.path, clock=lambda: now) as store:
        daily = Rhythm("daily", "Europe/London", 8)
        store.upsert_subscribers(
            [
                SubscriberChange(f"{n}@example.org", status="active", rhythm=daily, created=now)
                for n in ("ann", "bob")
            ]
        )
        ann, bob = (store.subscriber(email=f"{n}@example.org") for n in ("ann", "bob"))
        assert ann and bob
        # A tick while the clock was 30 days fast left ann due a month ahead.
        store.set_next_due([(ann.id, now + timedelta(days=30)), (bob.id, now - timedelta(minutes=1))])
        with sqlite3.connect(settings.database.path) as db:  # bob's zone left the system's database
            db.execute("UPDATE subscribers SET timezone = 'Gone/Zone' WHERE id = ?", [bob.id])
        db.close()
        Planner(store, settings).create(now)  # no error for everyone because of bob
        ann, bob = (store.subscriber(email=f"{n}@example.org") for n in ("ann", "bob"))
        assert ann is not None and ann.next_due == datetime(2027, 2, 2, 8, tzinfo=UTC)  # tomorrow again
        assert bob is not None and bob.rhythm is None and bob.next_due is None  # the site's schedule now
        assert [s.email for s in store.due_subscribers(now + timedelta(days=1))] == ["ann@example.org"]


def test_confirming_and_saving_the_same_rhythm_again_keep_the_rhythm_in_step(tmp_path: Path) -> None:
    from digest.subscribers.lifecycle import RhythmDefaults, add, confirm, export_csv, import_csv

    with open_store(tmp_path / "d.db") as store:
        ann = add(store, "ann@example.org", rhythm={"cadence": "daily", "hour": "8"})  # pending
        overdue = datetime.now(UTC) - timedelta(days=3)
        store.set_next_due([(ann.id, overdue)])  # signed up days ago, confirming only now
        assert confirm(store, ann.id)
        ann = store.subscriber(email="ann@example.org")  # type: ignore[assignment]
        assert ann is not None and ann.next_due is not None and ann.next_due > datetime.now(UTC)
        # Re-adding or re-importing what she has changes nothing, not even when she is due.
        store.set_next_due([(ann.id, overdue)])
        add(store, "ann@example.org", rhythm={"cadence": "daily"}, confirmed=True)
        import_csv(export_csv(store), store, [], [], defaults=RhythmDefaults())
        assert store.subscriber(email="ann@example.org").next_due == overdue  # type: ignore[union-attr]
        add(store, "ann@example.org", rhythm={"hour": "9"})  # a change: due afresh
        assert store.subscriber(email="ann@example.org").next_due > datetime.now(UTC)  # type: ignore[operator,union-attr]


@pytest.mark.parametrize("simulation", [datetime(2027, 1, 4, tzinfo=UTC)], indirect=True)
def test_a_newcomer_whose_first_due_time_passed_while_down_misses_nothing(simulation: Simulation) -> None:
    """A daily reader confirmed on Monday morning, the service down until Thursday: their
    first digest covers one day before their first due time (Tuesday 07:00), as if the
    service had run, not only the day before Thursday's."""
    sim = simulation
    rhythm = Rhythm("daily", "Europe/London", 7)
    confirmed = sim.start + timedelta(hours=9)
    sim.advance(confirmed)
    sim.store.upsert_subscribers(
        [
            SubscriberChange(
                "new@example.org", status="active", rhythm=rhythm, created=confirmed, confirmed=confirmed
            )
        ]
    )
    new = sim.store.subscriber(email="new@example.org")
    assert new is not None
    first = next_due(rhythm, confirmed)
    sim.store.set_next_due([(new.id, first)])
    sim.send(sim.start + timedelta(days=3, hours=12))  # Thursday noon: the first send since
    [(since, until, _)] = sim.ledger()["new"]
    assert since == previous_due(rhythm, first) == datetime(2027, 1, 4, 7, tzinfo=UTC)
    assert sim.mail()["new"] == [sum(1 for t in sim.articles if since <= t < until)]
