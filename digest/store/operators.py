"""What operators keep in the database beside sources: API tokens (as hashes) and outgoing
webhooks (endpoints added through the API, and the durable queue of events to deliver).
One set of statements for both backends (see :mod:`digest.store.dialect`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from digest.common.errors import StoreError
from digest.store.base import Row, record_of
from digest.store.dialect import Area
from digest.store.records import (
    Activity,
    ApiToken,
    DeliveryRecord,
    QueuedEvent,
    StoryRecord,
    SubscriberEvent,
    WebhookRecord,
)


class OperatorsArea(Area):
    """Tokens and webhooks, in the statements both backends share."""

    # --- tokens -------------------------------------------------------------------------------

    def create_token(self, name: str, scope: str, hashed: str) -> ApiToken:
        """Keep a new token by the hash of its secret."""
        with self._write() as tx:
            taken = tx.execute(
                "SELECT 1 FROM api_tokens WHERE name = ? AND revoked IS NULL", [name]
            ).fetchone()
            if taken is not None:
                raise StoreError(
                    f"a token called {name!r} exists already; revoke it first or choose another name"
                )
            row = tx.execute(
                "INSERT INTO api_tokens (name, scope, hash, created) VALUES (?, ?, ?, ?) RETURNING *",
                (name, scope, hashed, self.now()),
            ).fetchone()
        return token_of(row)

    def api_tokens(self) -> list[ApiToken]:
        """Every token, revoked ones too, newest first."""
        return [token_of(row) for row in self._rows("SELECT * FROM api_tokens ORDER BY id DESC")]

    def token_by_hash(self, hashed: str) -> ApiToken | None:
        row = self._row("SELECT * FROM api_tokens WHERE hash = ?", [hashed])
        return None if row is None else token_of(row)

    def has_tokens(self) -> bool:
        return self._row("SELECT 1 FROM api_tokens WHERE revoked IS NULL LIMIT 1") is not None

    def revoke_token(self, name: str) -> None:
        with self._write() as tx:
            done = tx.execute(
                "UPDATE api_tokens SET revoked = ? WHERE name = ? AND revoked IS NULL", (self.now(), name)
            ).rowcount
        if not done:
            raise StoreError(f"no token named {name!r} (or it is revoked already)")

    def token_used(self, token_id: int, now: datetime, *, every: float = 60.0) -> None:
        """Note that a token was used at ``now``, at most once every ``every`` seconds (a
        busy client does not make every read a write)."""
        with self._write() as tx:
            tx.execute(
                "UPDATE api_tokens SET last_used = ? WHERE id = ? AND (last_used IS NULL OR last_used < ?)",
                (now, token_id, now - timedelta(seconds=every)),
            )

    # --- what operators look at -----------------------------------------------------------------

    def deliveries_of(
        self, subscriber_id: int, *, limit: int = 50, before: str | None = None
    ) -> list[DeliveryRecord]:
        """A subscriber's deliveries, the latest changed first (ties by digest id), those
        after the digest ``before`` in that order when given."""
        where = "subscriber_id = ?"
        args: list[Any] = [subscriber_id]
        if before is not None:
            mark = "(SELECT updated FROM deliveries WHERE subscriber_id = ? AND digest_id = ?)"
            where += f" AND (updated < {mark} OR (updated = {mark} AND digest_id > ?))"
            args += [subscriber_id, before, subscriber_id, before, before]
        rows = self._rows(
            f"SELECT * FROM deliveries WHERE {where} ORDER BY updated DESC, digest_id LIMIT ?", [*args, limit]
        )
        return [record_of(DeliveryRecord, row) for row in rows]

    def activity(self, since: datetime) -> Activity:
        """Articles, deliveries and reports per day from ``since`` on."""
        day = self.dialect.day
        articles = {
            row["day"]: int(row["n"])
            for row in self._rows(
                f"SELECT {day.format('first_seen')} AS day, count(*) AS n FROM articles"
                " WHERE first_seen >= ? GROUP BY 1 ORDER BY 1",
                [since],
            )
        }
        deliveries: dict[str, dict[str, int]] = {}
        for row in self._rows(
            f"SELECT {day.format('updated')} AS day, status, count(*) AS n FROM deliveries"
            " WHERE updated >= ? GROUP BY 1, 2 ORDER BY 1, 2",
            [since],
        ):
            deliveries.setdefault(row["day"], {})[row["status"]] = int(row["n"])
        feedback: dict[str, dict[str, int]] = {}
        for row in self._rows(
            f"SELECT {day.format('feedback_at')} AS day, feedback, count(*) AS n FROM deliveries"
            " WHERE feedback_at >= ? GROUP BY 1, 2 ORDER BY 1, 2",
            [since],
        ):
            feedback.setdefault(row["day"], {})[row["feedback"]] = int(row["n"])
        return Activity(articles, deliveries, feedback)

    def subscriber_events(self, *, limit: int = 500) -> list[SubscriberEvent]:
        """The oldest ``limit`` status changes noted and not forgotten, in order."""
        return [
            record_of(SubscriberEvent, row)
            for row in self._rows("SELECT * FROM subscriber_events ORDER BY id LIMIT ?", [limit])
        ]

    def forget_subscriber_events(self, up_to: int) -> None:
        """Forget the status changes noted up to id ``up_to`` (said, or to be said by none)."""
        with self._write() as tx:
            tx.execute("DELETE FROM subscriber_events WHERE id <= ?", [up_to])

    def stories_changed(self, since: datetime, *, min_articles: int = 2) -> list[StoryRecord]:
        """Stories of at least ``min_articles`` articles changed at or after ``since``, the
        latest changed last."""
        return [
            record_of(StoryRecord, row)
            for row in self._rows(
                "SELECT id, label, articles, first_seen, updated FROM stories WHERE updated >= ?"
                " AND articles >= ? ORDER BY updated, id",
                [since, min_articles],
            )
        ]

    # --- webhooks -----------------------------------------------------------------------------

    def add_webhook(self, url: str, events: Sequence[str], secret: str) -> WebhookRecord:
        with self._write() as tx:
            if tx.execute("SELECT 1 FROM webhooks WHERE url = ?", [url]).fetchone() is not None:
                raise StoreError("a webhook with that URL exists already; remove it first")
            row = tx.execute(
                "INSERT INTO webhooks (url, events, secret, created)"
                f" VALUES (?, {self.dialect.json_mark}, ?, ?) RETURNING *",
                (url, json.dumps(list(events)), secret, self.now()),
            ).fetchone()
        return webhook_of(row)

    def webhooks(self) -> list[WebhookRecord]:
        return [webhook_of(row) for row in self._rows("SELECT * FROM webhooks ORDER BY id")]

    def remove_webhook(self, webhook_id: int) -> None:
        with self._write() as tx:
            if not tx.execute("DELETE FROM webhooks WHERE id = ?", [webhook_id]).rowcount:
                raise StoreError(f"no webhook {webhook_id}")

    def enqueue_events(self, events: Sequence[QueuedEvent]) -> None:
        if not events:
            return
        with self._write() as tx:
            tx.executemany(
                "INSERT INTO webhook_events (id, url, type, payload, created, next_attempt)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                [(e.id, e.url, e.type, e.payload, e.created, e.created) for e in events],
            )

    def claim_events(self, holder: str, *, limit: int, seconds: float, now: datetime) -> list[QueuedEvent]:
        """Up to ``limit`` pending events due by ``now`` that nobody holds (or whose
        holder's claim ran out), oldest due first, now held by ``holder`` for ``seconds``."""
        until = now + timedelta(seconds=seconds)
        with self._write() as tx:
            rows = tx.execute(
                "SELECT * FROM webhook_events WHERE status = 'pending' AND next_attempt <= ?"
                " AND (claimed_until IS NULL OR claimed_until <= ?) ORDER BY next_attempt, id LIMIT ?"
                f"{self.dialect.skip_locked}",
                (now, now, limit),
            ).fetchall()
            tx.executemany(
                "UPDATE webhook_events SET claimed_by = ?, claimed_until = ? WHERE id = ?",
                [(holder, until, row["id"]) for row in rows],
            )
        return [event_of(row) for row in rows]

    def event_tried(
        self, event_id: str, *, now: datetime, error: str | None, retry_at: datetime | None
    ) -> None:
        """Record a delivery attempt: delivered (no ``error``), to try again at
        ``retry_at``, or given up (an error and no ``retry_at``). Ends the claim."""
        status = "delivered" if error is None else ("pending" if retry_at is not None else "failed")
        with self._write() as tx:
            tx.execute(
                "UPDATE webhook_events SET attempts = attempts + 1, status = ?, last_error = ?,"
                " next_attempt = coalesce(?, next_attempt), done = ?, claimed_by = NULL,"
                " claimed_until = NULL WHERE id = ?",
                (status, error, retry_at, None if status == "pending" else now, event_id),
            )

    def queued_events(self, *, limit: int = 100, url: str | None = None) -> list[QueuedEvent]:
        """The newest events queued (any status), for one endpoint or all."""
        where, args = ("WHERE url = ?", [url]) if url is not None else ("", [])
        return [
            event_of(row)
            for row in self._rows(
                f"SELECT * FROM webhook_events {where} ORDER BY created DESC, id LIMIT ?", [*args, limit]
            )
        ]

    def prune_events(self, before: datetime) -> int:
        """Forget delivered and failed events finished before ``before``; how many."""
        with self._write() as tx:
            return int(
                tx.execute(
                    "DELETE FROM webhook_events WHERE status != 'pending' AND done < ?", [before]
                ).rowcount
            )


def token_of(row: Row) -> ApiToken:
    return record_of(ApiToken, row)


def webhook_of(row: Row) -> WebhookRecord:
    return record_of(WebhookRecord, row)


def event_of(row: Row) -> QueuedEvent:
    return record_of(QueuedEvent, row)
