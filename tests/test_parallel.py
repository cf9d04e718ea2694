"""fork_map, fork_start, fork_call: the same results as without forking, in order, shared by
whoever is free, whatever happens to a child."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from digest.common import parallel

from .helpers import wait_for, within

PARENT = os.getpid()
MEETING: Path | None = None  # where the processes sharing a batch meet (see meet); set per test
MEET = 3  # how many of them


@pytest.fixture
def three_cores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The split does not depend on the machine: three processes even on one core.
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    # fork_map forks only while this process has one thread: an earlier test's leftover would
    # make every batch stay here, and these tests say so rather than wait for it.
    assert threading.active_count() == 1, [t.name for t in threading.enumerate()]
    monkeypatch.setattr(sys.modules[__name__], "MEETING", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "MEET", 3)


def meet() -> None:
    """Hold the first item each process takes until ``MEET`` processes have taken one (a
    minute at most), and count every item done: every process gets a share however slowly
    a loaded machine starts the children, with no sleep to hope it long enough. (Should
    one never come, the work goes on after the minute and the test's count of processes
    says what happened.)"""
    assert MEETING is not None, "the three_cores fixture sets MEETING"
    mark = MEETING / f"took-{os.getpid()}"
    if not mark.exists():
        mark.touch()
        meeting = MEETING
        within(lambda: len(list(meeting.glob("took-*"))) >= MEET, 60, every=0.002)
    with (MEETING / f"done-{os.getpid()}").open("ab") as done:
        done.write(b".")


def items_done() -> int:
    assert MEETING is not None
    return sum(path.stat().st_size for path in MEETING.glob("done-*"))


def square_and_where(n: int) -> tuple[int, int]:
    return n * n, os.getpid()


def shared_square_and_where(n: int) -> tuple[int, int]:
    meet()
    return square_and_where(n)


def test_a_big_batch_is_shared_and_comes_back_in_order(three_cores: None) -> None:
    items = list(range(1000))
    results = parallel.fork_map(shared_square_and_where, items, min_items=10)
    assert [value for value, _ in results] == [n * n for n in items]
    pids = {pid for _, pid in results}
    assert PARENT in pids and len(pids) == 3


def test_a_small_batch_stays_here(three_cores: None) -> None:
    results = parallel.fork_map(square_and_where, list(range(5)), min_items=10)
    assert {pid for _, pid in results} == {PARENT}


def test_no_fork_while_another_thread_runs(three_cores: None) -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert parallel.workers() == 1
        results = parallel.fork_map(square_and_where, list(range(100)), min_items=10)
    finally:
        stop.set()
        other.join()
    assert {pid for _, pid in results} == {PARENT}


def dies_in_a_child(n: int) -> tuple[int, int]:
    meet()  # the children take some of it
    if os.getpid() != PARENT:
        os._exit(3)  # as if killed: no answer, a failed status
    return n + 1, os.getpid()


def test_a_failed_childs_share_is_done_again_here(three_cores: None) -> None:
    items = list(range(300))
    results = parallel.fork_map(dies_in_a_child, items, min_items=10)
    assert results == [(n + 1, PARENT) for n in items]


def unpicklable_in_a_child(n: int) -> object:
    meet()  # the children take some of it
    if os.getpid() != PARENT:
        return lambda: n  # cannot travel back through the pipe
    return n


def test_an_answer_that_cannot_travel_is_a_failed_child(three_cores: None) -> None:
    assert parallel.fork_map(unpicklable_in_a_child, list(range(60)), min_items=10) == list(range(60))


def fails_on_seven(n: int) -> int:
    if n == 7:
        raise ValueError("seven")
    return n


def test_an_exception_surfaces_as_without_forking(three_cores: None) -> None:
    with pytest.raises(ValueError, match="seven"):
        parallel.fork_map(fails_on_seven, list(range(60)), min_items=10)  # 7 comes early
    with pytest.raises(ValueError, match="seven"):
        parallel.fork_map(fails_on_seven, list(range(-50, 10)), min_items=10)  # late
    # No child is left behind, running or unreaped.
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_started_work_runs_in_children_while_this_process_goes_on(
    three_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "MEET", 2)  # the two children
    items = list(range(900))
    with parallel.fork_start(shared_square_and_where, items, min_items=10) as started:
        wait_for(lambda: items_done() == len(items), "every item done", 60, every=0.01)  # busy elsewhere
        results = started.result()
    assert [value for value, _ in results] == [n * n for n in items]
    pids = {pid for _, pid in results}
    assert PARENT not in pids and len(pids) == 2


def test_what_the_children_have_not_taken_is_done_here(three_cores: None) -> None:
    items = list(range(900))
    with parallel.fork_start(shared_square_and_where, items, min_items=10) as started:
        results = started.result()  # at once: this process takes its part of what is left
    assert [value for value, _ in results] == [n * n for n in items]
    pids = {pid for _, pid in results}
    assert PARENT in pids and len(pids) == 3


def test_without_forking_started_work_is_done_when_asked_for(three_cores: None) -> None:
    done: list[int] = []

    def note(n: int) -> int:
        done.append(n)
        return n

    started = parallel.fork_start(note, list(range(5)), min_items=10)
    assert done == []
    assert started.result() == [0, 1, 2, 3, 4] == done


def test_one_call_in_a_child(three_cores: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "MEET", 1)  # nobody to wait for
    with parallel.fork_call(lambda: shared_square_and_where(12)) as call:
        wait_for(lambda: items_done() == 1, "the child has taken the call", 60, every=0.01)
        [(value, pid)] = call.result()
    assert value == 144 and pid != PARENT
    with parallel.fork_call(lambda: square_and_where(12), worth=False) as call:
        assert call.result() == [(144, PARENT)]
    with parallel.fork_call(lambda: dies_in_a_child(4)) as call:
        wait_for(lambda: items_done() == 2, "the child took it, and is dying or dead", 60, every=0.01)
        assert call.result() == [(5, PARENT)]  # the failed child's call, done again here


def test_leaving_early_stops_the_children(three_cores: None) -> None:
    started_at = time.monotonic()
    with pytest.raises(KeyError), parallel.fork_start(time.sleep, [60.0] * 30, min_items=10):
        raise KeyError("gone")
    assert time.monotonic() - started_at < 10
    with pytest.raises(ChildProcessError):  # none is left running or unreaped
        os.waitpid(-1, os.WNOHANG)
