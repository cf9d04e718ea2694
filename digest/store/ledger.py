"""Digests and the delivery ledger: one row per (digest, subscriber), written as pending
before any SMTP work and as sent or failed right after, each in its own transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

from digest.store import feedback
from digest.store.base import Row, when
from digest.store.dialect import Area, Tx
from digest.store.feedback import refusals
from digest.store.records import DigestRecord, DigestSummary, PendingDelivery
from digest.store.subscribers import subscriber_of

PENDING_SELECT = (
    "SELECT s.*, l.since, l.period, l.attempts AS delivery_attempts"
    " FROM deliveries l JOIN subscribers s ON s.id = l.subscriber_id"
)


class LedgerArea(Area):
    """Digests and the ledger, in the statements both backends share."""

    def last_delivered(self, subscriber_ids: Sequence[int] | None = None) -> dict[int, datetime]:
        """Subscriber id → the cut-off time of the latest digest they were sent (of every
        subscriber, or of those named)."""
        sql = (
            "SELECT l.subscriber_id, max(d.until) AS until FROM deliveries l"
            " JOIN digests d ON d.id = l.digest_id WHERE l.status = 'sent'{} GROUP BY l.subscriber_id"
        )
        slices = (
            [("", [])] if subscriber_ids is None else self.dialect.in_list("l.subscriber_id", subscriber_ids)
        )
        found: dict[int, datetime] = {}
        for only, args in slices:
            rows = self._rows(sql.format(f" AND {only}" if only else ""), args)
            found.update({int(row["subscriber_id"]): when(row["until"]) for row in rows})
        return found

    def subscribers_with_pending(self) -> set[int]:
        """Subscribers with a delivery still pending (deferred by the server, or unsent)."""
        return {
            int(row["subscriber_id"])
            for row in self._rows("SELECT DISTINCT subscriber_id FROM deliveries WHERE status = 'pending'")
        }

    def digest(self, digest_id: str) -> DigestRecord | None:
        row = self._row("SELECT * FROM digests WHERE id = ?", [digest_id])
        return digest_of(row) if row else None

    def digests(self, limit: int = 50) -> list[DigestSummary]:
        """The newest digests, with their delivery counts."""
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
                " GROUP BY d.id ORDER BY d.created DESC LIMIT ?",
                [limit],
            )
        ]

    def unfinished_digests(self) -> list[DigestRecord]:
        return [
            digest_of(row)
            for row in self._rows("SELECT * FROM digests WHERE status = 'sending' ORDER BY created")
        ]

    def pending_deliveries(self, digest_id: str) -> list[PendingDelivery]:
        """Ledger rows still to send, with what the message needs of the subscriber."""
        return [
            pending_of(row)
            for row in self._rows(
                f"{PENDING_SELECT} WHERE l.digest_id = ? AND l.status = 'pending' ORDER BY l.subscriber_id",
                [digest_id],
            )
        ]

    def renew_claims(self, digest_id: str, holder: str, seconds: float) -> set[int]:
        """Extend ``holder``'s unexpired claims on this digest by ``seconds``; the subscriber
        ids it still holds (a claim that ran out may be another's by now: it is not renewed)."""
        sql = self.dialect
        return {
            int(row["subscriber_id"])
            for row in self._returning(
                f"UPDATE deliveries SET claimed_until = {sql.later} WHERE digest_id = ?"
                f" AND status = 'pending' AND claimed_by = ? AND claimed_until > {sql.now}"
                " RETURNING subscriber_id",
                (seconds, digest_id, holder),
            )
        }

    def claim_holders(self, digest_id: str, holder: str) -> set[str]:
        """The other holders of live claims on this digest's pending deliveries."""
        return {
            row["claimed_by"]
            for row in self._rows(
                "SELECT DISTINCT claimed_by FROM deliveries WHERE digest_id = ? AND status = 'pending'"
                f" AND claimed_by IS NOT NULL AND claimed_by != ? AND claimed_until > {self.dialect.now}",
                (digest_id, holder),
            )
        }

    def release_deliveries(self, digest_id: str, holder: str) -> None:
        """Give up ``holder``'s claims on this digest's pending deliveries (those a server
        deferred): the next run, by any process, takes them."""
        with self._write() as conn:
            conn.execute(
                "UPDATE deliveries SET claimed_by = NULL, claimed_until = NULL"
                " WHERE digest_id = ? AND claimed_by = ? AND status = 'pending'",
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
        """Write one delivery's outcome (its own short transaction: it must survive a crash).
        A sent message clears the subscriber's strikes; a ``strike`` (a refusal for good) adds
        one, and ``strikes_to_bounce`` in a row mark the subscriber bounced, atomically. The
        ledger's clock dates it."""
        with self._quick_write() as conn:
            conn.execute(
                "UPDATE deliveries SET status = ?, message_id = coalesce(?, message_id), reply = ?,"
                f" attempts = attempts + 1, updated = {self.dialect.now}, claimed_by = NULL,"
                " claimed_until = NULL"
                " WHERE digest_id = ? AND subscriber_id = ?",
                (status, message_id, reply, digest_id, subscriber_id),
            )
            if status == "sent":
                conn.execute(
                    "UPDATE subscribers SET bounces = 0 WHERE id = ? AND bounces != 0", (subscriber_id,)
                )
            elif strike:
                conn.execute("UPDATE subscribers SET bounces = bounces + 1 WHERE id = ?", (subscriber_id,))
                if strikes_to_bounce:
                    conn.execute(
                        "UPDATE subscribers SET status = 'bounced', pending_since = NULL, status_reason = ?"
                        " WHERE id = ? AND bounces >= ? AND status IN ('active', 'pending')",
                        (refusals(strikes_to_bounce, reply), subscriber_id, strikes_to_bounce),
                    )

    def finish_digest(self, digest_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE digests SET status = 'done' WHERE id = ?"
                " AND NOT EXISTS (SELECT 1 FROM deliveries WHERE digest_id = ? AND status = 'pending')",
                (digest_id, digest_id),
            )

    def delivery_counts(self, digest_id: str) -> dict[str, int]:
        return {
            row["status"]: row["n"]
            for row in self._rows(
                "SELECT status, count(*) AS n FROM deliveries WHERE digest_id = ? GROUP BY status",
                [digest_id],
            )
        }

    # --- what came back after a delivery (bounces, complaints) ----------------------------

    def sent_digests(self, subscriber_id: int, limit: int = 50) -> list[str]:
        """The digests sent to this subscriber, newest first."""
        rows = self._rows(
            "SELECT digest_id FROM deliveries WHERE subscriber_id = ? AND status = 'sent'"
            " ORDER BY updated DESC LIMIT ?",
            [subscriber_id, limit],
        )
        return [row["digest_id"] for row in rows]

    def delivery_of_message(self, message_id: str) -> tuple[str, int] | None:
        """(digest, subscriber) of the delivery sent with this Message-ID (with or without <>)."""
        row = self._row(
            "SELECT digest_id, subscriber_id FROM deliveries WHERE message_id = ?", [bracketed(message_id)]
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
        """Apply one bounce or complaint (:mod:`digest.store.feedback` decides), atomically;
        the outcome's name."""
        with self._write() as conn:
            # The subscriber's row locked first: two reports about one subscriber (two
            # processes, two webhooks) are judged one after the other.
            found = conn.execute(
                f"SELECT status FROM subscribers WHERE id = ?{self.dialect.for_update}", [subscriber_id]
            ).fetchone()
            recent = conn.execute(
                # Since the subscriber was last (re)activated: a fresh start forgets old bounces.
                "SELECT digest_id, feedback FROM deliveries WHERE subscriber_id = ? AND status = 'sent'"
                " AND updated >= (SELECT coalesce(confirmed, created) FROM subscribers WHERE id = ?)"
                " ORDER BY updated DESC LIMIT ?",
                [subscriber_id, subscriber_id, max(soft_limit, 1)],
            ).fetchall()
            earlier, stale = None, False
            if digest_id is not None:
                row = conn.execute(
                    "SELECT l.feedback, l.updated < coalesce(s.confirmed, s.created) AS stale"
                    " FROM deliveries l JOIN subscribers s ON s.id = l.subscriber_id"
                    " WHERE l.digest_id = ? AND l.subscriber_id = ?",
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
                    "UPDATE deliveries SET feedback = ?, feedback_detail = ?, feedback_at = ?"
                    " WHERE digest_id = ? AND subscriber_id = ?",
                    [kind, detail, now, verdict.mark, subscriber_id],
                )
            if verdict.status is not None:
                conn.execute(
                    "UPDATE subscribers SET status = ?, status_reason = ?, pending_since = NULL,"
                    " unsubscribed = CASE WHEN ? = 'unsubscribed' THEN ? ELSE unsubscribed END"
                    " WHERE id = ?",
                    [verdict.status, verdict.reason, verdict.status, now, subscriber_id],
                )
            return verdict.outcome

    def feedback_counts(self, digest_id: str) -> dict[str, int]:
        """Reports per kind that came back about this digest's deliveries."""
        rows = self._rows(
            "SELECT feedback, count(*) AS n FROM deliveries WHERE digest_id = ? AND feedback IS NOT NULL"
            " GROUP BY feedback",
            [digest_id],
        )
        return {row["feedback"]: int(row["n"]) for row in rows}

    def _quick_write(self) -> AbstractContextManager[Tx]:
        """The transaction a delivery's outcome is written in (PostgreSQL's saves round trips)."""
        return self._write()


class SqliteLedgerArea(LedgerArea):
    """SQLite's digests and claims, by the store's clock: one writer at a time, so a claim
    read and written in one transaction is the only one."""

    def create_digest(
        self, digest_id: str, until: datetime, deliveries: Iterable[tuple[int, datetime, str | None]]
    ) -> int:
        """A digest and its pending ledger rows (subscriber id, since, period), in one
        transaction; how many rows it holds. A row for a period the subscriber already has
        a digest for is left out (none at all: no digest either)."""
        now = self.now()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO digests (id, created, until, status) VALUES (?, ?, ?, 'sending')",
                (digest_id, now, until),
            )
            conn.executemany(
                "INSERT INTO deliveries (digest_id, subscriber_id, since, period, status, updated)"
                " VALUES (?, ?, ?, ?, 'pending', ?) ON CONFLICT DO NOTHING",
                [(digest_id, sid, since, period, now) for sid, since, period in deliveries],
            )
            count = int(
                conn.execute(
                    "SELECT count(*) AS n FROM deliveries WHERE digest_id = ?", [digest_id]
                ).fetchone()["n"]
            )
            if not count:
                conn.execute("DELETE FROM digests WHERE id = ?", [digest_id])
            self._changed(conn)
        return count

    def claim_deliveries(
        self, digest_id: str, holder: str, *, limit: int, seconds: float, tried_before: datetime
    ) -> list[PendingDelivery]:
        """Up to ``limit`` pending deliveries nobody holds (or whose holder's claim expired)
        and nobody tried since ``tried_before`` (a run does not retry what a server deferred
        during it), now held by ``holder`` for ``seconds``. ``record_delivery`` ends a claim."""
        now = self.now()
        until = now + timedelta(seconds=seconds)
        with self._write() as conn:
            rows = conn.execute(
                f"{PENDING_SELECT} WHERE l.digest_id = ? AND l.status = 'pending'"
                " AND (l.claimed_until IS NULL OR l.claimed_until <= ?) AND l.updated < ?"
                " ORDER BY l.subscriber_id LIMIT ?",
                (digest_id, now, tried_before, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE deliveries SET claimed_by = ?, claimed_until = ?"
                " WHERE digest_id = ? AND subscriber_id = ?",
                [(holder, until, digest_id, row["id"]) for row in rows],
            )
        return [pending_of(row) for row in rows]

    def ledger_now(self) -> datetime:
        """Now, by the clock the ledger and its claims are written with: the store's."""
        return self.now()


def bracketed(message_id: str) -> str:
    """A Message-ID as the ledger stores it: ``<id@host>``."""
    return f"<{message_id.strip().strip('<>')}>"


def pending_of(row: Row) -> PendingDelivery:
    """A ledger row still to send (:data:`PENDING_SELECT`'s columns)."""
    return PendingDelivery(
        subscriber_of(row), when(row["since"]), int(row["delivery_attempts"]), row["period"]
    )


def digest_of(row: Row) -> DigestRecord:
    return DigestRecord(row["id"], when(row["created"]), when(row["until"]), row["status"])
