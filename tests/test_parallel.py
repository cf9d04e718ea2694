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


# --- Helper: one child working on what it is handed, while this process goes on ----------


def marked(n: int) -> tuple[int, int]:
    """Mark ``n`` started (a file the test sees), hold while a ``hold-n`` file exists, then
    answer; some values misbehave as a real job might."""
    assert MEETING is not None
    (MEETING / f"started-{n}").touch()
    wait_for(lambda: not (MEETING / f"hold-{n}").exists(), f"job {n} released", 60, every=0.005)
    if n == 7:
        raise ValueError("seven")
    if n == 8:
        return (lambda: n, 0)  # type: ignore[return-value]  # cannot travel back
    if n == 9:
        os._exit(3)  # as if killed
    return n * n, os.getpid()


def started(n: int) -> bool:
    assert MEETING is not None
    return (MEETING / f"started-{n}").exists()


def hold(n: int) -> None:
    assert MEETING is not None
    (MEETING / f"hold-{n}").touch()


def release(n: int) -> None:
    assert MEETING is not None
    (MEETING / f"hold-{n}").unlink()


def test_a_helper_works_in_a_child_while_this_process_goes_on(three_cores: None) -> None:
    with parallel.Helper(marked) as helper:
        hold(2)
        helper.submit("two", 2)
        wait_for(lambda: started(2), "the child has started on it", 60, every=0.005)
        assert helper.result("elsewhere") is None  # never submitted: nothing to wait for
        release(2)
        value, pid = helper.result("two") or (0, 0)
        assert value == 4 and pid not in (PARENT, 0)
        assert helper.result("two") is None  # taken once


def test_a_job_the_child_has_not_started_is_left_to_whoever_asks(three_cores: None) -> None:
    with parallel.Helper(marked) as helper:
        helper.IN_FLIGHT = 1  # one handed over at a time: what waits is plain to see
        hold(1)
        hold(4)
        helper.submit(1, 1)
        wait_for(lambda: started(1), "job 1 started", 60, every=0.005)
        for n in (2, 3, 4):
            helper.submit(n, n)
        assert helper.result(3) is None  # still waiting: taken back at once
        release(1)
        # It works from the newest: 4 next, while 2 waits, and is taken back in turn.
        wait_for(lambda: started(4), "the newest waiting job started", 60, every=0.005)
        assert helper.result(2) is None
        release(4)
        assert [(helper.result(n) or (0,))[0] for n in (1, 4)] == [1, 16]
    assert not started(2) and not started(3)  # left to whoever asked: never done twice


def test_what_the_child_cannot_answer_is_none(three_cores: None) -> None:
    with parallel.Helper(marked) as helper:
        for n in (7, 8):  # raises; an answer that cannot travel
            helper.submit(n, n)
            wait_for(lambda n=n: started(n), f"job {n} started", 60, every=0.005)
            assert helper.result(n) is None
        helper.submit(3, 3)  # the child lives on
        wait_for(lambda: started(3), "job 3 started", 60, every=0.005)
        assert (helper.result(3) or (0,))[0] == 9
        helper.submit(9, 9)  # the child dies
        wait_for(lambda: started(9), "job 9 started", 60, every=0.005)
        assert helper.result(9) is None
        helper.submit(4, 4)  # nobody to hand it to: left to whoever asks
        assert helper.result(4) is None and not started(4)


def test_without_a_second_core_or_with_a_thread_a_helper_holds_no_child(
    three_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with parallel.Helper(marked) as helper:
            helper.submit(2, 2)
            assert helper.result(2) is None
    finally:
        stop.set()
        other.join()
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    with parallel.Helper(marked) as helper:
        helper.submit(2, 2)
        assert helper.result(2) is None
    assert not started(2)
    with pytest.raises(ChildProcessError):  # no child was ever made
        os.waitpid(-1, os.WNOHANG)


def test_closing_a_helper_ends_a_busy_child_and_its_threads(three_cores: None) -> None:
    before = threading.active_count()
    started_at = time.monotonic()
    with parallel.Helper(marked) as helper:
        hold(5)
        helper.submit(5, 5)
        wait_for(lambda: started(5), "job 5 started", 60, every=0.005)
        assert threading.active_count() == before + 2
    assert time.monotonic() - started_at < 30
    assert threading.active_count() == before
    with pytest.raises(ChildProcessError):  # none is left running or unreaped
        os.waitpid(-1, os.WNOHANG)
