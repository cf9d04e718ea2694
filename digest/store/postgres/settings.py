"""Settings and leases on PostgreSQL (the same meaning as the SQLite area)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from digest.store.postgres.base import PgBase


class PgSettingsArea(PgBase):
    def setting(self, key: str, default: Callable[[], str]) -> str:
        found = self._value("SELECT value FROM settings WHERE key = %s", [key])
        if found is not None:
            return str(found)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (key, default()),
            )
            row = conn.execute("SELECT value FROM settings WHERE key = %s", [key]).fetchone()
            assert row is not None
            return str(row["value"])

    def get_setting(self, key: str) -> str | None:
        found = self._value("SELECT value FROM settings WHERE key = %s", [key])
        return None if found is None else str(found)

    def put_setting(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (%s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
            self._changed(conn)

    def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take (or renew) the lease ``name``; one statement, so two workers cannot both win."""
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO leases (name, holder, expires)"
                " VALUES (%s, %s, now() + make_interval(secs => %s))"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires"
                " WHERE leases.holder = excluded.holder OR leases.expires <= now() RETURNING name",
                (name, holder, seconds),
            ).fetchone()
        return row is not None

    def allow_hit(self, key: str, *, limit: int, window: float, now: datetime) -> bool:
        """As the SQLite store's; workers counting the same key queue on an advisory lock
        for it, so two cannot both take the last allowed request."""
        with self._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"rate:{key}"])
            conn.execute("DELETE FROM rate_hits WHERE at < %s", [now - timedelta(days=1)])
            found = conn.execute(
                "SELECT count(*) AS n FROM rate_hits WHERE key = %s AND at > %s",
                (key, now - timedelta(seconds=window)),
            ).fetchone()
            if found is not None and found["n"] >= limit:
                return False
            conn.execute("INSERT INTO rate_hits (key, at) VALUES (%s, %s)", (key, now))
            return True

    def lease_holder(self, name: str) -> str | None:
        found = self._value("SELECT holder FROM leases WHERE name = %s AND expires > now()", [name])
        return None if found is None else str(found)

    def release_lease(self, name: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE name = %s AND holder = %s", (name, holder))
