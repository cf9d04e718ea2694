"""The database's sources kept in step with the configuration."""

from __future__ import annotations

from digest.config import Settings, SourceSettings
from digest.store import SourceSpec, SourcesStore


def spec_of(source: SourceSettings) -> SourceSpec:
    return SourceSpec(source.name, source.url, source.kind)


def sync_sources(store: SourcesStore, settings: Settings) -> None:
    """Make the database's sources match the configuration file (those gone from it are
    marked removed); sources added at run time are the store's already."""
    configured = [s for s in settings.sources if not s.added]
    store.sync_sources(spec_of(s) for s in configured)
    store.retire_sources(s.name for s in configured)
