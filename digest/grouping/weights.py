"""How much a place or a theme tells within one source: smoothed inverse document frequency.
A place the sample site names in nearly every article (China) carries little information."""

from __future__ import annotations

import math


def idf(df: int, articles: int) -> float:
    """Smoothed IDF of something found in ``df`` of a source's ``articles``."""
    return math.log((articles + 1) / (df + 1)) + 1.0
