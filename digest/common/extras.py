"""Features that are install extras (``pip install 'digest[NAME]'``): whether one is
installed, and the one line that names it when a setting needs it and it is not. Checked
when the configuration is read and when a store is opened, so a missing extra is said
before any work starts, not as an ImportError in the middle of a pull."""

from __future__ import annotations

import importlib.util

from digest.common.errors import ConfigError

# extra -> the module that says it is installed
MODULES = {"fulltext": "trafilatura", "postgres": "psycopg"}


def installed(extra: str) -> bool:
    """Whether the modules of ``extra`` can be imported."""
    try:
        return importlib.util.find_spec(MODULES[extra]) is not None
    except (ImportError, ValueError):  # a half-removed package
        return False


def require(extra: str, what: str) -> None:
    """Raises ConfigError naming ``extra`` when it is not installed; ``what`` says which
    setting needs it ("digest.toml: source 'x': full_text = true")."""
    if not installed(extra):
        raise ConfigError(
            f"{what} needs the {extra} extra, which is not installed: pip install 'digest[{extra}]'"
        )
