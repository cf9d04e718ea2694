"""Per-item work of a big batch on every core.

``fork_map(fn, items)`` is ``[fn(item) for item in items]``, the same results in the same
order, computed by forked copies of this process when that pays. ``fork_start`` starts the
same work in children and returns at once, so this process can do something else meanwhile
(store what the children read, say) and then help with what is left; ``fork_call`` starts
one call in a child.

The batch is cut into chunks, whose numbers wait in a pipe: every process takes the next
number when it is free (a read of two bytes from a pipe is one, whole, read), so a process
slowed down by other work, or by a busy core, simply does fewer chunks; nobody waits for a
share fixed in advance. Forking shares everything already loaded (the gazetteer, the
compiled vocabularies) at no cost, and only the results travel back (pickled, through a
pipe). It is used only where it is safe and worth it: more than one core, a batch of at
least ``MIN_ITEMS``, and a process with no other thread (a fork copies only the calling
thread, so a lock another thread held would stay locked in the child for ever: the service,
with its scheduler threads, works in one process). ``fn`` must be pure: a child's side
effects are lost with the child. A child that fails in any way (killed, out of memory)
costs only time: the chunks it took are done again here, where an exception ``fn`` raises
surfaces as it would without forking. Without forking, started work is done here when its
result is asked for.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MIN_ITEMS = 400  # below this, forking costs more than it saves
MAX_WORKERS = 4
CHUNKS_PER_WORKER = 16  # small enough to even out, big enough to cost little to hand out


def workers() -> int:
    """How many processes a batch may be shared among (1: no forking)."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


class Forked(Generic[R]):
    """Work started in ``children`` forked children (none: it waits to be done here), which
    ``result()`` finishes here and gathers. Use it as a context manager: leaving the block
    early (an exception, Ctrl-C) kills the children whose result nobody will ask for."""

    def __init__(self, chunks: Sequence[Callable[[], list[R]]], *, children: int):
        self._chunks = list(chunks)
        self._children: list[tuple[int, int]] = []
        self._queue: int | None = None
        if children < 1:
            return
        self._queue = _queue(len(self._chunks))
        try:
            for _ in range(children):
                self._children.append(_spawn(self._queue, self._chunks))
        except BaseException:
            self.close()
            raise

    def result(self) -> list[R]:
        """Every chunk's results, in order: the chunks no child took are done here."""
        done = _work(self._queue, self._chunks) if self._queue is not None else {}
        while self._children:
            pid, reader = self._children.pop(0)
            done.update(_collect(pid, reader))
        self.close()
        # A chunk nobody brought back was never forked out, or taken by a child that failed.
        return [item for index, chunk in enumerate(self._chunks) for item in done.get(index) or chunk()]

    def close(self) -> None:
        for pid, reader in self._children:
            os.close(reader)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self._children = []
        if self._queue is not None:
            os.close(self._queue)
            self._queue = None

    def __enter__(self) -> Forked[R]:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def forks(count: int, *, min_items: int = MIN_ITEMS) -> bool:
    """Whether a batch of ``count`` items would be shared with forked children."""
    return count >= min_items and workers() > 1


def fork_map(fn: Callable[[T], R], items: Sequence[T], *, min_items: int = MIN_ITEMS) -> list[R]:
    """``[fn(item) for item in items]``, shared with forked children for a big batch."""
    with fork_start(fn, items, min_items=min_items) as forked:
        return forked.result()  # this process works alongside them


def fork_start(fn: Callable[[T], R], items: Sequence[T], *, min_items: int = MIN_ITEMS) -> Forked[R]:
    """``fork_map``'s work started in children (one per other core) when forking is worth
    it; ``result()`` does what they have not taken yet here, and gives the list."""
    count = workers() if forks(len(items), min_items=min_items) else 1
    return Forked(_chunks(fn, items, count), children=count - 1)


def fork_call(fn: Callable[[], R], *, worth: bool = True) -> Forked[R]:
    """``fn()`` started in a child when another core is free and it is ``worth`` it;
    ``result()`` gives ``[fn()]`` (working it out here if no child has started on it)."""
    return Forked([lambda: [fn()]], children=1 if worth and workers() > 1 else 0)


def _chunks(fn: Callable[[T], R], items: Sequence[T], count: int) -> list[Callable[[], list[R]]]:
    size = max(1, -(-len(items) // (count * CHUNKS_PER_WORKER))) if count > 1 else max(1, len(items))
    return [_chunk(fn, items[start : start + size]) for start in range(0, len(items), size)]


def _chunk(fn: Callable[[T], R], part: Sequence[T]) -> Callable[[], list[R]]:
    return lambda: [fn(item) for item in part]


def _queue(count: int) -> int:
    """A pipe holding the chunk numbers ``0..count-1``, two bytes each; its read end."""
    reader, writer = os.pipe()
    try:
        os.write(writer, b"".join(index.to_bytes(2, "big") for index in range(count)))
    finally:
        os.close(writer)  # so that an empty queue reads as the end, not as a wait
    return reader


def _work(queue: int, chunks: Sequence[Callable[[], list[R]]]) -> dict[int, list[R]]:
    """Take chunk numbers from the queue until it is empty, doing each."""
    done: dict[int, list[R]] = {}
    while len(token := os.read(queue, 2)) == 2:
        index = int.from_bytes(token, "big")
        done[index] = chunks[index]()
    return done


def _spawn(queue: int, chunks: Sequence[Callable[[], list[R]]]) -> tuple[int, int]:
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, and leave without running any cleanup of ours
        status = 1
        # No collection in a child: one would write to every object it scans, copying the
        # shared heap page by page; the child is short-lived, and its exit frees what it leaves.
        gc.disable()
        try:
            os.close(reader)
            # Pickled whole before writing: a pipe holds little, and the parent reads only once
            # it has no chunk left to do, so pickling into the pipe would wait for it.
            data = pickle.dumps(_work(queue, chunks), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(writer, "wb") as out:
                out.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(writer)
    return pid, reader


def _collect(pid: int, reader: int) -> dict[int, list[R]]:
    """What a child did, by chunk number: nothing if it failed."""
    try:
        with os.fdopen(reader, "rb") as source:
            data = source.read()
    finally:
        _, status = os.waitpid(pid, 0)
    if status != 0:
        return {}
    try:
        # Written by our own child into a pipe only it and we hold: not outside data.
        done: dict[int, list[R]] = pickle.loads(data)  # noqa: S301
    except Exception:  # a garbled answer is a failed child: its chunks are done again
        return {}
    return done
