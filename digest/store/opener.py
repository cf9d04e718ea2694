"""Which store a database location names: a ``postgresql://`` URL (psycopg loads only then),
else a SQLite file. The one place that knows every backend."""

from __future__ import annotations

from pathlib import Path

from digest.common import extras
from digest.common.dates import Clock, utcnow
from digest.config import DatabaseSettings
from digest.store.contract import Store
from digest.store.sqlite import SqliteStore


def open_store(
    target: Path | str,
    *,
    password: str | None = None,
    shared: bool = False,
    timeout: float | None = None,
    clock: Clock = utcnow,
) -> Store:
    """The store for ``target``: a ``postgresql://`` URL (``password``, if given, for it),
    else a SQLite file. ``shared``: a SQLite connection usable from several threads (a
    PostgreSQL store always is); ``clock``: the store's, which ``store.now()`` reads (the
    system's by default; a test's fixed or stepped moment)."""
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        extras.require("postgres", "a postgresql:// database URL")
        from digest.store.postgres import PostgresStore  # psycopg loads only when needed

        return PostgresStore.open(target, password=password or None, timeout=timeout, clock=clock)
    return SqliteStore.open(target, shared=shared, timeout=timeout, clock=clock)


def open_database(database: DatabaseSettings, *, shared: bool = False, timeout: float | None = None) -> Store:
    """The store of the configured ``[database]`` (brought up to date)."""
    return open_store(database.target, password=database.password or None, shared=shared, timeout=timeout)
