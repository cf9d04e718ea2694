"""Copying a whole database from one store to another (``digest db copy``, and the
PostgreSQL store's backup into a SQLite file): every table, ids and times as they are, in
one transaction on the target, which must be empty."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from digest.common.errors import StoreError
from digest.store.contract import TransferStore
from digest.store.tables import Row


def copy_database(source: TransferStore, target: TransferStore) -> dict[str, int]:
    """Copy everything in ``source`` into the empty ``target``; rows copied per table."""
    counts: Counter[str] = Counter()

    def counted(table: str, rows: Iterable[Row]) -> Iterator[Row]:
        for row in rows:
            counts[table] += 1
            yield row

    target.load((table, counted(table, rows)) for table, rows in source.dump())
    return dict(counts)


def copy_to_file(source: TransferStore, path: Path) -> dict[str, int]:
    """Copy ``source`` into a new SQLite file at ``path`` (which must not exist)."""
    from digest.store.sqlite import SqliteStore

    if path.exists():
        raise StoreError(f"{path}: already exists; choose a new file for the backup")
    with SqliteStore.open(path) as target:
        return copy_database(source, target)
