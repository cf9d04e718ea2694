"""Per-item work of a big batch on every core.

``fork_map(fn, items)`` is ``[fn(item) for item in items]``, the same results in the same
order, computed by forked copies of this process when that pays. ``fork_start`` starts the
same work in children and returns at once, so this process can do something else meanwhile
(store what the children read, say) and then help with what is left; ``fork_call`` starts
one call in a child. A ``Helper`` is one child forked before any thread starts, which works
out ``fn(arg)`` for whatever this process hands it while this process goes on (threads
fetching, this one storing): a pipeline between two cores where fork_map cannot go.

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
import struct
import threading
from collections.abc import Callable, Hashable, Sequence
from types import TracebackType
from typing import IO, Any, Generic, TypeVar

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


class Helper(Generic[T, R]):
    """``fn(arg)`` worked out in a forked child for each ``arg`` handed to :meth:`submit`,
    while this process goes on; :meth:`result` gives it back by its key. Made only where
    forking is safe and worth it (see :func:`workers`: so before any thread of this process
    starts); otherwise it holds no child and every result is None.

    None also means: never submitted, not started yet (the child is given ``IN_FLIGHT``
    jobs at a time, the newest first; one still waiting is withdrawn, since whoever asks
    is free to do it now), an ``fn`` that raised, or a child that died. The caller then works it out
    itself, where an exception surfaces as it would without the helper. Two threads of
    this process talk to the child (one hands work over, one takes results in), so that
    neither side ever waits on a full pipe; :meth:`close` ends them, and the child.
    Results are kept until taken: the caller bounds how far ahead it submits."""

    IN_FLIGHT = 2  # one to work on, one to start at once after it

    def __init__(self, fn: Callable[[T], R]) -> None:
        self._lock = threading.Condition()
        self._waiting: dict[Hashable, T] = {}  # submitted, not handed over yet (in order)
        self._started: set[Hashable] = set()  # handed over, no answer yet
        self._done: dict[Hashable, R] = {}
        self._threads: list[threading.Thread] = []
        self._pid: int | None = None
        self._alive = False
        if workers() < 2:
            return
        work_in, work_out = os.pipe()
        results_in, results_out = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(work_out)
                os.close(results_in)
                # Long-lived, unlike fork_map's children: collect, but never scan (and so
                # copy, page by page) the heap shared with the parent.
                gc.freeze()
                with os.fdopen(work_in, "rb") as inbox:
                    _serve(fn, inbox, results_out)
                status = 0
            finally:
                os._exit(status)
        os.close(work_in)
        os.close(results_out)
        self._pid, self._alive = pid, True
        self._threads = [
            threading.Thread(target=self._hand_over, args=(work_out,), name="digest-helper-out", daemon=True),
            threading.Thread(target=self._take_in, args=(results_in,), name="digest-helper-in", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: Hashable, arg: T) -> None:
        """Hand ``fn(arg)`` to the child (nothing, without one), to be taken by ``key``."""
        with self._lock:
            if self._alive:
                self._waiting[key] = arg
                self._lock.notify_all()

    def result(self, key: Hashable) -> R | None:
        """What the child made of the work submitted as ``key``, once it is done; None if it
        was never submitted, not started, or the child could not do it."""
        with self._lock:
            if key in self._waiting:
                del self._waiting[key]
                return None
            while key in self._started and self._alive:
                self._lock.wait()
            return self._done.pop(key, None)

    def close(self) -> None:
        """End the child (whatever it is doing) and the threads; drop what was not taken."""
        with self._lock:
            self._alive = False
            self._lock.notify_all()
        if self._pid is not None:
            os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            self._pid = None
        for thread in self._threads:
            thread.join()
        self._threads = []
        with self._lock:
            self._waiting.clear()
            self._started.clear()
            self._done.clear()

    def __enter__(self) -> Helper[T, R]:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _next(self) -> tuple[Hashable, T] | None:
        """The next job to hand over, when the child has room for it; None once closed."""
        with self._lock:
            while self._alive and not (self._waiting and len(self._started) < self.IN_FLIGHT):
                self._lock.wait()
            if not self._alive:
                return None
            # The newest: whoever submits takes results in order, and does the oldest
            # waiting job itself; each works from its end, so neither waits on the other.
            key = next(reversed(self._waiting))
            self._started.add(key)
            return key, self._waiting.pop(key)

    def _hand_over(self, fd: int) -> None:
        try:
            while (job := self._next()) is not None:
                try:
                    _send(fd, job)
                except (OSError, pickle.PicklingError, TypeError, AttributeError):
                    self._answered(job[0], False, None)  # cannot travel, or nobody reads
        finally:
            os.close(fd)  # the child's end of the work: it leaves

    def _take_in(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as source:
            while (answer := _receive(source)) is not None:
                self._answered(*answer)
        with self._lock:  # the child is gone: whoever waits works it out themselves
            self._alive = False
            self._lock.notify_all()

    def _answered(self, key: Hashable, ok: bool, value: R | None) -> None:
        with self._lock:
            if ok and key in self._started:
                self._done[key] = value  # type: ignore[assignment]
            self._started.discard(key)
            self._lock.notify_all()


_FRAME = struct.Struct(">I")


def _send(fd: int, value: object) -> None:
    """One value, pickled whole first (so that nothing half-sent can be left in the pipe)."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_FRAME.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _receive(source: IO[bytes]) -> Any:
    """The next value sent, None at the end (or a cut frame: a child that died)."""
    head = source.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(head)
    data = source.read(size)
    if len(data) < size:
        return None
    # Written by our own process pair into a pipe only they hold: not outside data.
    return pickle.loads(data)  # noqa: S301


def _serve(fn: Callable[[T], R], inbox: IO[bytes], outbox: int) -> None:
    """The child's loop: each job's result (or that it failed) until the parent hangs up."""
    while (job := _receive(inbox)) is not None:
        key, arg = job
        try:
            _send(outbox, (key, True, fn(arg)))
        except Exception:  # the parent works it out itself, where the exception surfaces
            _send(outbox, (key, False, None))
