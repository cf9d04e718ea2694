"""Subscribers and the sign-up queue on PostgreSQL (the same meaning as the SQLite area;
addresses compare without regard to case, as SQLite's NOCASE column does)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from digest.dates import utcnow
from digest.errors import StoreError
from digest.store.postgres.base import PgBase
from digest.store.records import SUBSCRIBER_STATUSES, Signup, Subscriber, SubscriberChange
from digest.store.subscribers import STATUS_TIMES, signup_of, subscriber_of

_JSON = {"regions", "themes"}


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
        now = utcnow()
        with self._write() as conn:
            for change in changes:
                if change.status is not None and change.status not in SUBSCRIBER_STATUSES:
                    raise StoreError(f"{change.email}: {change.status!r} is not a subscriber status")
                values = _columns(change)
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
        args: list[Any] = [status]
        if stamp:
            sets.append(f"{stamp} = %s")
            args.append(at)
        with self._write() as conn:
            conn.execute(f"UPDATE subscribers SET {', '.join(sets)} WHERE id = %s", [*args, subscriber_id])

    def set_preferences(self, subscriber_id: int, regions: Sequence[str], themes: Sequence[str]) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE subscribers SET regions = %s::jsonb, themes = %s::jsonb WHERE id = %s",
                (json.dumps(list(regions)), json.dumps(list(themes)), subscriber_id),
            )

    def delete_subscriber(self, email: str) -> bool:
        with self._write() as conn:
            return (
                conn.execute("DELETE FROM subscribers WHERE lower(email) = lower(%s)", [email]).rowcount > 0
            )

    # --- the web form's sign-ups ---------------------------------------------------------

    def enqueue_signup(
        self, email: str, regions: Sequence[str], themes: Sequence[str], *, now: datetime
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO signups (email, regions, themes, created, next_try)"
                " VALUES (%s, %s::jsonb, %s::jsonb, %s, %s)",
                (email, json.dumps(list(regions)), json.dumps(list(themes)), now, now),
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


def _columns(change: SubscriberChange) -> dict[str, Any]:
    values: dict[str, Any] = {
        "status": change.status,
        "regions": json.dumps(list(change.regions)) if change.regions is not None else None,
        "themes": json.dumps(list(change.themes)) if change.themes is not None else None,
        "created": change.created,
        "confirmed": change.confirmed,
        "unsubscribed": change.unsubscribed,
        "pending_since": change.pending_since,
    }
    return {column: value for column, value in values.items() if value is not None}
