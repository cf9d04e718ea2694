"""The SQLite store: the areas combined over one connection (the embedded default)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from digest.common.dates import Clock, utcnow
from digest.common.errors import StoreError
from digest.store.articles import SqliteArticlesArea
from digest.store.base import SqliteBase, guarded
from digest.store.console import ConsoleArea
from digest.store.grouping import SqliteGroupingArea
from digest.store.ledger import SqliteLedgerArea
from digest.store.operators import OperatorsArea
from digest.store.settings import SqliteSettingsArea
from digest.store.sources import SourcesArea
from digest.store.subscribers import SqliteSubscribersArea
from digest.store.transfer import TransferArea


@guarded
class SqliteStore(
    SourcesArea,
    SqliteArticlesArea,
    SqliteGroupingArea,
    SqliteSettingsArea,
    SqliteSubscribersArea,
    SqliteLedgerArea,
    OperatorsArea,
    ConsoleArea,
    TransferArea,
    SqliteBase,
):
    """A digest database in one SQLite file."""

    networked = False

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        shared: bool = False,
        readonly: bool = False,
        timeout: float | None = None,
        clock: Clock = utcnow,
    ) -> SqliteStore:
        """Open (creating if needed) the database at ``path`` and bring its schema up to date.
        ``shared``: the connection may be used from several threads (the caller serialises);
        ``readonly``: nothing may be written (the schema must be current already);
        ``timeout``: seconds to wait for another writer (10 by default); ``clock``: the
        store's (``now()``), the system's by default."""
        conn = cls.connect(path, shared=shared, readonly=readonly, timeout=timeout)
        store = cls(conn, None if str(path) == ":memory:" else Path(path), clock)
        try:
            if not readonly:
                store.migrate()
        except StoreError as exc:
            conn.close()
            said = str(exc).removeprefix(f"{path}: ")  # the path once in the line
            raise StoreError(f"{path}: cannot open database: {said}") from exc
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"{path}: cannot open database: {exc}") from exc
        return store
