"""fork_map: the same results as a plain map, in order, whatever happens to a child."""

from __future__ import annotations

import os
import threading

import pytest

from digest import parallel

PARENT = os.getpid()


@pytest.fixture
def three_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    # The split does not depend on the machine: three processes even on one core.
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)


def square_and_where(n: int) -> tuple[int, int]:
    return n * n, os.getpid()


def test_a_big_batch_is_shared_and_comes_back_in_order(three_cores: None) -> None:
    items = list(range(1000))
    results = parallel.fork_map(square_and_where, items, min_items=10)
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
    if os.getpid() != PARENT:
        os._exit(3)  # as if killed: no answer, a failed status
    return n + 1, os.getpid()


def test_a_failed_childs_share_is_done_again_here(three_cores: None) -> None:
    items = list(range(300))
    results = parallel.fork_map(dies_in_a_child, items, min_items=10)
    assert results == [(n + 1, PARENT) for n in items]


def unpicklable_in_a_child(n: int) -> object:
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
        parallel.fork_map(fails_on_seven, list(range(60)), min_items=10)  # 7 is in our share
    with pytest.raises(ValueError, match="seven"):
        parallel.fork_map(fails_on_seven, list(range(-50, 10)), min_items=10)  # in a child's
    # No child is left behind, running or unreaped.
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
