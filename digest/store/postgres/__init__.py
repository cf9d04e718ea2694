"""The PostgreSQL store: the same contract as the SQLite one, for several workers on
several machines sharing one database (psycopg 3, a connection pool per store)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from digest.errors import StoreError
from digest.store.base import guard_class, one_line
from digest.store.postgres.articles import PgArticlesArea
from digest.store.postgres.base import describe
from digest.store.postgres.grouping import PgGroupingArea
from digest.store.postgres.ledger import PgLedgerArea
from digest.store.postgres.settings import PgSettingsArea
from digest.store.postgres.sources import PgSourcesArea
from digest.store.postgres.subscribers import PgSubscribersArea
from digest.store.postgres.transfer import PgTransferArea


class PostgresStore(
    PgSourcesArea,
    PgArticlesArea,
    PgGroupingArea,
    PgSettingsArea,
    PgSubscribersArea,
    PgLedgerArea,
    PgTransferArea,
):
    """A digest database on a PostgreSQL server."""

    networked = True

    @classmethod
    def open(
        cls,
        url: str,
        *,
        password: str | None = None,
        readonly: bool = False,
        timeout: float | None = None,
        size: int = 4,
    ) -> PostgresStore:
        """Connect (a pool of up to ``size`` connections) and bring the schema up to date.
        ``readonly``: every transaction is read-only; ``timeout``: seconds to wait for a lock."""
        where = describe(url)
        pool = cls.connect(url, password=password, readonly=readonly, timeout=timeout, size=size)
        store = cls(pool, where)
        try:
            if not readonly:
                store.migrate()
        except (StoreError, psycopg.Error) as exc:
            pool.close()
            message = one_line(str(exc))
            raise StoreError(f"{where}: cannot open database: {message}") from exc
        return store

    def backup(self, target: Path) -> None:
        """A copy of the whole database in a new SQLite file at ``target``."""
        from digest.store.copy import copy_to_file

        copy_to_file(self, target)


guard_class(PostgresStore, psycopg.Error)
