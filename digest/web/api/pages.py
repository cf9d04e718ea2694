"""Pages of a list: an opaque cursor (base64url of a JSON value: where the next page starts)
and the bounded page size every list takes."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from digest.web.api.framework import Param
from digest.web.api.schema import Invalid, Meta

MAX_LIMIT = 200
LIMIT = Param(
    "limit",
    Annotated[int, Meta(minimum=1, maximum=MAX_LIMIT)],
    f"How many at most (1 to {MAX_LIMIT}; 50 when not given).",
)
CURSOR = Param("cursor", Annotated[str, Meta(max_length=400)], "Where the page starts: a list's `next`.")


def encode(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(cursor: str | None, kind: type) -> Any:
    """The value a cursor holds (None: the first page); Invalid for one this API did not make."""
    if cursor is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid("cursor: not one this API gave (use a list's `next`)") from None
    if (
        not isinstance(value, kind)
        or isinstance(value, bool)
        or (isinstance(value, int) and not 0 <= value < 2**53)
    ):
        raise Invalid("cursor: not one this API gave (use a list's `next`)")
    return value


T = TypeVar("T")


def sliced(items: Sequence[T], start: int, limit: int) -> tuple[Sequence[T], str | None]:
    """The page of ``items`` from ``start`` (an offset), and the cursor of the next (None:
    the last page): for the lists a store gives whole (bounded) and pages by place."""
    more = len(items) > start + limit
    return items[start : start + limit], encode(start + limit) if more else None


def limit_of(query: dict[str, Any]) -> int:
    return int(query.get("limit", 50))
