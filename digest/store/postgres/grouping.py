"""Grouping on PostgreSQL: evidence as ``json`` in the article row, regions and themes,
stories (the same meaning as the SQLite area)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

from digest.store.grouping import story_row_of, ungrouped_of
from digest.store.postgres.base import PgBase
from digest.store.records import (
    Evidence,
    GroupCounts,
    Groups,
    RegionCount,
    Story,
    StoryCount,
    StoryRow,
    ThemeCount,
    Ungrouped,
)


class PgGroupingArea(PgBase):
    def ungrouped(self) -> list[Ungrouped]:
        return [
            ungrouped_of(row)
            for row in self._rows(
                "SELECT a.id, s.name AS source, a.title, a.summary_text, a.first_seen, a.published,"
                " a.url, a.author"
                " FROM articles a JOIN sources s ON s.id = a.source_id WHERE NOT a.grouped ORDER BY a.seq"
            )
        ]

    def mark_ungrouped(self) -> None:
        with self._articles_write() as conn:
            conn.execute("UPDATE articles SET grouped = FALSE")

    def source_frequencies(self, source: str) -> tuple[int, dict[str, int], dict[str, int]]:
        with self.pool.connection() as conn:
            source_id = self._source_id(conn, source)
        total = self._value("SELECT count(*) FROM articles WHERE source_id = %s AND grouped", [source_id])
        places = {
            row["key"]: row["n"]
            for row in self._rows(
                "SELECT p.value ->> 'key' AS key, count(DISTINCT a.id) AS n FROM articles a,"
                " json_array_elements(a.places) p WHERE a.source_id = %s AND a.grouped GROUP BY 1",
                [source_id],
            )
        }
        themes = {
            row["key"]: row["n"]
            for row in self._rows(
                "SELECT t AS key, count(*) AS n FROM articles a, json_object_keys(a.theme_matches) t"
                " WHERE a.source_id = %s AND a.grouped GROUP BY 1",
                [source_id],
            )
        }
        return int(total), places, themes

    def evidence(self, source: str) -> list[Evidence]:
        return [
            Evidence(row["id"], row["places"], row["theme_matches"])
            for row in self._rows(
                "SELECT a.id, a.places::text AS places, a.theme_matches::text AS theme_matches"
                " FROM articles a JOIN sources s ON s.id = a.source_id"
                " WHERE s.name = %s AND a.grouped AND a.places IS NOT NULL ORDER BY a.seq",
                [source],
            )
        ]

    def set_groups(self, rows: Iterable[Groups]) -> None:
        plain: list[tuple[str, str, str]] = []
        classified: list[tuple[str, str, str, str, str]] = []
        for g in rows:
            regions, themes = json.dumps(list(g.regions)), json.dumps(list(g.themes))
            if g.evidence is None:
                plain.append((regions, themes, g.id))
            else:
                classified.append(
                    (regions, themes, g.evidence.places_json, g.evidence.theme_matches_json, g.id)
                )
        with self._articles_write() as conn, conn.cursor() as cursor:
            cursor.executemany(
                "UPDATE articles SET regions = %s::jsonb, themes = %s::jsonb WHERE id = %s", plain
            )
            cursor.executemany(
                "UPDATE articles SET regions = %s::jsonb, themes = %s::jsonb, places = %s::json,"
                " theme_matches = %s::json, grouped = TRUE WHERE id = %s",
                classified,
            )
            self._changed(conn)

    def story_inputs(self, since: datetime | None = None, *, classified_only: bool = False) -> list[StoryRow]:
        where, args = ["TRUE"], []
        if since is not None:
            where.append("a.first_seen >= %s")
            args.append(since)
        if classified_only:
            where.append("a.grouped")
        return [
            story_row_of(row)
            for row in self._rows(
                "SELECT a.id, s.name AS source, a.title, a.summary_text, a.published, a.first_seen, a.places"
                f" FROM articles a JOIN sources s ON s.id = a.source_id WHERE {' AND '.join(where)}"
                " ORDER BY a.first_seen, a.id",
                args,
            )
        ]

    def save_stories(self, article_ids: Sequence[str], stories: Iterable[Story]) -> None:
        now = self.now()
        stories = list(stories)
        members = {member: story.id for story in stories for member in story.members}
        loose = [article_id for article_id in article_ids if article_id not in members]
        with self._articles_write() as conn:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "UPDATE articles SET story = %s WHERE id = %s AND story IS DISTINCT FROM %s",
                    [(story, member, story) for member, story in members.items()],
                )
            conn.execute("UPDATE articles SET story = NULL WHERE id = ANY(%s) AND story IS NOT NULL", [loose])
            for story in stories:
                conn.execute(
                    "INSERT INTO stories (id, label, articles, first_seen, updated)"
                    " SELECT %s, %s, 0, min(first_seen), %s FROM articles WHERE id = ANY(%s)"
                    " ON CONFLICT (id) DO UPDATE SET label = excluded.label, updated = excluded.updated",
                    (story.id, story.label, now, list(story.members)),
                )
            conn.execute(
                "UPDATE stories SET articles = (SELECT count(*) FROM articles a WHERE a.story = stories.id)"
            )
            conn.execute("DELETE FROM stories WHERE articles < 2")
            conn.execute(
                "UPDATE articles SET story = NULL WHERE story IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM stories st WHERE st.id = articles.story)"
            )
            self._changed(conn)

    def group_counts(self, since: datetime | None = None) -> GroupCounts:
        where, args = ("WHERE a.first_seen >= %s", [since]) if since else ("", [])
        regions = tuple(
            RegionCount(row["value"], row["n"], row["lead"])
            for row in self._rows(
                "SELECT r.value, count(*) AS n, count(*) FILTER (WHERE r.position = 1) AS lead"
                " FROM articles a, jsonb_array_elements_text(a.regions) WITH ORDINALITY r(value, position)"
                f' {where} GROUP BY 1 ORDER BY 2 DESC, r.value COLLATE "C"',  # SQLite's byte order
                args,
            )
        )
        themes = tuple(
            ThemeCount(row["value"], row["n"])
            for row in self._rows(
                "SELECT t.value, count(*) AS n FROM articles a, jsonb_array_elements_text(a.themes) t(value)"
                f' {where} GROUP BY 1 ORDER BY 2 DESC, t.value COLLATE "C"',
                args,
            )
        )
        stories = tuple(
            StoryCount(row["id"], row["label"], row["n"], tuple(row["members"]))
            for row in self._rows(
                "SELECT st.id, st.label, count(*) AS n, array_agg(a.id ORDER BY a.seq) AS members"
                f" FROM stories st JOIN articles a ON a.story = st.id {where} GROUP BY st.id"
                " HAVING count(*) >= 2 ORDER BY 3 DESC, st.first_seen DESC",
                args,
            )
        )
        return GroupCounts(regions, themes, stories)
