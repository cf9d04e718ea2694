"""Settings kept in the database (the token secret, the schedule's state) and leases (which
of several processes does a job)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from digest.common.dates import from_iso, to_iso
from digest.store.base import SqliteBase


class SettingsArea(SqliteBase):
    def setting(self, key: str, default: Callable[[], str]) -> str:
        """A value kept in the database, created by ``default()`` on first use."""
        found = self._value("SELECT value FROM settings WHERE key = ?", [key])
        if found is not None:
            return str(found)
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (key, default()))
            return str(conn.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()[0])

    def get_setting(self, key: str) -> str | None:
        found = self._value("SELECT value FROM settings WHERE key = ?", [key])
        return None if found is None else str(found)

    def put_setting(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take (or renew) the lease ``name`` for ``seconds``; False when another holder has it."""
        now = self.now()
        with self._write() as conn:
            row = conn.execute("SELECT holder, expires FROM leases WHERE name = ?", [name]).fetchone()
            if row is not None and row[0] != holder and from_iso(row[1]) > now:
                return False
            conn.execute(
                "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires",
                (name, holder, to_iso(now + timedelta(seconds=seconds))),
            )
            return True

    def allow_hit(self, key: str, *, limit: int, window: float, now: datetime) -> bool:
        """Count a request under ``key`` unless ``limit`` were counted in the ``window``
        seconds before ``now``; False (nothing counted) when the limit is reached. Counts
        older than a day are forgotten."""
        with self._write() as conn:
            conn.execute("DELETE FROM rate_hits WHERE at < ?", [to_iso(now - timedelta(days=1))])
            recent = conn.execute(
                "SELECT count(*) FROM rate_hits WHERE key = ? AND at > ?",
                (key, to_iso(now - timedelta(seconds=window))),
            ).fetchone()[0]
            if recent >= limit:
                return False
            conn.execute("INSERT INTO rate_hits (key, at) VALUES (?, ?)", (key, to_iso(now)))
            return True

    def lease_holder(self, name: str) -> str | None:
        """Who holds the lease ``name`` now (None: nobody, or its time ran out)."""
        row = self._row("SELECT holder, expires FROM leases WHERE name = ?", [name])
        return str(row[0]) if row is not None and from_iso(row[1]) > self.now() else None

    def release_lease(self, name: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
