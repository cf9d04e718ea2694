"""Digests and the delivery ledger on PostgreSQL. Deliveries are claimed in batches (FOR
UPDATE SKIP LOCKED), so any number of workers send one digest together, each message once;
a dead worker's claims expire and another takes them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from digest.store import feedback
from digest.store.base import when
from digest.store.feedback import refusals
from digest.store.ledger import PENDING_SELECT, bracketed, digest_of, pending_of
from digest.store.postgres.base import PgBase
from digest.store.records import DigestRecord, DigestSummary, PendingDelivery


class PgLedgerArea(PgBase):
    def last_delivered(self, subscriber_ids: Sequence[int] | None = None) -> dict[int, datetime]:
        only = "" if subscriber_ids is None else " AND l.subscriber_id = ANY(%s)"
        return {
            int(row["subscriber_id"]): when(row["until"])
            for row in self._rows(
                "SELECT l.subscriber_id, max(d.until) AS until FROM deliveries l"
                f" JOIN digests d ON d.id = l.digest_id WHERE l.status = 'sent'{only}"
                " GROUP BY l.subscriber_id",
                [] if subscriber_ids is None else [list(subscriber_ids)],
            )
        }

    def subscribers_with_pending(self) -> set[int]:
        return {
            int(row["subscriber_id"])
            for row in self._rows("SELECT DISTINCT subscriber_id FROM deliveries WHERE status = 'pending'")
        }

    def create_digest(
        self, digest_id: str, until: datetime, deliveries: Iterable[tuple[int, datetime, str | None]]
    ) -> int:
        rows = list(deliveries)
        with self._write() as conn:
            now = when(conn.execute("SELECT now() AS now").fetchone()["now"])  # type: ignore[index]
            conn.execute(
                "INSERT INTO digests (id, created, until, status) VALUES (%s, %s, %s, 'sending')",
                (digest_id, now, until),
            )
            # One statement for the lot; a period the subscriber already has is left out.
            count = conn.execute(
                "INSERT INTO deliveries (digest_id, subscriber_id, since, period, status, updated)"
                " SELECT %s, u.sid, u.since, u.period, 'pending', %s"
                " FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[]) AS u(sid, since, period)"
                " ON CONFLICT DO NOTHING",
                (digest_id, now, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
            ).rowcount
            if not count:
                conn.execute("DELETE FROM digests WHERE id = %s", [digest_id])
            self._changed(conn)
        return count

    def digest(self, digest_id: str) -> DigestRecord | None:
        row = self._row("SELECT * FROM digests WHERE id = %s", [digest_id])
        return digest_of(row) if row else None

    def digests(self, limit: int = 50) -> list[DigestSummary]:
        return [
            DigestSummary(
                digest_of(row), row["sent"] or 0, row["failed"] or 0, row["pending"] or 0, row["bounced"] or 0
            )
            for row in self._rows(
                "SELECT d.*, count(*) FILTER (WHERE l.status = 'sent') AS sent,"
                " count(*) FILTER (WHERE l.status = 'failed') AS failed,"
                " count(*) FILTER (WHERE l.status = 'pending') AS pending,"
                " count(*) FILTER (WHERE l.feedback IN ('hard', 'soft')) AS bounced"
                " FROM digests d LEFT JOIN deliveries l ON l.digest_id = d.id"
                " GROUP BY d.id ORDER BY d.created DESC LIMIT %s",
                [limit],
            )
        ]

    def unfinished_digests(self) -> list[DigestRecord]:
        return [
            digest_of(row)
            for row in self._rows("SELECT * FROM digests WHERE status = 'sending' ORDER BY created")
        ]

    def pending_deliveries(self, digest_id: str) -> list[PendingDelivery]:
        return [
            pending_of(row)
            for row in self._rows(
                f"{PENDING_SELECT} WHERE l.digest_id = %s AND l.status = 'pending' ORDER BY l.subscriber_id",
                [digest_id],
            )
        ]

    def claim_deliveries(
        self, digest_id: str, holder: str, *, limit: int, seconds: float, tried_before: datetime
    ) -> list[PendingDelivery]:
        """As the SQLite store's, by the server's clock (workers' clocks may disagree); rows
        another worker is claiming at this moment are skipped (SKIP LOCKED), not waited for."""
        with self._write() as conn:
            rows = conn.execute(
                "WITH free AS (SELECT subscriber_id FROM deliveries WHERE digest_id = %s"
                " AND status = 'pending' AND (claimed_until IS NULL OR claimed_until <= now())"
                " AND updated < %s ORDER BY subscriber_id LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE deliveries l SET claimed_by = %s, claimed_until = now() + make_interval(secs => %s)"
                " FROM free WHERE l.digest_id = %s AND l.subscriber_id = free.subscriber_id"
                " RETURNING l.subscriber_id",
                (digest_id, tried_before, limit, holder, seconds, digest_id),
            ).fetchall()
            claimed = [row["subscriber_id"] for row in rows]
            found = conn.execute(
                f"{PENDING_SELECT} WHERE l.digest_id = %s AND l.subscriber_id = ANY(%s)"
                " ORDER BY l.subscriber_id",
                [digest_id, claimed],
            ).fetchall()
        return [pending_of(row) for row in found]

    def renew_claims(self, digest_id: str, holder: str, seconds: float) -> set[int]:
        with self._write() as conn:
            return {
                int(row["subscriber_id"])
                for row in conn.execute(
                    "UPDATE deliveries SET claimed_until = now() + make_interval(secs => %s)"
                    " WHERE digest_id = %s AND status = 'pending' AND claimed_by = %s"
                    " AND claimed_until > now() RETURNING subscriber_id",
                    (seconds, digest_id, holder),
                )
            }

    def claim_holders(self, digest_id: str, holder: str) -> set[str]:
        return {
            row["claimed_by"]
            for row in self._rows(
                "SELECT DISTINCT claimed_by FROM deliveries WHERE digest_id = %s AND status = 'pending'"
                " AND claimed_by IS NOT NULL AND claimed_by != %s AND claimed_until > now()",
                (digest_id, holder),
            )
        }

    def ledger_now(self) -> datetime:
        """Now, by the server's clock: the one claims and the ledger are written with."""
        return when(self._value("SELECT now()"))

    def release_deliveries(self, digest_id: str, holder: str) -> None:
        """Give up ``holder``'s claims on this digest's pending deliveries (those a server
        deferred): the next run, by any worker, takes them."""
        with self._write() as conn:
            conn.execute(
                "UPDATE deliveries SET claimed_by = NULL, claimed_until = NULL"
                " WHERE digest_id = %s AND claimed_by = %s AND status = 'pending'",
                (digest_id, holder),
            )

    def record_delivery(
        self,
        digest_id: str,
        subscriber_id: int,
        status: str,
        *,
        message_id: str | None = None,
        reply: str | None = None,
        strike: bool = False,
        strikes_to_bounce: int = 0,
    ) -> None:
        # One round trip (a pipeline: BEGIN, the updates, COMMIT sent together); this is
        # written once per message, while the mail server waits for the next one.
        with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
            conn.execute(
                "UPDATE deliveries SET status = %s, message_id = coalesce(%s, message_id), reply = %s,"
                " attempts = attempts + 1, updated = now(), claimed_by = NULL, claimed_until = NULL"
                " WHERE digest_id = %s AND subscriber_id = %s",
                (status, message_id, reply, digest_id, subscriber_id),
            )
            if status == "sent":
                conn.execute(
                    "UPDATE subscribers SET bounces = 0 WHERE id = %s AND bounces != 0", (subscriber_id,)
                )
            elif strike:
                conn.execute("UPDATE subscribers SET bounces = bounces + 1 WHERE id = %s", (subscriber_id,))
                if strikes_to_bounce:
                    conn.execute(
                        "UPDATE subscribers SET status = 'bounced', pending_since = NULL, status_reason = %s"
                        " WHERE id = %s AND bounces >= %s AND status IN ('active', 'pending')",
                        (refusals(strikes_to_bounce, reply), subscriber_id, strikes_to_bounce),
                    )

    def finish_digest(self, digest_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE digests SET status = 'done' WHERE id = %s"
                " AND NOT EXISTS (SELECT 1 FROM deliveries WHERE digest_id = %s AND status = 'pending')",
                (digest_id, digest_id),
            )

    def delivery_counts(self, digest_id: str) -> dict[str, int]:
        return {
            row["status"]: row["n"]
            for row in self._rows(
                "SELECT status, count(*) AS n FROM deliveries WHERE digest_id = %s GROUP BY status",
                [digest_id],
            )
        }

    # --- what came back after a delivery (bounces, complaints) ----------------------------

    def sent_digests(self, subscriber_id: int, limit: int = 50) -> list[str]:
        rows = self._rows(
            "SELECT digest_id FROM deliveries WHERE subscriber_id = %s AND status = 'sent'"
            " ORDER BY updated DESC LIMIT %s",
            [subscriber_id, limit],
        )
        return [row["digest_id"] for row in rows]

    def delivery_of_message(self, message_id: str) -> tuple[str, int] | None:
        row = self._row(
            "SELECT digest_id, subscriber_id FROM deliveries WHERE message_id = %s", [bracketed(message_id)]
        )
        return (row["digest_id"], int(row["subscriber_id"])) if row else None

    def record_feedback(
        self,
        subscriber_id: int,
        digest_id: str | None,
        kind: str,
        detail: str,
        *,
        soft_limit: int,
        now: datetime,
    ) -> str:
        with self._write() as conn:
            # The subscriber's row locked first: two reports about one subscriber (two
            # processes, two webhooks) are judged one after the other.
            found = conn.execute(
                "SELECT status FROM subscribers WHERE id = %s FOR UPDATE", [subscriber_id]
            ).fetchone()
            recent = conn.execute(
                # Since the subscriber was last (re)activated: a fresh start forgets old bounces.
                "SELECT digest_id, feedback FROM deliveries WHERE subscriber_id = %s AND status = 'sent'"
                " AND updated >= (SELECT coalesce(confirmed, created) FROM subscribers WHERE id = %s)"
                " ORDER BY updated DESC LIMIT %s",
                [subscriber_id, subscriber_id, max(soft_limit, 1)],
            ).fetchall()
            earlier, stale = None, False
            if digest_id is not None:
                row = conn.execute(
                    "SELECT l.feedback, l.updated < coalesce(s.confirmed, s.created) AS stale"
                    " FROM deliveries l JOIN subscribers s ON s.id = l.subscriber_id"
                    " WHERE l.digest_id = %s AND l.subscriber_id = %s",
                    [digest_id, subscriber_id],
                ).fetchone()
                digest_id, earlier = (digest_id, row["feedback"]) if row else (None, None)
                stale = bool(row and row["stale"])
            verdict = feedback.judge(
                kind,
                detail,
                status=found["status"] if found else None,
                digest_id=digest_id,
                earlier=earlier,
                recent=[(r["digest_id"], r["feedback"]) for r in recent],
                soft_limit=soft_limit,
                stale=stale,
            )
            if verdict.mark is not None:
                conn.execute(
                    "UPDATE deliveries SET feedback = %s, feedback_detail = %s, feedback_at = %s"
                    " WHERE digest_id = %s AND subscriber_id = %s",
                    [kind, detail, now, verdict.mark, subscriber_id],
                )
            if verdict.status is not None:
                conn.execute(
                    "UPDATE subscribers SET status = %s, status_reason = %s, pending_since = NULL,"
                    " unsubscribed = CASE WHEN %s = 'unsubscribed' THEN %s ELSE unsubscribed END"
                    " WHERE id = %s",
                    [verdict.status, verdict.reason, verdict.status, now, subscriber_id],
                )
            return verdict.outcome

    def feedback_counts(self, digest_id: str) -> dict[str, int]:
        rows = self._rows(
            "SELECT feedback, count(*) AS n FROM deliveries WHERE digest_id = %s AND feedback IS NOT NULL"
            " GROUP BY feedback",
            [digest_id],
        )
        return {row["feedback"]: int(row["n"]) for row in rows}
