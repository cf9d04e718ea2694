"""The PostgreSQL store: the same contract as the SQLite one, for several workers on
several machines sharing one database (psycopg 3, a connection pool per store)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool

from digest.common import redact
from digest.common.dates import Clock, utcnow
from digest.common.errors import StoreError
from digest.store.base import guard_class, one_line
from digest.store.console import ConsoleArea
from digest.store.operators import OperatorsArea
from digest.store.postgres.articles import PgArticlesArea
from digest.store.postgres.base import Conn, connect_args
from digest.store.postgres.grouping import PgGroupingArea
from digest.store.postgres.ledger import PgLedgerArea
from digest.store.postgres.settings import PgSettingsArea
from digest.store.postgres.subscribers import PgSubscribersArea
from digest.store.postgres.transfer import PgTransferArea
from digest.store.sources import SourcesArea


class PostgresStore(
    SourcesArea,
    PgArticlesArea,
    PgGroupingArea,
    PgSettingsArea,
    PgSubscribersArea,
    PgLedgerArea,
    OperatorsArea,
    ConsoleArea,
    PgTransferArea,
):
    """A digest database on a PostgreSQL server."""

    networked = True
    _key: tuple[object, ...] | None = None  # which shared pool this store holds

    @classmethod
    def open(
        cls,
        url: str,
        *,
        password: str | None = None,
        readonly: bool = False,
        timeout: float | None = None,
        size: int = 10,
        clock: Clock = utcnow,
    ) -> PostgresStore:
        """A store on the database at ``url``, brought up to date. The stores a process opens
        on one database share one pool of up to ``size`` connections (made, and the schema
        checked, when the first opens; closed with the last): a worker's threads and web
        requests do not each hold connections of their own. ``readonly``: every transaction
        is read-only; ``timeout``: seconds to wait for a lock; ``clock``: the store's
        (``now()``), the system's by default."""
        key = (url, password, readonly, timeout, os.getpid())  # a forked child makes its own
        with _POOLS_LOCK:
            shared = _POOLS.get(key)
            if shared is None:
                settings = connect_args(url, password, readonly=readonly, timeout=timeout)
                pool = cls.connect(url, settings, size)
                try:
                    if not readonly:
                        cls(pool, redact.database(url)).migrate()
                except (StoreError, psycopg.Error) as exc:
                    pool.close()
                    raise StoreError(
                        f"{redact.database(url)}: cannot open database: {one_line(str(exc))}"
                    ) from exc
                shared = _POOLS[key] = _Shared(pool)
            shared.users += 1
        store = cls(shared.pool, redact.database(url), clock)
        store._key = key
        return store

    def close(self) -> None:
        """Let go of the pool (closed when the last store of this process on it closes)."""
        key, self._key = self._key, None
        if key is None:
            return
        with _POOLS_LOCK:
            shared = _POOLS.get(key)
            if shared is not None:
                shared.users -= 1
                if shared.users <= 0:
                    del _POOLS[key]
                    shared.pool.close()

    def backup(self, target: Path) -> None:
        """A copy of the whole database in a new SQLite file at ``target``."""
        from digest.store.copy import copy_to_file

        copy_to_file(self, target)


class _Shared:
    def __init__(self, pool: ConnectionPool[Conn]) -> None:
        self.pool = pool
        self.users = 0


_POOLS: dict[tuple[object, ...], _Shared] = {}
_POOLS_LOCK = threading.Lock()

guard_class(PostgresStore, psycopg.Error)
