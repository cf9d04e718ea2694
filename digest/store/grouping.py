"""Grouping: the evidence classification found (places, theme matches), the regions and
themes scored from it, and stories."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import ClassVar

from digest.store.base import Row, decoded, record_of, when
from digest.store.dialect import Area, Tx
from digest.store.records import (
    Evidence,
    GroupCounts,
    Groups,
    RegionCount,
    Story,
    StoryCount,
    StoryEntry,
    StoryHead,
    StoryKey,
    StoryMember,
    StoryRow,
    StoryWords,
    ThemeCount,
    Ungrouped,
)


class GroupingArea(Area):
    """Grouping, in the statements both backends share. The layouts differ (SQLite keeps an
    article's text and evidence in tables of their own, PostgreSQL in the article's row), and
    so do their JSON functions: each backend's class names them."""

    _text: ClassVar[str]  # the summary text column
    _texts: ClassVar[str]  # what joins it to ``articles a``
    _places: ClassVar[str]  # the evidence's places, as JSON text
    _matches: ClassVar[str]  # the evidence's theme matches, as JSON text
    _evidence: ClassVar[str]  # what joins the evidence to ``articles a``
    _order: ClassVar[str]  # storage order of articles
    # Table functions over JSON: the regions ``r`` and themes ``t`` (``value``; ``r`` as
    # lead: the first region), and the stories' member ids as one aggregate.
    _region_items: ClassVar[tuple[str, str]]
    _theme_items: ClassVar[str]
    _member_ids: ClassVar[str]

    def ungrouped(self) -> list[Ungrouped]:
        """Articles whose text has not been classified since it last changed, in storage order."""
        return [
            ungrouped_of(row)
            for row in self._rows(
                f"SELECT a.id, s.name AS source, a.title, {self._text} AS summary_text, a.first_seen,"
                f" a.published, a.url, a.author FROM articles a JOIN sources s ON s.id = a.source_id"
                f" {self._texts} WHERE a.grouped = {self.dialect.false} ORDER BY {self._order}"
            )
        ]

    def mark_ungrouped(self) -> None:
        """Have every article classified again (after a vocabulary change)."""
        with self._articles_write() as tx:
            tx.execute("UPDATE articles SET grouped = FALSE")

    def evidence(self, source: str) -> list[Evidence]:
        """Stored places and theme matches of a source's classified articles, in storage order."""
        return [
            Evidence(row["id"], row["places"], row["theme_matches"])
            for row in self._rows(
                f"SELECT a.id, {self._places} AS places, {self._matches} AS theme_matches FROM articles a"
                f" JOIN sources s ON s.id = a.source_id {self._evidence}"
                f" WHERE s.name = ? AND a.grouped = TRUE AND {self._places} IS NOT NULL"
                f" ORDER BY {self._order}",
                [source],
            )
        ]

    def story_inputs(self, since: datetime | None = None, *, classified_only: bool = False) -> list[StoryRow]:
        """What story clustering reads, for articles first seen at or after ``since`` (only
        those classified since they last changed, with ``classified_only``)."""
        where, args = ["1 = 1"], []
        if since is not None:
            where.append("a.first_seen >= ?")
            args.append(since)
        if classified_only:
            where.append("a.grouped = TRUE")
        return [
            story_row_of(row)
            for row in self._rows(
                f"SELECT a.id, s.name AS source, a.title, {self._text} AS summary_text, a.published,"
                f" a.first_seen, {self._places} AS places FROM articles a"
                f" JOIN sources s ON s.id = a.source_id {self._texts} {self._evidence}"
                f" WHERE {' AND '.join(where)} ORDER BY a.first_seen, a.id",
                args,
            )
        ]

    def save_stories(self, article_ids: Sequence[str], stories: Iterable[Story]) -> None:
        """Replace the stories of ``article_ids`` with ``stories``; only the stories they
        leave or join are counted again (a pull touches a few, whatever the database holds)."""
        now = self.now()
        stories = list(stories)
        members = {member: story.id for story in stories for member in story.members}
        absorbed = {old: story.id for story in stories for old in story.absorbed}
        with self._articles_write() as tx:
            touched = {story.id for story in stories}
            current: dict[str, str] = {}
            for inside, args in self.dialect.in_list("id", [*article_ids, *members]):
                rows = tx.execute(
                    f"SELECT id, story FROM articles WHERE {inside} AND story IS NOT NULL", args
                )
                current.update((row["id"], row["story"]) for row in rows.fetchall())
            touched.update(current.values(), absorbed)
            # One named in none leaves its story, unless that story is absorbed: then it
            # follows it, as every member of an absorbed story does.
            loose = [i for i in article_ids if i not in members and current.get(i) not in absorbed]
            # Absorbed stories first (a member named for another story then leaves for it),
            # all in one statement: a story's new id may be another absorbed story's old one.
            self._moved(tx, {old: new for old, new in absorbed.items() if old != new})
            # Only rows whose story changes are written.
            self._joined(tx, members)
            for inside, args in self.dialect.in_list("id", loose):
                tx.execute(f"UPDATE articles SET story = NULL WHERE {inside} AND story IS NOT NULL", args)
            for story in stories:
                tx.execute(  # its members carry its id by now
                    "INSERT INTO stories (id, label, articles, first_seen, updated)"
                    " SELECT ?, ?, 0, min(first_seen), ? FROM articles WHERE story = ?"
                    " ON CONFLICT (id) DO UPDATE SET label = excluded.label, updated = excluded.updated",
                    (story.id, story.label, now, story.id),
                )
            # Counts from the articles themselves, so stories split or merged elsewhere stay right.
            for inside, args in self.dialect.in_list("id", sorted(touched)):
                counted = "(SELECT count(*) FROM articles a WHERE a.story = stories.id)"
                tx.execute(f"UPDATE stories SET articles = {counted} WHERE {inside}", args)
                gone = tx.execute(f"SELECT id FROM stories WHERE {inside} AND articles < 2", args).fetchall()
                for lone, lone_args in self.dialect.in_list("story", [row["id"] for row in gone]):
                    tx.execute(f"UPDATE articles SET story = NULL WHERE {lone}", lone_args)
                tx.execute(f"DELETE FROM stories WHERE {inside} AND articles < 2", args)
            self._changed(tx)

    def source_frequencies(self, source: str) -> tuple[int, dict[str, int], dict[str, int]]:
        """For one source's classified articles: their count, and in how many of them each
        place (by key) and each theme is found (kept by the database's triggers)."""
        rows = self._rows(
            "SELECT kind, key, articles FROM source_frequencies WHERE source_id = ? AND articles > 0",
            [self._known_source(source)],
        )
        found: dict[str, dict[str, int]] = {"all": {}, "place": {}, "theme": {}}
        for row in rows:
            found[row["kind"]][row["key"]] = int(row["articles"])
        return found["all"].get("", 0), found["place"], found["theme"]

    def set_groups(self, rows: Iterable[Groups]) -> None:
        """Store each article's regions and themes, and the evidence where given (which marks
        the article classified)."""
        rows = list(rows)
        with self._articles_write() as tx:
            self._scored(tx, [g for g in rows if g.evidence is None])
            self._classified(tx, [g for g in rows if g.evidence is not None])
            self._changed(tx)

    def group_counts(self, since: datetime | None = None) -> GroupCounts:
        """Regions, themes and stories with their article counts (first seen at or after
        ``since``), most articles first, names in byte order."""
        where, args = ("WHERE a.first_seen >= ?", [since]) if since else ("", [])
        regions, lead = self._region_items
        bytewise = self.dialect.bytewise
        return GroupCounts(
            tuple(
                RegionCount(row["value"], row["n"], row["lead"])
                for row in self._rows(
                    f"SELECT r.value, count(*) AS n, count(*) FILTER (WHERE {lead}) AS lead"
                    f" FROM articles a, {regions} {where} GROUP BY 1 ORDER BY 2 DESC, r.value{bytewise}",
                    args,
                )
            ),
            tuple(
                ThemeCount(row["value"], row["n"])
                for row in self._rows(
                    f"SELECT t.value, count(*) AS n FROM articles a, {self._theme_items} {where}"
                    f" GROUP BY 1 ORDER BY 2 DESC, t.value{bytewise}",
                    args,
                )
            ),
            tuple(
                StoryCount(row["id"], row["label"], row["n"], tuple(decoded(row["members"])))
                for row in self._rows(
                    f"SELECT st.id, st.label, count(*) AS n, {self._member_ids} AS members"
                    f" FROM stories st JOIN articles a ON a.story = st.id {where} GROUP BY st.id"
                    " HAVING count(*) >= 2 ORDER BY 3 DESC, st.first_seen DESC",
                    args,
                )
            ),
        )

    # --- the story index ------------------------------------------------------------------

    def story_index_empty(self) -> bool:
        return self._row("SELECT 1 AS found FROM story_words LIMIT 1") is None

    def word_frequencies(self, words: Iterable[str]) -> tuple[int, dict[str, int]]:
        wanted = [w for w in dict.fromkeys(words) if w]
        found: dict[str, int] = {}
        for inside, args in self.dialect.in_list("word", wanted):
            rows = self._rows(f"SELECT word, articles FROM story_frequencies WHERE {inside}", args)
            found.update({row["word"]: int(row["articles"]) for row in rows if row["articles"] > 0})
        total = self._value("SELECT coalesce(max(articles), 0) FROM story_frequencies WHERE word = ''")
        return int(total), found

    def story_keys(
        self, keys: Iterable[str], since: datetime, until: datetime, *, per_key: int
    ) -> list[StoryKey]:
        raise NotImplementedError  # each backend reads the latest of each key its own way

    def story_entries(self, article_ids: Iterable[str]) -> list[StoryEntry]:
        found: list[StoryEntry] = []
        for inside, args in self.dialect.in_list("w.article_id", list(dict.fromkeys(article_ids))):
            found.extend(
                record_of(StoryEntry, row)
                for row in self._rows(
                    "SELECT w.article_id AS id, a.title, a.first_seen, a.published, w.words, w.entities,"
                    " a.story, w.centrality FROM story_words w JOIN articles a ON a.id = w.article_id"
                    f" WHERE {inside}",
                    args,
                )
            )
        return found

    def story_heads(self, story_ids: Iterable[str]) -> dict[str, StoryHead]:
        bytewise = self.dialect.bytewise
        centrality = "coalesce(w.centrality, 0)"
        earliest: dict[str, StoryMember] = {}
        central: dict[str, StoryMember] = {}
        for inside, args in self.dialect.in_list("a.story", list(dict.fromkeys(story_ids))):
            for row in self._rows(
                "SELECT * FROM (SELECT a.story, a.id, a.first_seen, a.title, centrality,"
                f" row_number() OVER (PARTITION BY a.story ORDER BY a.first_seen, a.id{bytewise}) AS by_time,"
                f" row_number() OVER (PARTITION BY a.story ORDER BY centrality DESC, a.first_seen,"
                f" a.id{bytewise}) AS by_centrality FROM (SELECT a.story, a.id, a.first_seen, a.title,"
                f" {centrality} AS centrality FROM articles a"
                f" LEFT JOIN story_words w ON w.article_id = a.id WHERE {inside}) a"
                ") ranked WHERE by_time = 1 OR by_centrality = 1",
                args,
            ):
                member = record_of(StoryMember, row)
                if row["by_time"] == 1:
                    earliest[row["story"]] = member
                if row["by_centrality"] == 1:
                    central[row["story"]] = member
        return {story: StoryHead(first, central[story]) for story, first in earliest.items()}

    def index_stories(self, entries: Sequence[StoryWords], gained: Mapping[str, float]) -> None:
        mark = self.dialect.json_mark
        ids = [e.id for e in entries]
        counted: Counter[str] = Counter()
        with self._articles_write() as tx:
            for inside, args in self.dialect.in_list("article_id", ids):
                for row in tx.execute(f"SELECT words FROM story_words WHERE {inside}", args).fetchall():
                    counted.subtract(decoded(row["words"]).keys())
                    counted[""] -= 1
                tx.execute(f"DELETE FROM story_keys WHERE {inside}", args)
                tx.execute(f"DELETE FROM story_words WHERE {inside}", args)
            stored: set[str] = set()
            for inside, args in self.dialect.in_list("id", ids):
                rows = tx.execute(f"SELECT id FROM articles WHERE {inside}", args).fetchall()
                stored.update(row["id"] for row in rows)
            kept = [e for e in entries if e.id in stored]
            tx.executemany(
                "INSERT INTO story_words (article_id, at, words, entities, centrality)"
                f" VALUES (?, ?, {mark}, {mark}, ?)",
                [(e.id, e.at, json.dumps(e.words), json.dumps(list(e.entities)), e.centrality) for e in kept],
            )
            tx.executemany(
                "INSERT INTO story_keys (key, at, article_id, weight) VALUES (?, ?, ?, ?)",
                [(key, e.at, e.id, weight) for e in kept for key, weight in e.keys],
            )
            for e in kept:
                counted.update(e.words.keys())
                counted[""] += 1
            tx.executemany(
                "INSERT INTO story_frequencies (word, articles) VALUES (?, ?) ON CONFLICT (word)"
                " DO UPDATE SET articles = story_frequencies.articles + excluded.articles",
                [(word, n) for word, n in counted.items() if n],
            )
            given = set(ids)  # an entry's centrality is the one it was given
            tx.executemany(
                "UPDATE story_words SET centrality = centrality + ? WHERE article_id = ?",
                [(more, article_id) for article_id, more in gained.items() if article_id not in given],
            )

    def clear_story_index(self) -> None:
        with self._articles_write() as tx:
            for table in ("story_keys", "story_words", "story_frequencies"):
                tx.execute(f"DELETE FROM {table}")

    def group_totals(self) -> GroupCounts:
        """As ``group_counts()`` over every article, without stories, read from the totals the
        database keeps (see the schema)."""
        bytewise = self.dialect.bytewise
        rows = self._rows(
            "SELECT kind, slug, articles, lead FROM group_totals WHERE kind IN ('region', 'theme')"
            f" AND articles > 0 ORDER BY articles DESC, slug{bytewise}"
        )
        return GroupCounts(
            tuple(RegionCount(r["slug"], r["articles"], r["lead"]) for r in rows if r["kind"] == "region"),
            tuple(ThemeCount(r["slug"], r["articles"]) for r in rows if r["kind"] == "theme"),
            (),
        )

    def _classified(self, tx: Tx, rows: list[Groups]) -> None:
        """Store the scores and the evidence of articles just classified, marking them so."""
        raise NotImplementedError

    def _scored(self, tx: Tx, rows: list[Groups]) -> None:
        """Store the regions and themes of articles scored again (their evidence unchanged)."""
        raise NotImplementedError

    def _joined(self, tx: Tx, members: Mapping[str, str]) -> None:
        """Put each article (a key) in its story (its value), writing only those that move."""
        raise NotImplementedError

    def _moved(self, tx: Tx, stories: Mapping[str, str]) -> None:
        """Move every member of each story (a key) to another (its value), in one statement:
        which story an article is in is read before any moves."""
        raise NotImplementedError


class SqliteGroupingArea(GroupingArea):
    """SQLite's layout: text and evidence in tables of their own; JSON read with ``json_each``."""

    _text, _texts = "t.summary_text", "JOIN article_texts t ON t.article_id = a.id"
    _places, _matches = "e.places", "e.theme_matches"
    _evidence, _order = "LEFT JOIN article_evidence e ON e.article_id = a.id", "a.rowid"
    _region_items = ("json_each(a.regions) r", "r.key = 0")
    _theme_items, _member_ids = "json_each(a.themes) t", "json_group_array(a.id)"

    def story_keys(
        self, keys: Iterable[str], since: datetime, until: datetime, *, per_key: int
    ) -> list[StoryKey]:
        # A statement a key, each reading its newest rows off the index backwards: a few
        # microseconds each, where one statement numbering every row of every key would
        # read them all (the window's, on a busy site: most of the table).
        sql = (
            "SELECT key, at, article_id, weight FROM story_keys WHERE key = ? AND at >= ? AND at <= ?"
            " ORDER BY at DESC, article_id DESC LIMIT ?"
        )
        bounds = (since, until, per_key)
        found: list[StoryKey] = []
        # Made directly, each time read once: a pull reads tens of thousands of these, and
        # an article's ten keys share its time.
        times: dict[str, datetime] = {}
        for key in dict.fromkeys(keys):
            for row in self._rows(sql, [key, *bounds]):
                at = times.get(row["at"]) or times.setdefault(row["at"], when(row["at"]))
                found.append(StoryKey(row["key"], at, row["article_id"], row["weight"]))
        return found

    def _scored(self, tx: Tx, rows: list[Groups]) -> None:
        tx.executemany(
            "UPDATE articles SET regions = ?, themes = ? WHERE id = ?",
            [(json.dumps(list(g.regions)), json.dumps(list(g.themes)), g.id) for g in rows],
        )

    def _joined(self, tx: Tx, members: Mapping[str, str]) -> None:
        tx.executemany(
            "UPDATE articles SET story = ? WHERE id = ? AND story IS NOT ?",
            [(story, member, story) for member, story in members.items()],
        )

    def _moved(self, tx: Tx, stories: Mapping[str, str]) -> None:
        if stories:  # one parameter, however many: the pairs as JSON
            tx.execute(
                "UPDATE articles SET story = m.value FROM json_each(?) m WHERE articles.story = m.key",
                [json.dumps(stories)],
            )

    def _classified(self, tx: Tx, rows: list[Groups]) -> None:
        tx.executemany(
            "UPDATE articles SET regions = ?, themes = ?, grouped = TRUE WHERE id = ?",
            [(json.dumps(list(g.regions)), json.dumps(list(g.themes)), g.id) for g in rows],
        )
        tx.executemany(
            "INSERT INTO article_evidence (article_id, places, theme_matches) VALUES (?, ?, ?)"
            " ON CONFLICT (article_id) DO UPDATE SET places = excluded.places,"
            " theme_matches = excluded.theme_matches",
            [(g.id, g.evidence.places_json, g.evidence.theme_matches_json) for g in rows if g.evidence],
        )


def ungrouped_of(row: Row) -> Ungrouped:
    return record_of(Ungrouped, row)


def story_row_of(row: Row) -> StoryRow:
    return record_of(StoryRow, row)
