"""Where the bundled ``seeds/``, ``templates/`` and ``config.example.toml`` are, whether
digest runs from an installed wheel or from a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # digest/, two up from common/resources.py


def bundled(name: str) -> Path:
    """The bundled file or folder ``name``: inside the package when installed from a wheel,
    beside it in a source checkout (an editable install)."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.exists():
            return candidate
    return _PACKAGE / name
