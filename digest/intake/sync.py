"""The database's sources kept in step with the configuration."""

from __future__ import annotations

from digest.config import Settings, SourceSettings
from digest.store import SourceSpec, SourcesStore


def spec_of(source: SourceSettings) -> SourceSpec:
    return SourceSpec(source.name, source.url, source.kind)


def sync_sources(store: SourcesStore, settings: Settings) -> None:
    """Make the database's sources match the configuration (those gone are marked removed)."""
    store.sync_sources(spec_of(s) for s in settings.sources)
    store.retire_sources(s.name for s in settings.sources)
