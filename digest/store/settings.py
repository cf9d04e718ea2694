"""Settings kept in the database (the token secret, the schedule's state) and leases (which
of several processes does a job): one set of statements for both backends but
the rate counts' lock (PostgreSQL's: ``postgres/settings.py``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from digest.store.dialect import Area, Tx


class SettingsArea(Area):
    """Settings and leases, in the statements both backends share."""

    def setting(self, key: str, default: Callable[[], str]) -> str:
        """A value kept in the database, created by ``default()`` on first use."""
        found = self._value("SELECT value FROM settings WHERE key = ?", [key])
        if found is not None:
            return str(found)
        with self._write() as tx:
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, default()),
            )
            return str(tx.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()["value"])

    def get_setting(self, key: str) -> str | None:
        found = self._value("SELECT value FROM settings WHERE key = ?", [key])
        return None if found is None else str(found)

    def put_setting(self, key: str, value: str, *, shown: bool = True) -> None:
        with self._write() as tx:
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
            if shown:
                self._changed(tx)

    def release_lease(self, name: str, holder: str) -> None:
        with self._write() as tx:
            tx.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take (or renew) the lease ``name`` for ``seconds``; False when another holder has
        it. One statement, so two workers cannot both win."""
        now, later = self.dialect.now, self.dialect.later
        won = self._returning(
            f"INSERT INTO leases (name, holder, expires) VALUES (?, ?, {later})"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires"
            f" WHERE leases.holder = excluded.holder OR leases.expires <= {now} RETURNING name",
            (name, holder, seconds),
        )
        return bool(won)

    def lease_holder(self, name: str) -> str | None:
        """Who holds the lease ``name`` now (None: nobody, or its time ran out)."""
        found = self._value(
            f"SELECT holder FROM leases WHERE name = ? AND expires > {self.dialect.now}", [name]
        )
        return None if found is None else str(found)

    def count_hits(self, key: str, *, window: float, now: datetime) -> int:
        """How many hits were counted under ``key`` in the ``window`` seconds before ``now``."""
        return int(
            self._value(
                "SELECT count(*) AS n FROM rate_hits WHERE key = ? AND at > ?",
                (key, now - timedelta(seconds=window)),
            )
        )

    def _count_hit(self, tx: Tx, key: str, *, limit: int, window: float, now: datetime) -> bool:
        tx.execute("DELETE FROM rate_hits WHERE at < ?", [now - timedelta(days=1)])
        recent = tx.execute(
            "SELECT count(*) AS n FROM rate_hits WHERE key = ? AND at > ?",
            (key, now - timedelta(seconds=window)),
        ).fetchone()["n"]
        if recent >= limit:
            return False
        tx.execute("INSERT INTO rate_hits (key, at) VALUES (?, ?)", (key, now))
        return True


class SqliteSettingsArea(SettingsArea):
    """SQLite's rate counts: one writer at a time, so the count and the insert cannot race."""

    def allow_hit(self, key: str, *, limit: int, window: float, now: datetime) -> bool:
        """Count a request under ``key`` unless ``limit`` were counted in the ``window``
        seconds before ``now``; False (nothing counted) when the limit is reached. Counts
        older than a day are forgotten."""
        with self._write() as tx:
            return self._count_hit(tx, key, limit=limit, window=window, now=now)
