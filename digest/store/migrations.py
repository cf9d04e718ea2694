"""Bringing a SQLite database's schema up to date: the steps of ``schema.py``, one
sqlite-utils ``Migrations`` set, applied over the store's own connection.

Contract:

- Two records of what was applied: ``migrations`` (id, name, applied: the one every release
  before sqlite-utils wrote and read, and what ``applied_migrations()`` lists) and
  sqlite-utils' ``_sqlite_migrations`` (set "digest"). ``migrations`` decides: whenever the
  runner runs, its rows are first copied into sqlite-utils' table (and rows it lacks removed
  from there), so a database of an earlier release (any number of steps, no sqlite-utils
  table) runs none of them again, and a step whose row someone removed runs again.
- A database whose ``migrations`` has every step and which has sqlite-utils' table is up to
  date: ``SqliteBase.migrate`` tells so by one plain query, and imports this module (and
  sqlite_utils) only when there is something to do: opening a current database costs what
  it did. Run on a current database, this takes the write lock, finds nothing, and returns.
- Each step runs in a write transaction of its own, BEGIN IMMEDIATE: processes opening a
  database at once queue, and one whose turn comes finds the step applied and skips it.
  Foreign keys are off meanwhile (a table rebuild needs them off, and they cannot change
  inside a transaction); the references are checked before each commit. A step that fails
  leaves the database as it was before that step.
- Steps read the store's clock (``schema.now``), and both records are stamped by it."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from digest.common.dates import Clock, from_iso, to_iso
from digest.common.errors import StoreError
from digest.store.schema import SET_NAME, Step, clock_of, migration_set

if TYPE_CHECKING:
    from sqlite_utils import Database, Migrations


def apply_pending(conn: sqlite3.Connection, steps: Sequence[tuple[str, Step]], clock: Clock) -> list[str]:
    """Apply the ``steps`` (name, step; in order) this database has not seen, each in its own
    transaction, steps and records reading ``clock``; return the names applied. (Ask first
    whether any is due, as ``SqliteBase.migrate`` does: this imports sqlite_utils.)"""
    from sqlite_utils import Database

    db = Database(conn, recursive_triggers=False, execute_plugins=False)  # our connection as it is
    migrations = migration_set(steps)
    numbers = {name: number for number, (name, _) in enumerate(steps, start=1)}
    applied: list[str] = []
    legacy = int(conn.execute("PRAGMA legacy_alter_table").fetchone()[0])
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        while (name := _apply_next(db, migrations, numbers, clock)) is not None:
            applied.append(name)
    finally:
        conn.execute("PRAGMA foreign_keys = ON")
        # transform() turns this on for its renames and back off, unless a statement between failed.
        conn.execute(f"PRAGMA legacy_alter_table = {legacy}")
    return applied


def _apply_next(db: Database, migrations: Migrations, numbers: dict[str, int], clock: Clock) -> str | None:
    """In one write transaction: bring sqlite-utils' record in line with ``migrations``, then
    apply the first pending step and record it in both. Its name, or None if none is pending."""
    from sqlite_utils.db import AlterError, TransactionError, TransformError

    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")  # not db.atomic(): a deferred BEGIN could not wait its turn to write
    try:
        _adopt(db, migrations)
        pending = migrations.pending(db)
        name = pending[0].name if pending else None
        if name is not None:
            try:
                with clock_of(clock):
                    # Each step in a savepoint of this transaction (atomic(), inside apply()).
                    migrations.apply(db, stop_before=[later.name for later in pending[1:]])
            except (AlterError, TransactionError, TransformError, ValueError) as exc:
                raise StoreError(f"migration {name} failed: {exc}") from exc
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise StoreError(f"migration {name} would break references: {[tuple(r) for r in broken[:3]]}")
            _record(conn, migrations.migrations_table, numbers[name], name, clock())
    except BaseException:
        if conn.in_transaction:  # an error may have ended it already
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return name


def _adopt(db: Database, migrations: Migrations) -> None:
    """Make sqlite-utils' record say what ``migrations`` says (creating both if need be)."""
    conn, tracked = db.conn, migrations.migrations_table
    conn.execute(
        "CREATE TABLE IF NOT EXISTS migrations"
        " (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)"
    )
    migrations.ensure_migrations_table(db)
    conn.execute(
        f"DELETE FROM {tracked} WHERE migration_set = ? AND name NOT IN (SELECT name FROM migrations)",
        [SET_NAME],
    )
    missing = conn.execute(
        f"SELECT name, applied FROM migrations WHERE name NOT IN"
        f" (SELECT name FROM {tracked} WHERE migration_set = ?) ORDER BY id",
        [SET_NAME],
    ).fetchall()
    conn.executemany(
        f"INSERT INTO {tracked} (migration_set, name, applied_at) VALUES (?, ?, ?)",
        [(SET_NAME, name, _stamp(applied)) for name, applied in missing],
    )


def _record(conn: sqlite3.Connection, tracked: str, number: int, name: str, when: datetime) -> None:
    """Record step ``name`` in ``migrations``, and stamp sqlite-utils' row of it (written by
    apply() by the system's clock) by the store's."""
    conn.execute("INSERT INTO migrations (id, name, applied) VALUES (?, ?, ?)", (number, name, to_iso(when)))
    conn.execute(
        f"UPDATE {tracked} SET applied_at = ? WHERE migration_set = ? AND name = ?",
        (str(when.astimezone(UTC)), SET_NAME, name),
    )


def _stamp(applied: str) -> str:
    """A time from ``migrations`` in sqlite-utils' form (``str`` of an aware datetime)."""
    try:
        return str(from_iso(applied).astimezone(UTC))
    except ValueError:
        return applied
