"""The whole database as tables of plain values, the form ``digest db copy`` moves between
backends: each backend dumps its rows in this form and loads rows given in it.

Kinds: ``text``, ``int``, ``bool``, ``time`` (an aware datetime), ``json`` (decoded JSON).
Tables are listed in the order they load (a row's references load before it). Claims and
leases are not moved: they belong to the processes running on the source database.
``sequences`` carries each table's next id (ids of removed subscribers are never reused:
link tokens are bound to ids)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Row = Mapping[str, Any]

TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "sources": (
        ("id", "int"), ("name", "text"), ("id_name", "text"), ("url", "text"), ("fetch_url", "text"),
        ("kind", "text"), ("enabled", "bool"), ("etag", "text"), ("last_modified", "text"),
        ("last_status", "int"), ("last_error", "text"), ("last_fetched", "time"),
        ("consecutive_failures", "int"), ("next_fetch", "time"), ("created", "time"), ("removed", "time"),
        ("options", "json"), ("paused", "time"),
    ),
    "articles": (
        ("id", "text"), ("source_id", "int"), ("guid", "text"), ("url", "text"), ("title", "text"),
        ("summary_html", "text"), ("summary_text", "text"), ("author", "text"), ("published", "time"),
        ("first_seen", "time"), ("updated", "time"), ("content_hash", "text"), ("regions", "json"),
        ("themes", "json"), ("story", "text"), ("places", "json"), ("theme_matches", "json"),
        ("grouped", "bool"),
    ),
    "dropped": (
        ("article_id", "text"), ("source_id", "int"), ("title", "text"), ("url", "text"), ("rule", "text"),
        ("content_hash", "text"), ("dropped", "time"),
    ),
    "pages": (("url", "text"), ("etag", "text"), ("last_modified", "text"), ("fetched", "time")),
    "stories": (
        ("id", "text"), ("label", "text"), ("articles", "int"), ("first_seen", "time"), ("updated", "time"),
    ),
    "subscribers": (
        ("id", "int"), ("email", "text"), ("status", "text"), ("regions", "json"), ("themes", "json"),
        ("created", "time"), ("confirmed", "time"), ("unsubscribed", "time"), ("bounces", "int"),
        ("pending_since", "time"), ("cadence", "text"), ("timezone", "text"), ("hour", "int"),
        ("weekday", "int"), ("topics", "json"), ("next_due", "time"), ("status_reason", "text"),
    ),
    "digests": (("id", "text"), ("created", "time"), ("until", "time"), ("status", "text")),
    "deliveries": (
        ("digest_id", "text"), ("subscriber_id", "int"), ("since", "time"), ("status", "text"),
        ("attempts", "int"), ("message_id", "text"), ("reply", "text"), ("updated", "time"),
        ("period", "text"), ("feedback", "text"), ("feedback_detail", "text"), ("feedback_at", "time"),
    ),
    "signups": (
        ("id", "int"), ("email", "text"), ("regions", "json"), ("themes", "json"), ("created", "time"),
        ("subscriber_id", "int"), ("attempts", "int"), ("next_try", "time"), ("last_error", "text"),
        ("cadence", "text"), ("timezone", "text"), ("hour", "int"), ("weekday", "int"), ("topics", "json"),
    ),
    "api_tokens": (
        ("id", "int"), ("name", "text"), ("scope", "text"), ("hash", "text"), ("created", "time"),
        ("last_used", "time"), ("revoked", "time"),
    ),
    "webhooks": (("id", "int"), ("url", "text"), ("events", "json"), ("secret", "text"), ("created", "time")),
    "webhook_events": (
        ("id", "text"), ("url", "text"), ("type", "text"), ("payload", "text"), ("created", "time"),
        ("attempts", "int"), ("next_attempt", "time"), ("status", "text"), ("last_error", "text"),
        ("done", "time"),
    ),
    "admins": (
        ("id", "int"), ("name", "text"), ("hash", "text"), ("created", "time"), ("changed", "time"),
        ("last_login", "time"),
    ),
    "audit": (
        ("id", "int"), ("at", "time"), ("actor", "text"), ("action", "text"), ("target", "text"),
        ("detail", "json"),
    ),
    "settings": (("key", "text"), ("value", "text")),
    "sequences": (("name", "text"), ("next", "int")),
}  # fmt: skip

# What "empty" means for a copy's target: none of these tables has a row, and settings has
# none but those every new database writes itself.
DATA_TABLES = (
    "sources", "articles", "dropped", "subscribers", "digests", "deliveries", "signups", "api_tokens",
    "webhooks", "webhook_events", "admins", "audit",
)  # fmt: skip
OWN_SETTINGS = ("tokens_bound_since",)

# Tables whose ids come from a sequence, carried in ``sequences``.
SEQUENCED = ("sources", "subscribers", "signups", "api_tokens", "webhooks", "admins", "audit")


def columns(table: str) -> list[str]:
    return [name for name, _ in TABLES[table]]


def kinds(table: str, kind: str) -> set[str]:
    """The columns of ``table`` of one kind."""
    return {name for name, found in TABLES[table] if found == kind}
