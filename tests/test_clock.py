"""The harness behind ``make test-dates`` (tests/clock.py): a moved wall clock reaches Python
processes and the PostgreSQL server alike, and sleeps, waits and the server's timeouts keep
their real pace, so the whole suite can run at any date."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests import clock, pgcluster

# Four hundred days and an hour ahead: another year, another month, another hour of the day.
AHEAD = 400 * 86400 + 3600


def real_time() -> float:
    """Now by the real clock, even when this suite itself runs under a moved one."""
    return time.time() - int(os.environ.get("TEST_CLOCK_OFFSET", "0"))


def test_a_python_process_sees_the_moved_wall_clock_and_real_sleeps(shim: Path) -> None:
    script = (
        "import datetime, threading, time\n"
        "print(datetime.datetime.now(datetime.UTC).timestamp(), time.time())\n"
        "started = time.monotonic()\n"
        "time.sleep(0.2)\n"
        "threading.Event().wait(0.2)\n"
        "print(time.monotonic() - started)\n"
    )
    before = real_time()
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=clock.moved(shim, AHEAD),
        capture_output=True,
        text=True,
        timeout=60,
    )
    after = real_time()
    assert done.returncode == 0, done.stderr
    stamps, waited = done.stdout.splitlines()
    for stamp in map(float, stamps.split()):
        assert before + AHEAD - 1 <= stamp <= after + AHEAD + 1
    assert 0.39 <= float(waited) < 10  # two real 0.2 s waits, not a day's


# Waits until a moment of the wall clock, each for half a second: C programs compute the
# moment from the moved clock, and the shim moves it back before the kernel sees it.
ABSOLUTE_WAITS = """
import ctypes, time

libc = ctypes.CDLL(None)  # the process's symbols: the shim's first


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def half_a_second_on(clock):
    now = Timespec()
    libc.clock_gettime(clock, ctypes.byref(now))
    return ctypes.byref(Timespec(now.tv_sec + (now.tv_nsec >= 500_000_000), (now.tv_nsec + 500_000_000) % 10**9))


def took(wait):
    started = time.monotonic()
    wait()
    return round(time.monotonic() - started, 3)


REALTIME, ABSTIME = 0, 1
semaphore, mutex = ctypes.create_string_buffer(64), ctypes.create_string_buffer(64)
libc.sem_init(semaphore, 0, 0)
libc.pthread_mutex_init(mutex, None)
libc.pthread_mutex_lock(mutex)  # held: a timed lock of it waits out its time
print(
    took(lambda: libc.clock_nanosleep(REALTIME, ABSTIME, half_a_second_on(REALTIME), None)),
    took(lambda: libc.sem_timedwait(semaphore, half_a_second_on(REALTIME))),
    took(lambda: libc.sem_clockwait(semaphore, REALTIME, half_a_second_on(REALTIME))),
    took(lambda: libc.pthread_mutex_timedlock(mutex, half_a_second_on(REALTIME))),
)
"""


@pytest.mark.parametrize("offset", [AHEAD, -AHEAD], ids=["ahead", "behind"])
def test_waits_until_a_moment_of_the_moved_clock_end_on_time(shim: Path, offset: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", ABSOLUTE_WAITS],
        env=clock.moved(shim, offset), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    waited = [float(seconds) for seconds in done.stdout.split()]
    # Unmoved, ahead would wait 400 days and behind not at all.
    assert len(waited) == 4 and all(0.45 <= seconds < 10 for seconds in waited), waited


def test_behind_works_as_well_as_ahead(shim: Path) -> None:
    done = subprocess.run(
        ["date", "-u", "+%s"], env=clock.moved(shim, -AHEAD), capture_output=True, text=True, timeout=60
    )
    assert abs(int(done.stdout) - (real_time() - AHEAD)) <= 2


def test_postgresql_shares_the_moved_clock_and_its_timeouts_still_fire(shim: Path) -> None:
    cluster = pgcluster.Cluster(pgcluster.required_binaries(), env=clock.moved(shim, AHEAD)).start()
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            server_now = conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
            assert server_now is not None
            assert abs(float(server_now[0]) - (real_time() + AHEAD)) <= 5
            # A timeout set by the moved clock fires on time (libfaketime's never does).
            conn.execute("SET statement_timeout = 300")
            started = time.monotonic()
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(20)")
            assert time.monotonic() - started < 10
    finally:
        cluster.stop()


def test_make_test_dates_runs_a_command_at_the_moment_given() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.clock", "2028-02-29 23:59:30", "--", "date", "-u", "+%F %T"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("clock moved to 2028-02-29 23:59:30 UTC")
    assert done.stdout.splitlines()[1].startswith("2028-02-29 23:59:3")
    bad = subprocess.run(
        [sys.executable, "-m", "tests.clock", "next tuesday", "--", "true"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "is not an ISO 8601 moment" in bad.stderr
