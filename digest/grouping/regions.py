"""The world regions (slugs and display names), read from ``digest/data/regions.toml``."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

_DATA = Path(__file__).resolve().parent.parent / "data" / "regions.toml"


@cache
def regions() -> dict[str, str]:
    """Region slug → display name, in the order of the data file."""
    with _DATA.open("rb") as handle:
        data = tomllib.load(handle)
    return {entry["slug"]: entry["name"] for entry in data["regions"]}
