"""Subscribers and the sign-up queue on PostgreSQL (the same meaning as the SQLite area;
addresses compare without regard to case, as SQLite's NOCASE column does)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from digest.common.errors import StoreError
from digest.common.rhythms import Rhythm
from digest.store.postgres.base import PgBase
from digest.store.records import SUBSCRIBER_STATUSES, Signup, Subscriber, SubscriberChange
from digest.store.subscribers import (
    FURTHEST,
    MISDATED,
    STATUS_TIMES,
    choice_columns,
    signup_of,
    subscriber_of,
)

_JSON = {"regions", "themes", "topics"}


class PgSubscribersArea(PgBase):
    def subscriber(self, *, email: str | None = None, subscriber_id: int | None = None) -> Subscriber | None:
        if email is not None:
            row = self._row("SELECT * FROM subscribers WHERE lower(email) = lower(%s)", [email])
        else:
            row = self._row("SELECT * FROM subscribers WHERE id = %s", [subscriber_id])
        return subscriber_of(row) if row else None

    def subscribers(self, status: str | None = None) -> list[Subscriber]:
        if status is None:
            # SQLite's NOCASE order (ASCII folded, then bytes), whatever the database's collation.
            rows = self._rows(
                'SELECT * FROM subscribers ORDER BY lower(email) COLLATE "C", email COLLATE "C"'
            )
        else:
            rows = self._rows("SELECT * FROM subscribers WHERE status = %s ORDER BY id", [status])
        return [subscriber_of(row) for row in rows]

    def upsert_subscribers(self, changes: Sequence[SubscriberChange]) -> tuple[int, int]:
        added = updated = 0
        now = self.now()
        with self._write() as conn:
            for change in changes:
                if change.status is not None and change.status not in SUBSCRIBER_STATUSES:
                    raise StoreError(f"{change.email}: {change.status!r} is not a subscriber status")
                values = _columns(change, now)
                known = conn.execute(
                    "SELECT id FROM subscribers WHERE lower(email) = lower(%s) FOR UPDATE", [change.email]
                ).fetchone()
                if known is None:
                    values.setdefault("status", "active")
                    values.setdefault("created", now)
                    names = ", ".join(["email", *values])
                    marks = ", ".join(_mark(c) for c in ["email", *values])
                    conn.execute(
                        f"INSERT INTO subscribers ({names}) VALUES ({marks})",
                        [change.email, *values.values()],
                    )
                    added += 1
                else:
                    values.pop("created", None)  # never changes: link tokens are bound to it
                    if values:
                        sets = ", ".join(f"{c} = {_mark(c)}" for c in values)
                        conn.execute(
                            f"UPDATE subscribers SET {sets} WHERE id = %s", [*values.values(), known["id"]]
                        )
                        updated += 1
        return added, updated

    def set_subscriber_status(self, subscriber_id: int, status: str, *, at: datetime) -> None:
        if status not in STATUS_TIMES:
            raise StoreError(f"{status!r} is not a subscriber status")
        stamp, cleared = STATUS_TIMES[status]
        sets = ["status = %s", *(f"{c} = NULL" for c in cleared)]
        if status == "active":
            sets.append("bounces = 0")  # a fresh start: strikes from before count no more
            sets.append("status_reason = NULL")
        args: list[Any] = [status]
        if stamp:
            sets.append(f"{stamp} = %s")
            args.append(at)
        with self._write() as conn:
            conn.execute(f"UPDATE subscribers SET {', '.join(sets)} WHERE id = %s", [*args, subscriber_id])

    def set_preferences(
        self,
        subscriber_id: int,
        regions: Sequence[str],
        themes: Sequence[str],
        *,
        rhythm: Rhythm | None = None,
        topics: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> None:
        values = {"regions": json.dumps(list(regions)), "themes": json.dumps(list(themes))}
        values.update(choice_columns(rhythm, topics, now or self.now()))
        sets = ", ".join(f"{column} = {_mark(column)}" for column in values)
        with self._write() as conn:
            conn.execute(f"UPDATE subscribers SET {sets} WHERE id = %s", [*values.values(), subscriber_id])

    def due_subscribers(self, now: datetime) -> list[Subscriber]:
        rows = self._rows(
            "SELECT * FROM subscribers s WHERE s.status = 'active' AND s.next_due <= %s"
            " AND NOT EXISTS (SELECT 1 FROM deliveries l"
            " WHERE l.subscriber_id = s.id AND l.status = 'pending')"
            " ORDER BY s.next_due, s.id",
            [now],
        )
        return [subscriber_of(row) for row in rows]

    def misdated_subscribers(self, now: datetime) -> list[Subscriber]:
        rows = self._rows(
            f"SELECT * FROM subscribers WHERE {MISDATED.format('%s', '%s', '%s')} AND status = 'active'",
            [now + span for span in FURTHEST.values()],
        )
        return [subscriber_of(row) for row in rows]

    def set_next_due(self, due: Sequence[tuple[int, datetime | None]]) -> None:
        with self._write() as conn, conn.cursor() as cursor:
            cursor.executemany(
                "UPDATE subscribers SET next_due = %s WHERE id = %s", [(at, sid) for sid, at in due]
            )

    def delete_subscriber(self, email: str) -> bool:
        with self._write() as conn:
            return (
                conn.execute("DELETE FROM subscribers WHERE lower(email) = lower(%s)", [email]).rowcount > 0
            )

    # --- the web form's sign-ups ---------------------------------------------------------

    def enqueue_signup(
        self,
        email: str,
        regions: Sequence[str],
        themes: Sequence[str],
        *,
        now: datetime,
        rhythm: Rhythm | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        values = {
            "email": email,
            "regions": json.dumps(list(regions)),
            "themes": json.dumps(list(themes)),
            "created": now,
            "next_try": now,
            **choice_columns(rhythm, topics, None),
        }
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO signups ({', '.join(values)}) VALUES ({', '.join(_mark(c) for c in values)})",
                list(values.values()),
            )

    def claim_signups(self, now: datetime, *, until: datetime, limit: int) -> list[Signup]:
        """Sign-ups due at ``now``, held until ``until``; rows another worker is claiming are
        skipped (SKIP LOCKED), so no sign-up is handled twice."""
        with self._write() as conn:
            rows = conn.execute(
                "WITH due AS (SELECT id, next_try FROM signups WHERE next_try <= %s ORDER BY id LIMIT %s"
                " FOR UPDATE SKIP LOCKED) UPDATE signups s SET next_try = %s FROM due WHERE s.id = due.id"
                " RETURNING s.*, due.next_try AS due",
                (now, limit, until),
            ).fetchall()
        # The claimed rows as they were (next_try: when they were due), as SQLite's store gives.
        return sorted((signup_of({**row, "next_try": row["due"]}) for row in rows), key=lambda s: s.id)

    def signup_for(self, signup_id: int, subscriber_id: int) -> None:
        with self._write() as conn:
            conn.execute("UPDATE signups SET subscriber_id = %s WHERE id = %s", (subscriber_id, signup_id))

    def retry_signup(self, signup_id: int, when: datetime, error: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE signups SET attempts = attempts + 1, next_try = %s, last_error = %s WHERE id = %s",
                (when, error, signup_id),
            )

    def postpone_signups(self, now: datetime, until: datetime) -> None:
        with self._write() as conn:
            conn.execute("UPDATE signups SET next_try = %s WHERE next_try <= %s", (until, now))

    def finish_signup(self, signup_id: int) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM signups WHERE id = %s", (signup_id,))

    def signups(self) -> list[Signup]:
        return [signup_of(row) for row in self._rows("SELECT * FROM signups ORDER BY id")]


def _mark(column: str) -> str:
    return "%s::jsonb" if column in _JSON else "%s"


def _columns(change: SubscriberChange, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {
        "status": change.status,
        "regions": json.dumps(list(change.regions)) if change.regions is not None else None,
        "themes": json.dumps(list(change.themes)) if change.themes is not None else None,
        "created": change.created,
        "confirmed": change.confirmed,
        "unsubscribed": change.unsubscribed,
        "pending_since": change.pending_since,
    }
    values.update(choice_columns(change.rhythm, change.topics, now))
    return {column: value for column, value in values.items() if value is not None}
