"""Digests and the delivery ledger on PostgreSQL: the shared statements
(``digest/store/ledger.py``), and what several workers need: deliveries claimed in batches
(FOR UPDATE SKIP LOCKED), so any number of workers send one digest together, each message
once (a dead worker's claims expire and another takes them); the server's clock; a digest's
rows written in one statement; a delivery's outcome in one round trip."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from digest.store.base import when
from digest.store.dialect import Tx
from digest.store.ledger import PENDING_SELECT, LedgerArea, pending_of
from digest.store.postgres.base import PgBase
from digest.store.records import PendingDelivery


class PgLedgerArea(LedgerArea, PgBase):
    def create_digest(
        self, digest_id: str, until: datetime, deliveries: Iterable[tuple[int, datetime, str | None]]
    ) -> int:
        rows = list(deliveries)
        with self._write() as conn:
            now = when(conn.execute("SELECT now() AS now").fetchone()["now"])  # type: ignore[index]
            conn.execute(
                "INSERT INTO digests (id, created, until, status) VALUES (?, ?, ?, 'sending')",
                (digest_id, now, until),
            )
            # One statement for the lot; a period the subscriber already has is left out.
            count = conn.execute(
                "INSERT INTO deliveries (digest_id, subscriber_id, since, period, status, updated)"
                " SELECT ?, u.sid, u.since, u.period, 'pending', ?"
                " FROM unnest(?::bigint[], ?::timestamptz[], ?::text[]) AS u(sid, since, period)"
                " ON CONFLICT DO NOTHING",
                (digest_id, now, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
            ).rowcount
            if not count:
                conn.execute("DELETE FROM digests WHERE id = ?", [digest_id])
            self._changed(conn)
        return count

    def claim_deliveries(
        self, digest_id: str, holder: str, *, limit: int, seconds: float, tried_before: datetime
    ) -> list[PendingDelivery]:
        """As the SQLite store's, by the server's clock (workers' clocks may disagree); rows
        another worker is claiming at this moment are skipped (SKIP LOCKED), not waited for."""
        with self._write() as conn:
            rows = conn.execute(
                "WITH free AS (SELECT subscriber_id FROM deliveries WHERE digest_id = ?"
                " AND status = 'pending' AND (claimed_until IS NULL OR claimed_until <= now())"
                " AND updated < ? ORDER BY subscriber_id LIMIT ? FOR UPDATE SKIP LOCKED)"
                " UPDATE deliveries l SET claimed_by = ?, claimed_until = now() + make_interval(secs => ?)"
                " FROM free WHERE l.digest_id = ? AND l.subscriber_id = free.subscriber_id"
                " RETURNING l.subscriber_id",
                (digest_id, tried_before, limit, holder, seconds, digest_id),
            ).fetchall()
            claimed = [row["subscriber_id"] for row in rows]
            found = conn.execute(
                f"{PENDING_SELECT} WHERE l.digest_id = ? AND l.subscriber_id = ANY(?)"
                " ORDER BY l.subscriber_id",
                [digest_id, claimed],
            ).fetchall()
        return [pending_of(row) for row in found]

    def ledger_now(self) -> datetime:
        """Now, by the server's clock: the one claims and the ledger are written with."""
        return when(self._value("SELECT now()"))

    @contextmanager
    def _quick_write(self) -> Iterator[Tx]:
        # One round trip (a pipeline: BEGIN, the updates, COMMIT sent together); this is
        # written once per message, while the mail server waits for the next one.
        with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
            yield conn
