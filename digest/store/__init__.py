"""Storage: the only package with SQL. ``Store`` is the contract (a Protocol) the rest of
digest uses; ``open_store`` gives the SQLite store behind it; the records are what it hands
out and takes in, with stored JSON already decoded."""

from digest.store.contract import Store
from digest.store.opener import open_database, open_store
from digest.store.records import (
    SUBSCRIBER_STATUSES,
    DigestRecord,
    DigestSummary,
    DroppedItem,
    Evidence,
    GroupCounts,
    Groups,
    PendingDelivery,
    RegionCount,
    SaveCounts,
    Signup,
    SourceSpec,
    SourceSummary,
    Story,
    StoryCount,
    StoryRow,
    Subscriber,
    SubscriberChange,
    ThemeCount,
    Ungrouped,
)
from digest.store.sqlite import SqliteStore

__all__ = [
    "SUBSCRIBER_STATUSES",
    "DigestRecord",
    "DigestSummary",
    "DroppedItem",
    "Evidence",
    "GroupCounts",
    "Groups",
    "PendingDelivery",
    "RegionCount",
    "SaveCounts",
    "Signup",
    "SourceSpec",
    "SourceSummary",
    "SqliteStore",
    "Store",
    "Story",
    "StoryCount",
    "StoryRow",
    "Subscriber",
    "SubscriberChange",
    "ThemeCount",
    "Ungrouped",
    "open_database",
    "open_store",
]
