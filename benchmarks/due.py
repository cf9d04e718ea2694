"""Who is due, tick by tick, among 100,000 subscribers on rhythms of their own (issue 15:
deciding must take under 100 ms a tick, by an index, not a scan in Python).

The subscribers: daily (30%), weekly (60%) and monthly (10%), at every hour, in every time
zone the forms offer, each with a digest already sent (a ledger of 100,000 rows). Then a
simulated day of one tick a minute, as ``digest run`` makes them: each tick asks the store
who is due (``due_subscribers``: the index on (status, next_due), with the pending check),
works out their periods and windows as the planner does (``Planner.selections``, which adds
their last deliveries and the cadence arithmetic), and moves them to their next due time.

Figures per tick, medians of ``--runs`` runs of the day: the store's answer alone, and the
planner's whole decision, for quiet ticks (nobody due) and busy ones (the top of the hour,
when thousands fall due at once), with the largest; and, as the baseline the target names,
the same decision made by reading every subscriber and checking each in Python, timed at
the busiest tick. On SQLite, and on PostgreSQL when its server binaries are installed (a
throwaway server, ``tests/pgcluster.py``).

    .venv/bin/python benchmarks/due.py [--subscribers 100000] [--hours 24] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from digest.common import rhythms  # noqa: E402
from digest.config import parse_settings  # noqa: E402
from digest.mail.planner import Planner  # noqa: E402
from digest.store import Store, SubscriberChange, open_store  # noqa: E402
from digest.store.opener import open_store as open_url  # noqa: E402
from tests import pgcluster  # noqa: E402

START = datetime(2027, 3, 1, tzinfo=UTC)  # a Monday, two weeks before the DST changes


def _rhythms(count: int) -> list[rhythms.Rhythm]:
    pick = random.Random(15)
    zones = rhythms.common_zones()
    found = []
    for _ in range(count):
        roll = pick.random()
        kind = "daily" if roll < 0.3 else "weekly" if roll < 0.9 else "monthly"
        found.append(rhythms.Rhythm(kind, pick.choice(zones), pick.randrange(24), pick.randrange(7)))
    return found


def _fill(store: Store, count: int, sql: Callable[[str], None]) -> None:
    """``count`` subscribers with rhythms, each with one sent digest, due from START on."""
    rhythms = _rhythms(count)
    store.upsert_subscribers(
        [
            SubscriberChange(
                f"s{n}@example.org", status="active", rhythm=r, created=START - timedelta(days=40)
            )
            for n, r in enumerate(rhythms)
        ]
    )
    ids = [s.id for s in store.subscribers("active")]
    store.set_next_due([(sid, rhythms.next_due(r, START)) for sid, r in zip(ids, rhythms, strict=True)])
    week_ago = START - timedelta(days=7)
    store.create_digest("past", week_ago, [(sid, week_ago - timedelta(days=7), None) for sid in ids])
    sql("UPDATE deliveries SET status = 'sent'")
    sql("UPDATE digests SET status = 'done'")
    sql("CREATE TABLE due0 AS SELECT id, next_due FROM subscribers")
    sql("CREATE UNIQUE INDEX due0_id ON due0(id)")
    sql("ANALYZE")


def _day(store: Store, hours: int, settings: Any) -> dict[str, list[float]]:
    """One simulated day of ticks: the seconds each took, by kind."""
    planner = Planner(store, settings)
    times: dict[str, list[float]] = {"query quiet": [], "query busy": [], "plan quiet": [], "plan busy": []}
    counts = []
    for minute in range(hours * 60):
        now = START + timedelta(minutes=minute)
        began = time.perf_counter()
        due = store.due_subscribers(now)
        asked = time.perf_counter() - began
        began = time.perf_counter()
        _, next_due = planner.selections(now, site_schedule=False)
        planned = time.perf_counter() - began
        kind = "busy" if due else "quiet"
        times[f"query {kind}"].append(asked)
        times[f"plan {kind}"].append(planned)
        counts.append(len(due))
        if next_due:
            store.set_next_due(next_due)
    times["due per busy tick"] = [float(c) for c in counts if c]
    return times


def _scan(store: Store, now: datetime) -> tuple[float, int]:
    """The baseline: read everyone, decide in Python."""
    began = time.perf_counter()
    due = [
        s
        for s in store.subscribers("active")
        if s.rhythm is not None and s.next_due is not None and s.next_due <= now
    ]
    return time.perf_counter() - began, len(due)


def _report(name: str, runs: list[dict[str, list[float]]], scans: list[float], count: int) -> None:
    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:7.2f} ms"

    busy = statistics.median(v for run in runs for v in run["due per busy tick"])
    print(
        f"\n{name}: {count:,} subscribers, {len(runs[0]['query quiet']) + len(runs[0]['query busy'])} ticks a run"
    )
    for kind in ("query", "plan"):
        quiet = [statistics.median(r[f"{kind} quiet"]) for r in runs]
        busy_median = [statistics.median(r[f"{kind} busy"]) for r in runs]
        worst = [max(r[f"{kind} busy"]) for r in runs]
        label = "store.due_subscribers" if kind == "query" else "Planner.selections (whole decision)"
        print(
            f"  {label:38} quiet tick {ms(quiet)}   busy tick {ms(busy_median)}"
            f"   largest {ms(worst)}   (median of {len(runs)} runs)"
        )
    most = statistics.median(max(run["due per busy tick"]) for run in runs)
    print(f"  a busy tick finds a median of {busy:,.0f} due; the busiest finds {most:,.0f}")
    plan_worst = statistics.median(max(r["plan busy"]) for r in runs)
    print(
        f"  baseline, every subscriber read and checked in Python at the busiest tick: {ms(scans)}"
        f"  ({statistics.median(scans) / plan_worst:.0f}x the whole decision's largest tick)"
    )


def _measure(
    name: str, store: Store, sql: Callable[[str], None], args: argparse.Namespace, settings: Any
) -> None:
    _fill(store, args.subscribers, sql)
    runs, scans = [], []
    for _ in range(args.runs):
        sql("UPDATE subscribers SET next_due = (SELECT next_due FROM due0 WHERE due0.id = subscribers.id)")
        busiest = max(
            range(args.hours * 60),
            key=lambda m: len(store.due_subscribers(START + timedelta(minutes=m))) if m % 60 == 0 else -1,
        )
        scans.append(_scan(store, START + timedelta(minutes=busiest))[0])
        runs.append(_day(store, args.hours, settings))
    _report(name, runs, scans, args.subscribers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("sqlite", "postgresql"), default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = parse_settings("", origin="bench", base_dir=Path(folder), env={})
        if args.only in (None, "sqlite"):
            path = Path(folder) / "due.db"
            with open_store(path) as store:
                import sqlite3

                def sqlite_sql(statement: str) -> None:
                    with sqlite3.connect(path) as db:
                        db.execute(statement)
                    db.close()

                _measure("SQLite", store, sqlite_sql, args, settings)
        if args.only in (None, "postgresql"):
            found = pgcluster.binaries()
            if found is None:
                print("\nPostgreSQL: server binaries not found (make system-deps); skipped")
                return
            cluster = pgcluster.Cluster(found).start()
            try:
                url = cluster.create_database("due")
                import psycopg

                def pg_sql(statement: str) -> None:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute(statement.encode())

                with open_url(url) as store:
                    _measure("PostgreSQL", store, pg_sql, args, settings)
            finally:
                cluster.stop()


if __name__ == "__main__":
    main()
