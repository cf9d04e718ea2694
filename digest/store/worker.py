"""A store in a thread of its own, for code on an event loop: the loop hands it work and
awaits the answer, so a slow or locked database holds up that work, never the loop (the
web server and the scheduler share it). One thread, one connection: writes are made one at
a time, in order (as datasette's write thread does)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from digest.store.contract import Store

T = TypeVar("T")


class StoreWorker:
    """Runs functions in one worker thread, where the store ``opener`` gives is opened (on
    first use) and stays."""

    def __init__(self, opener: Callable[[], Store]) -> None:
        self._opener = opener
        self._store: Store | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-store")

    @property
    def store(self) -> Store:
        """The worker's store: only for functions that ``run`` runs (it lives in that thread)."""
        if self._store is None:
            self._store = self._opener()
        return self._store

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` in the worker thread; the caller's loop is free meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: function(*args, **kwargs))

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(store, *args)`` in the worker thread, with the worker's store."""
        return await self.run(lambda: function(self.store, *args))

    def close(self) -> None:
        """Close the store in its thread and stop the thread (after the work queued)."""

        def close_store() -> None:
            if self._store is not None:
                self._store.close()
                self._store = None

        self._thread.submit(close_store)
        self._thread.shutdown(wait=True)
