"""Per-item work of a big batch on every core: ``fork_map(fn, items)`` is
``[fn(item) for item in items]``, the same results in the same order, computed by forked
copies of this process when that pays.

Forking shares everything already loaded (the gazetteer, the compiled vocabularies) at no
cost, and only the results travel back (pickled, through a pipe). It is used only where
it is safe and worth it: more than one core, a batch of at least ``MIN_ITEMS``, and a process
with no other thread (a fork copies only the calling thread, so a lock another thread held
would stay locked in the child for ever: the service, with its scheduler threads, works in
one process). ``fn`` must be pure: a child's side effects are lost with the child. A child
that fails in any way (killed, out of memory) costs only time: its share is done again here,
where an exception ``fn`` raises surfaces as it would without forking.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MIN_ITEMS = 400  # below this, forking costs more than it saves
MAX_WORKERS = 4


def workers() -> int:
    """How many processes a batch may be shared among (1: no forking)."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def fork_map(fn: Callable[[T], R], items: Sequence[T], *, min_items: int = MIN_ITEMS) -> list[R]:
    """``[fn(item) for item in items]``, shared among forked children for a big batch."""
    count = workers() if len(items) >= min_items else 1
    if count == 1:
        return [fn(item) for item in items]
    size = -(-len(items) // count)
    shares = [items[start : start + size] for start in range(0, len(items), size)]
    children: list[tuple[int, int]] = []
    try:
        for share in shares[1:]:
            children.append(_spawn(fn, share))
        results = [fn(item) for item in shares[0]]  # this process takes the first share
        for share in shares[1:]:
            pid, reader = children.pop(0)
            results.extend(_collect(pid, reader, fn, share))
        return results
    finally:
        for pid, reader in children:  # left behind by an exception (or Ctrl-C) here
            os.close(reader)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _spawn(fn: Callable[[T], R], share: Sequence[T]) -> tuple[int, int]:
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, and leave without running any cleanup of ours
        status = 1
        # No collection in a child: one would write to every object it scans, copying the
        # shared heap page by page; the child is short-lived, and its exit frees what it leaves.
        gc.disable()
        try:
            os.close(reader)
            with os.fdopen(writer, "wb") as out:
                pickle.dump([fn(item) for item in share], out, protocol=pickle.HIGHEST_PROTOCOL)
            status = 0
        finally:
            os._exit(status)
    os.close(writer)
    return pid, reader


def _collect(pid: int, reader: int, fn: Callable[[T], R], share: Sequence[T]) -> list[R]:
    try:
        with os.fdopen(reader, "rb") as source:
            data = source.read()
    finally:
        _, status = os.waitpid(pid, 0)
    results: list[R] = []
    if status == 0:
        try:
            # Written by our own child into a pipe only it and we hold: not outside data.
            results = pickle.loads(data)  # noqa: S301
        except Exception:  # a garbled answer is a failed child: its share is done again
            results = []
    return results if len(results) == len(share) else [fn(item) for item in share]
