"""Subscribers (who, their status and preferences) and the sign-up queue of the web form:
the statements both backends share, and SQLite's own claims on sign-ups (PostgreSQL's:
``postgres/subscribers.py``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from digest.common.errors import StoreError
from digest.common.rhythms import Rhythm, next_due
from digest.store.base import Row, decoded, dt, stored_time, when
from digest.store.dialect import Area
from digest.store.records import SUBSCRIBER_STATUSES, Signup, Subscriber, SubscriberChange

# How far ahead of now a cadence can put a next due time (a day can last 25 hours; a month
# 31 days), and the rows past that: one index range each.
FURTHEST = {"daily": timedelta(hours=26), "weekly": timedelta(days=7, hours=2), "monthly": timedelta(days=32)}
MISDATED = "(" + " OR ".join(f"(cadence = '{c}' AND next_due > {{}})" for c in FURTHEST) + ")"

_JSON = {"regions", "themes", "topics"}

# The timestamp each status sets, and those it clears.
STATUS_TIMES = {
    "active": ("confirmed", ("unsubscribed", "pending_since")),
    "pending": ("pending_since", ("unsubscribed",)),
    "unsubscribed": ("unsubscribed", ("pending_since",)),
    "bounced": (None, ("pending_since",)),
}


class SubscribersArea(Area):
    """Subscribers and sign-ups, in the statements both backends share."""

    def subscriber(self, *, email: str | None = None, subscriber_id: int | None = None) -> Subscriber | None:
        """One subscriber, by address (any case) or by id."""
        if email is not None:
            row = self._row(f"SELECT * FROM subscribers WHERE {self.dialect.address}", [email])
        else:
            row = self._row("SELECT * FROM subscribers WHERE id = ?", [subscriber_id])
        return subscriber_of(row) if row else None

    def subscribers(
        self, status: str | None = None, *, after: int = 0, limit: int | None = None
    ) -> list[Subscriber]:
        """Every subscriber by address; a page (``after`` or ``limit`` given) or those with
        ``status`` in order of sign-up."""
        page = "" if limit is None else f" LIMIT {int(limit)}"
        if status is None and not after and limit is None:
            rows = self._rows(f"SELECT * FROM subscribers ORDER BY {self.dialect.address_order}")
        elif status is None:
            rows = self._rows(f"SELECT * FROM subscribers WHERE id > ? ORDER BY id{page}", [after])
        else:
            rows = self._rows(
                f"SELECT * FROM subscribers WHERE status = ? AND id > ? ORDER BY id{page}", [status, after]
            )
        return [subscriber_of(row) for row in rows]

    def upsert_subscribers(self, changes: Sequence[SubscriberChange]) -> tuple[int, int]:
        """Insert or update subscribers by address in one transaction; (added, updated)."""
        added = updated = 0
        now = self.now()
        with self._write() as conn:
            for change in changes:
                values = _columns(change, now)
                if change.status is not None and change.status not in SUBSCRIBER_STATUSES:
                    raise StoreError(f"{change.email}: {change.status!r} is not a subscriber status")
                known = conn.execute(
                    f"SELECT id FROM subscribers WHERE {self.dialect.address}{self.dialect.for_update}",
                    [change.email],
                ).fetchone()
                if known is None:
                    values.setdefault("status", "active")
                    values.setdefault("created", now)
                    names = ", ".join(["email", *values])
                    marks = ", ".join(self._mark(c) for c in ["email", *values])
                    conn.execute(
                        f"INSERT INTO subscribers ({names}) VALUES ({marks})",
                        [change.email, *values.values()],
                    )
                    added += 1
                else:
                    values.pop("created", None)  # never changes: link tokens are bound to it
                    if values:
                        sets = ", ".join(f"{c} = {self._mark(c)}" for c in values)
                        conn.execute(
                            f"UPDATE subscribers SET {sets} WHERE id = ?", [*values.values(), known["id"]]
                        )
                        updated += 1
        return added, updated

    def set_subscriber_status(self, subscriber_id: int, status: str, *, at: datetime) -> None:
        """Move a subscriber to ``status``, setting the time it records (confirmed for active,
        unsubscribed, pending_since for pending) and clearing what no longer applies."""
        if status not in STATUS_TIMES:
            raise StoreError(f"{status!r} is not a subscriber status")
        stamp, cleared = STATUS_TIMES[status]
        sets = ["status = ?", *(f"{c} = NULL" for c in cleared)]
        if status == "active":
            sets.append("bounces = 0")  # a fresh start: strikes from before count no more
            sets.append("status_reason = NULL")
        args: list[Any] = [status]
        if stamp:
            sets.append(f"{stamp} = ?")
            args.append(at)
        with self._write() as conn:
            conn.execute(f"UPDATE subscribers SET {', '.join(sets)} WHERE id = ?", [*args, subscriber_id])

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
        """Regions and themes; with ``rhythm`` and ``topics``, those too (a new rhythm's
        next digest falls due at its first due time after ``now``, by default now)."""
        values = {"regions": json.dumps(list(regions)), "themes": json.dumps(list(themes))}
        values.update(choice_columns(rhythm, topics, now or self.now()))
        sets = ", ".join(f"{column} = {self._mark(column)}" for column in values)
        with self._write() as conn:
            conn.execute(f"UPDATE subscribers SET {sets} WHERE id = ?", [*values.values(), subscriber_id])

    def due_subscribers(self, now: datetime) -> list[Subscriber]:
        """Active subscribers with a rhythm of their own whose next digest is due at ``now``,
        but not one whose previous digest is still pending (it goes out first)."""
        rows = self._rows(
            "SELECT * FROM subscribers s WHERE s.status = 'active' AND s.next_due <= ?"
            " AND NOT EXISTS (SELECT 1 FROM deliveries l"
            " WHERE l.subscriber_id = s.id AND l.status = 'pending')"
            " ORDER BY s.next_due, s.id",
            [now],
        )
        return [subscriber_of(row) for row in rows]

    def next_due_after(self, now: datetime) -> tuple[datetime, int] | None:
        row = self._row(
            "SELECT next_due, count(*) AS n FROM subscribers WHERE status = 'active' AND next_due ="
            " (SELECT min(next_due) FROM subscribers WHERE status = 'active' AND next_due > ?)"
            " GROUP BY next_due",
            [now],
        )
        return None if row is None else (when(row["next_due"]), int(row["n"]))

    def misdated_subscribers(self, now: datetime) -> list[Subscriber]:
        """Active subscribers whose next due time lies further ahead than their cadence
        ever puts it (a clock that ran ahead set it): ``planner`` sets it again."""
        rows = self._rows(
            f"SELECT * FROM subscribers WHERE {MISDATED.format('?', '?', '?')} AND status = 'active'",
            [now + span for span in FURTHEST.values()],
        )
        return [subscriber_of(row) for row in rows]

    def set_next_due(self, due: Sequence[tuple[int, datetime | None]]) -> None:
        """When each subscriber's next digest falls due (subscriber id, due time; None: no
        time, the site's schedule serves them)."""
        with self._write() as conn:
            conn.executemany(
                "UPDATE subscribers SET next_due = ? WHERE id = ?", [(at, sid) for sid, at in due]
            )

    def delete_subscriber(self, email: str) -> bool:
        with self._write() as conn:
            return conn.execute(f"DELETE FROM subscribers WHERE {self.dialect.address}", [email]).rowcount > 0

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
        marks = ", ".join(self._mark(c) for c in values)
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO signups ({', '.join(values)}) VALUES ({marks})",
                list(values.values()),
            )

    def signup_for(self, signup_id: int, subscriber_id: int) -> None:
        with self._write() as conn:
            conn.execute("UPDATE signups SET subscriber_id = ? WHERE id = ?", (subscriber_id, signup_id))

    def retry_signup(self, signup_id: int, when: datetime, error: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE signups SET attempts = attempts + 1, next_try = ?, last_error = ? WHERE id = ?",
                (when, error, signup_id),
            )

    def postpone_signups(self, now: datetime, until: datetime) -> None:
        """Every sign-up due at ``now`` waits until ``until`` (the mail server is down)."""
        with self._write() as conn:
            conn.execute("UPDATE signups SET next_try = ? WHERE next_try <= ?", (until, now))

    def finish_signup(self, signup_id: int) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM signups WHERE id = ?", (signup_id,))

    def signups(self) -> list[Signup]:
        """Every queued sign-up, oldest first."""
        return [signup_of(row) for row in self._rows("SELECT * FROM signups ORDER BY id")]

    def _mark(self, column: str) -> str:
        return self.dialect.json_mark if column in _JSON else "?"


class SqliteSubscribersArea(SubscribersArea):
    """SQLite's sign-up claims: read and held in one write transaction (writers queue)."""

    def claim_signups(self, now: datetime, *, until: datetime, limit: int) -> list[Signup]:
        """Sign-ups due at ``now``, held until ``until`` so no other worker takes them meanwhile."""
        with self._write() as conn:
            rows = conn.execute(
                "SELECT * FROM signups WHERE next_try <= ? ORDER BY id LIMIT ?", (now, limit)
            ).fetchall()
            for inside, args in self.dialect.in_list("id", [row["id"] for row in rows]):
                conn.execute(f"UPDATE signups SET next_try = ? WHERE {inside}", [until, *args])
        return [signup_of(row) for row in rows]


def choice_columns(
    rhythm: Rhythm | None, topics: Sequence[str] | None, now: datetime | None
) -> dict[str, Any]:
    """The columns a rhythm and topics are stored in (None: left as they are; topics as JSON
    text); with ``now``, the rhythm's next due time from then."""
    values: dict[str, Any] = {}
    if rhythm is not None:
        values.update(asdict(rhythm))  # cadence, timezone, hour, weekday: the columns' names
        if now is not None:
            values["next_due"] = next_due(rhythm, now)
    if topics is not None:
        values["topics"] = json.dumps(list(topics))
    return values


def rhythm_of(row: Row) -> Rhythm | None:
    """The rhythm a row's columns hold; None for the site's schedule (or one no longer valid,
    such as a time zone the system's database dropped: the site's schedule then applies)."""
    if not row["cadence"]:
        return None
    try:
        return Rhythm(row["cadence"], row["timezone"], int(row["hour"]), int(row["weekday"]))
    except (TypeError, ValueError):
        return None


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


def subscriber_of(row: Row) -> Subscriber:
    # sqlite3.Row: "in" looks at values, keys() at columns (those of later migrations may be
    # absent from a database being migrated)
    columns = set(row.keys())
    return Subscriber(
        id=int(row["id"]),
        email=row["email"],
        status=row["status"],
        regions=tuple(decoded(row["regions"])),
        themes=tuple(decoded(row["themes"])),
        created=stored_time(row["created"]),
        confirmed=stored_time(row["confirmed"]) if row["confirmed"] else None,
        unsubscribed=stored_time(row["unsubscribed"]) if row["unsubscribed"] else None,
        bounces=int(row["bounces"]),
        pending_since=dt(row["pending_since"]) if "pending_since" in columns else None,
        rhythm=rhythm_of(row) if "cadence" in columns else None,
        topics=tuple(decoded(row["topics"])) if "topics" in columns else (),
        next_due=dt(row["next_due"]) if "next_due" in columns else None,
        reason=row["status_reason"] if "status_reason" in columns else None,
    )


def signup_of(row: Row) -> Signup:
    return Signup(
        id=int(row["id"]),
        email=row["email"],
        regions=tuple(decoded(row["regions"])),
        themes=tuple(decoded(row["themes"])),
        subscriber_id=row["subscriber_id"],
        attempts=int(row["attempts"]),
        next_try=when(row["next_try"]),
        last_error=row["last_error"],
        rhythm=rhythm_of(row),
        topics=tuple(decoded(row["topics"])),
    )
