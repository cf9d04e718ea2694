"""Subscribers and the sign-up queue on PostgreSQL: the shared statements
(``digest/store/subscribers.py``; addresses compare without regard to case, as SQLite's
NOCASE column does), and claims on sign-ups that skip rows another worker is claiming."""

from __future__ import annotations

from datetime import datetime

from digest.store.postgres.base import PgBase
from digest.store.records import Signup
from digest.store.subscribers import SubscribersArea, signup_of


class PgSubscribersArea(SubscribersArea, PgBase):
    def claim_signups(self, now: datetime, *, until: datetime, limit: int) -> list[Signup]:
        """Sign-ups due at ``now``, held until ``until``; rows another worker is claiming are
        skipped (SKIP LOCKED), so no sign-up is handled twice."""
        with self._write() as conn:
            rows = conn.execute(
                "WITH due AS (SELECT id, next_try FROM signups WHERE next_try <= ? ORDER BY id LIMIT ?"
                " FOR UPDATE SKIP LOCKED) UPDATE signups s SET next_try = ? FROM due WHERE s.id = due.id"
                " RETURNING s.*, due.next_try AS due",
                (now, limit, until),
            ).fetchall()
        # The claimed rows as they were (next_try: when they were due), as SQLite's store gives.
        return sorted((signup_of({**row, "next_try": row["due"]}) for row in rows), key=lambda s: s.id)
