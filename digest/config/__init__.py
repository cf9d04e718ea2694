"""Typed settings: built-in defaults < TOML file < ``DIGEST_*`` environment variables.

Every error names the file (or variable) and the key, and says what is allowed, e.g.
``digest.toml: sources[0].kind: 'podcast' is not one of auto, feed, html, text``.
The checkers are in :mod:`.checks`, the sections in :mod:`.sections`, the reading in
:mod:`.load`; configuration imports no behaviour (only errors, models and ``common``).
"""

from digest.config.checks import MAX_SECONDS, parse_duration, setting
from digest.config.load import database_at, default_sources, load_settings, parse_settings, resolve_location
from digest.config.sections import (
    _SECTIONS,
    CONFIG_ENV,
    DEFAULT_CONFIG_NAME,
    EMAIL_KIND,
    SOURCE_KINDS,
    AlertSettings,
    BouncesSettings,
    DatabaseSettings,
    DigestSettings,
    DkimSettings,
    FetchSettings,
    GroupingSettings,
    InboundSettings,
    OutboxSettings,
    ScheduleSettings,
    Settings,
    SmtpSettings,
    SourceSettings,
    ThemeSettings,
    WebhookSettings,
    WebSettings,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_NAME",
    "EMAIL_KIND",
    "MAX_SECONDS",
    "SOURCE_KINDS",
    "_SECTIONS",
    "AlertSettings",
    "BouncesSettings",
    "DatabaseSettings",
    "DigestSettings",
    "DkimSettings",
    "FetchSettings",
    "GroupingSettings",
    "InboundSettings",
    "OutboxSettings",
    "ScheduleSettings",
    "Settings",
    "SmtpSettings",
    "SourceSettings",
    "ThemeSettings",
    "WebSettings",
    "WebhookSettings",
    "database_at",
    "default_sources",
    "load_settings",
    "parse_duration",
    "parse_settings",
    "resolve_location",
    "setting",
]
