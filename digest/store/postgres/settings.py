"""Rate counts on PostgreSQL: workers counting one key queue on an advisory lock (the rest
of the area is shared: ``digest/store/settings.py``)."""

from __future__ import annotations

from datetime import datetime

from digest.store.postgres.base import PgBase
from digest.store.settings import SettingsArea


class PgSettingsArea(SettingsArea, PgBase):
    def allow_hit(self, key: str, *, limit: int, window: float, now: datetime) -> bool:
        """As the SQLite store's; workers counting the same key queue on an advisory lock
        for it, so two cannot both take the last allowed request."""
        with self._write() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", [f"rate:{key}"])
            return self._count_hit(tx, key, limit=limit, window=window, now=now)
