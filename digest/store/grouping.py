"""Grouping: the evidence classification found (places, theme matches), the regions and
themes scored from it, and stories."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

from digest.common.dates import to_iso
from digest.store.base import Row, SqliteBase, decoded, dt, in_chunks, when
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


class GroupingArea(SqliteBase):
    def ungrouped(self) -> list[Ungrouped]:
        """Articles whose text has not been classified since it last changed."""
        return [
            ungrouped_of(row)
            for row in self._rows(
                "SELECT a.id, s.name AS source, a.title, t.summary_text, a.first_seen, a.published,"
                " a.url, a.author"
                " FROM articles a"
                " JOIN article_texts t ON t.article_id = a.id JOIN sources s ON s.id = a.source_id"
                " WHERE a.grouped = 0"
            )
        ]

    def mark_ungrouped(self) -> None:
        """Have every article classified again (after a vocabulary change)."""
        with self._write() as conn:
            conn.execute("UPDATE articles SET grouped = 0")

    def source_frequencies(self, source: str) -> tuple[int, dict[str, int], dict[str, int]]:
        """For one source's classified articles: their count, and in how many of them each
        place (by key) and each theme is found."""
        source_id = self._source_id(self.conn, source)
        total = self._value("SELECT count(*) FROM articles WHERE source_id = ? AND grouped = 1", [source_id])
        places = {
            row[0]: row[1]
            for row in self._rows(
                "SELECT p.value ->> 'key', count(DISTINCT a.id) FROM articles a"
                " JOIN article_evidence e ON e.article_id = a.id, json_each(e.places) p"
                " WHERE a.source_id = ? AND a.grouped = 1 GROUP BY 1",
                [source_id],
            )
        }
        themes = {
            row[0]: row[1]
            for row in self._rows(
                "SELECT t.key, count(*) FROM articles a"
                " JOIN article_evidence e ON e.article_id = a.id, json_each(e.theme_matches) t"
                " WHERE a.source_id = ? AND a.grouped = 1 GROUP BY 1",
                [source_id],
            )
        }
        return int(total), places, themes

    def evidence(self, source: str) -> list[Evidence]:
        """Stored places and theme matches of a source's classified articles."""
        return [
            Evidence(row["id"], row["places"], row["theme_matches"])
            for row in self._rows(
                "SELECT a.id, e.places, e.theme_matches FROM articles a JOIN sources s ON s.id = a.source_id"
                " JOIN article_evidence e ON e.article_id = a.id"
                " WHERE s.name = ? AND a.grouped = 1",
                [source],
            )
        ]

    def set_groups(self, rows: Iterable[Groups]) -> None:
        """Store each article's regions and themes, and the evidence where given (which marks
        the article classified)."""
        plain: list[tuple[str, str, str]] = []
        classified: list[tuple[str, str, str]] = []
        evidence: list[tuple[str, str, str]] = []
        for g in rows:
            scored = (json.dumps(list(g.regions)), json.dumps(list(g.themes)), g.id)
            if g.evidence is None:
                plain.append(scored)
            else:
                classified.append(scored)
                evidence.append((g.id, g.evidence.places_json, g.evidence.theme_matches_json))
        with self._write() as conn:
            conn.executemany("UPDATE articles SET regions = ?, themes = ? WHERE id = ?", plain)
            conn.executemany(
                "UPDATE articles SET regions = ?, themes = ?, grouped = 1 WHERE id = ?", classified
            )
            conn.executemany(
                "INSERT INTO article_evidence (article_id, places, theme_matches) VALUES (?, ?, ?)"
                " ON CONFLICT (article_id) DO UPDATE SET places = excluded.places,"
                " theme_matches = excluded.theme_matches",
                evidence,
            )

    def story_inputs(self, since: datetime | None = None, *, classified_only: bool = False) -> list[StoryRow]:
        """What story clustering reads, for articles first seen at or after ``since`` (only
        those classified since they last changed, with ``classified_only``)."""
        sql = (
            "SELECT a.id, s.name AS source, a.title, t.summary_text, a.published, a.first_seen, e.places"
            " FROM articles a JOIN article_texts t ON t.article_id = a.id"
            " LEFT JOIN article_evidence e ON e.article_id = a.id"
            " JOIN sources s ON s.id = a.source_id"
        )
        where, args = ["1 = 1"], []
        if since is not None:
            where.append("a.first_seen >= ?")
            args.append(to_iso(since))
        if classified_only:
            where.append("a.grouped = 1")
        sql += f" WHERE {' AND '.join(where)}"
        return [story_row_of(row) for row in self._rows(sql + " ORDER BY a.first_seen, a.id", args)]

    def save_stories(self, article_ids: Sequence[str], stories: Iterable[Story]) -> None:
        """Replace the stories of ``article_ids`` with ``stories``."""
        now = to_iso(self.now())
        stories = list(stories)
        members = {member: story.id for story in stories for member in story.members}
        loose = [article_id for article_id in article_ids if article_id not in members]
        with self._write() as conn:
            # Only rows whose story changes are written.
            conn.executemany(
                "UPDATE articles SET story = ? WHERE id = ? AND story IS NOT ?",
                [(story, member, story) for member, story in members.items()],
            )
            for chunk, marks in in_chunks(loose):
                conn.execute(
                    f"UPDATE articles SET story = NULL WHERE id IN ({marks}) AND story IS NOT NULL", chunk
                )
            for story in stories:
                marks = ",".join("?" * len(story.members))
                first = conn.execute(
                    f"SELECT min(first_seen) FROM articles WHERE id IN ({marks})", list(story.members)
                ).fetchone()[0]
                conn.execute(
                    "INSERT INTO stories (id, label, articles, first_seen, updated) VALUES (?, ?, 0, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET label = excluded.label, updated = excluded.updated",
                    (story.id, story.label, first, now),
                )
            # Counts from the articles themselves, so stories split or merged elsewhere stay right.
            conn.execute(
                "UPDATE stories SET articles = (SELECT count(*) FROM articles a WHERE a.story = stories.id)"
            )
            conn.execute("DELETE FROM stories WHERE articles < 2")
            conn.execute(
                "UPDATE articles SET story = NULL WHERE story IS NOT NULL"
                " AND story NOT IN (SELECT id FROM stories)"
            )

    def group_counts(self, since: datetime | None = None) -> GroupCounts:
        """Regions, themes and stories with their article counts (first seen at or after ``since``)."""
        where, args = ("WHERE a.first_seen >= ?", [to_iso(since)]) if since else ("", [])
        regions = tuple(
            RegionCount(row[0], row[1], row[2])
            for row in self._rows(
                "SELECT r.value, count(*), sum(r.key = 0) FROM articles a, json_each(a.regions) r"
                f" {where} GROUP BY 1 ORDER BY 2 DESC, 1",
                args,
            )
        )
        themes = tuple(
            ThemeCount(row[0], row[1])
            for row in self._rows(
                f"SELECT t.value, count(*) FROM articles a, json_each(a.themes) t {where}"
                " GROUP BY 1 ORDER BY 2 DESC, 1",
                args,
            )
        )
        stories = tuple(
            StoryCount(row[0], row[1], row[2], tuple(json.loads(row[3])))
            for row in self._rows(
                "SELECT st.id, st.label, count(*), json_group_array(a.id) FROM stories st"
                f" JOIN articles a ON a.story = st.id {where} GROUP BY st.id HAVING count(*) >= 2"
                " ORDER BY 3 DESC, st.first_seen DESC",
                args,
            )
        )
        return GroupCounts(regions, themes, stories)


def ungrouped_of(row: Row) -> Ungrouped:
    return Ungrouped(
        row["id"],
        row["source"],
        row["title"],
        row["summary_text"],
        when(row["first_seen"]),
        dt(row["published"]),
        row["url"],
        row["author"],
    )


def story_row_of(row: Row) -> StoryRow:
    return StoryRow(
        id=row["id"],
        source=row["source"],
        title=row["title"],
        summary_text=row["summary_text"],
        published=dt(row["published"]),
        first_seen=when(row["first_seen"]),
        places=tuple(decoded(row["places"]) or ()),
    )
