"""Grouping on PostgreSQL: the shared statements (``digest/store/grouping.py``) over this
layout (text and evidence, as ``json``, in the article's row) and its JSON functions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime

from digest.store.base import record_of
from digest.store.dialect import Tx
from digest.store.grouping import GroupingArea
from digest.store.postgres.base import PgBase, by_columns
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

    # Many rows, a statement a batch (see ``by_columns``): each UPDATE of articles runs its
    # tracking trigger once (see the schema's step 0012), however many rows it changes. An
    # id once: the last given, as one statement a row had it.

    def _classified(self, tx: Tx, rows: list[Groups]) -> None:
        # The article's row holds the evidence too.
        found = {
            g.id: (g.id, json.dumps(list(g.regions)), json.dumps(list(g.themes)), e.places_json,
                   e.theme_matches_json)
            for g in rows
            if (e := g.evidence) is not None
        }  # fmt: skip
        by_columns(
            tx,
            "UPDATE articles a SET regions = v.regions::jsonb, themes = v.themes::jsonb,"
            " places = v.places::json, theme_matches = v.matches::json, grouped = TRUE"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[])"
            " AS v(id, regions, themes, places, matches) WHERE a.id = v.id",
            list(found.values()),
        )

    def _scored(self, tx: Tx, rows: list[Groups]) -> None:
        found = {g.id: (g.id, json.dumps(list(g.regions)), json.dumps(list(g.themes))) for g in rows}
        by_columns(
            tx,
            "UPDATE articles a SET regions = v.regions::jsonb, themes = v.themes::jsonb"
            " FROM unnest(%b::text[], %b::text[], %b::text[]) AS v(id, regions, themes)"
            " WHERE a.id = v.id",
            list(found.values()),
        )

    def _moved(self, tx: Tx, stories: Mapping[str, str]) -> None:
        if stories:
            tx.execute(
                "UPDATE articles a SET story = m.new FROM unnest(%b::text[], %b::text[]) AS m(old, new)"
                " WHERE a.story = m.old",
                [list(stories), list(stories.values())],
            )

    def _joined(self, tx: Tx, members: Mapping[str, str]) -> None:
        by_columns(
            tx,
            "UPDATE articles a SET story = v.story FROM unnest(%b::text[], %b::text[]) AS v(id, story)"
            " WHERE a.id = v.id AND a.story IS DISTINCT FROM v.story",
            list(members.items()),
        )
