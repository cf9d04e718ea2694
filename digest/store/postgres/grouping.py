"""Grouping on PostgreSQL: the shared statements (``digest/store/grouping.py``) over this
layout (text and evidence, as ``json``, in the article's row) and its JSON functions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from digest.store.base import record_of
from digest.store.dialect import Tx
from digest.store.grouping import GroupingArea
from digest.store.postgres.base import PgBase
from digest.store.records import Groups, StoryKey


class PgGroupingArea(GroupingArea, PgBase):
    _text, _texts = "a.summary_text", ""
    _places, _matches = "a.places::text", "a.theme_matches::text"
    _evidence, _order = "", "a.seq"
    _region_items = (
        "jsonb_array_elements_text(a.regions) WITH ORDINALITY r(value, position)",
        "r.position = 1",
    )
    _theme_items, _member_ids = (
        "jsonb_array_elements_text(a.themes) t(value)",
        "array_agg(a.id ORDER BY a.seq)",
    )

    def story_keys(
        self, keys: Iterable[str], since: datetime, until: datetime, *, per_key: int
    ) -> list[StoryKey]:
        # One statement: for each key, its newest rows off the index (a lateral LIMIT).
        rows = self._rows(
            "SELECT k.key, s.at, s.article_id, s.weight FROM unnest(?::text[]) AS k(key),"
            " LATERAL (SELECT at, article_id, weight FROM story_keys WHERE key = k.key AND at >= ?"
            " AND at <= ? ORDER BY at DESC, article_id DESC LIMIT ?) s",
            [list(dict.fromkeys(keys)), since, until, per_key],
        )
        return [record_of(StoryKey, row) for row in rows]

    def _classified(self, tx: Tx, rows: list[Groups]) -> None:
        # One statement a row: the article's row holds the evidence too.
        tx.executemany(
            "UPDATE articles SET regions = ?::jsonb, themes = ?::jsonb, places = ?::json,"
            " theme_matches = ?::json, grouped = TRUE WHERE id = ?",
            [
                (json.dumps(list(g.regions)), json.dumps(list(g.themes)), g.evidence.places_json,
                 g.evidence.theme_matches_json, g.id)
                for g in rows
                if g.evidence
            ],
        )  # fmt: skip
