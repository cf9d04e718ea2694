"""Typed settings: built-in defaults < TOML file < ``DIGEST_*`` environment variables.

Every error names the file (or variable) and the key, and says what is allowed, e.g.
``digest.toml: sources[0].kind: 'podcast' is not one of auto, feed, html, text``.
The checkers are in :mod:`.checks`, the sections in :mod:`.sections`, the reading in
:mod:`.load`; configuration imports no behaviour (only errors, models and ``common``).
"""

# Re-exported ("as"): the package's face is these, and every public name of sections.py.
from digest.config.checks import MAX_SECONDS as MAX_SECONDS
from digest.config.checks import parse_duration as parse_duration
from digest.config.checks import setting as setting
from digest.config.load import database_at as database_at
from digest.config.load import default_sources as default_sources
from digest.config.load import load_settings as load_settings
from digest.config.load import parse_settings as parse_settings
from digest.config.load import resolve_location as resolve_location
from digest.config.sections import *  # noqa: F403
from digest.config.sections import _SECTIONS as _SECTIONS
