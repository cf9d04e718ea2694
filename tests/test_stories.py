"""Story clustering on hand-made batches: time decides what may link, and the work stays
near-linear whatever the batch (no article is compared with every other)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.grouping import stories
from digest.grouping.stories import StoryInput, cluster
from digest.store import StoryHead, StoryMember

from .helpers import SEEDS

WEEK = timedelta(days=7)
T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)


def _paragraphs() -> list[str]:
    found = []
    for path in sorted(SEEDS.glob("*.txt")):
        found += [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if len(p) > 200]
    return found


PARAGRAPHS = _paragraphs()


def item(n: int, text: str, seen: datetime, published: datetime | None = None) -> StoryInput:
    title, _, lead = text.partition(". ")
    return StoryInput(id=f"a{n:05}", title=title, lead=lead, first_seen=seen, published=published)


def together(found: list[stories.Story], *ids: str) -> bool:
    return any(set(ids) <= set(story.members) for story in found)


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    cosine = stories._cosine

    def counted(a: dict[str, float], b: dict[str, float]) -> float:
        calls[0] += 1
        return cosine(a, b)

    monkeypatch.setattr(stories, "_cosine", counted)
    return calls


def test_the_seeds_give_enough_text() -> None:
    assert len(PARAGRAPHS) >= 50


@pytest.mark.parametrize("size", [500, 3000])
def test_near_identical_items_cost_a_bounded_number_of_comparisons(size: int, comparisons: list[int]) -> None:
    # The pathological feed: one paragraph, each copy differing by a word or two.
    base = PARAGRAPHS[0]
    batch = [item(n, f"{base} Update {n} number{n}.", T0 + timedelta(minutes=n)) for n in range(size)]
    found = cluster(batch, WEEK)
    assert len(found) == 1 and len(found[0].members) == size
    assert comparisons[0] <= stories.NEIGHBOURS * size


def test_exact_copies_are_linked_without_comparing(comparisons: list[int]) -> None:
    batch = [item(n, PARAGRAPHS[1], T0 + timedelta(minutes=n)) for n in range(2000)]
    found = cluster(batch, WEEK)
    assert [len(story.members) for story in found] == [2000]
    assert comparisons[0] == 0


@pytest.mark.parametrize("size", [1000, 4000])
def test_each_article_is_compared_with_a_few_others_at_most(size: int, comparisons: list[int]) -> None:
    # Varied articles, all within one window: the index offers candidates, never everyone.
    rng = random.Random(size)
    texts = [" ".join(rng.sample(PARAGRAPHS, 2)) for _ in range(size)]
    cluster([item(n, text, T0 + timedelta(minutes=n)) for n, text in enumerate(texts)], WEEK)
    assert size < comparisons[0] <= stories.NEIGHBOURS * size


def test_a_bulk_import_links_by_publication_not_by_arrival() -> None:
    # Everything arrives at once (a first pull of an archive): the dates decide.
    a, b = PARAGRAPHS[2], PARAGRAPHS[3]
    batch = [
        item(1, a, T0, published=T0 - timedelta(days=40)),
        item(2, a + " Updated.", T0, published=T0 - timedelta(days=20)),  # 20 days later: apart
        item(3, b, T0, published=T0 - timedelta(days=10)),
        item(4, b + " Updated.", T0, published=T0 - timedelta(days=9)),  # a day later: together
    ]
    found = cluster(batch, WEEK)
    assert not together(found, "a00001", "a00002")
    assert together(found, "a00003", "a00004")


def test_an_undated_article_is_placed_by_when_it_was_first_seen() -> None:
    a, b = PARAGRAPHS[4], PARAGRAPHS[5]
    batch = [
        # dated long ago but seen now, and an undated copy seen an hour later: together
        item(1, a, T0, published=T0 - timedelta(days=60)),
        item(2, a + " Updated.", T0 + timedelta(hours=1)),
        # undated, seen three weeks apart: apart
        item(3, b, T0),
        item(4, b + " Updated.", T0 + timedelta(days=21)),
    ]
    found = cluster(batch, WEEK)
    assert together(found, "a00001", "a00002")
    assert not together(found, "a00003", "a00004")


def test_exact_copies_far_apart_are_separate_stories() -> None:
    text = PARAGRAPHS[6]
    batch = [item(n, text, T0 + n * timedelta(days=30)) for n in range(3)]
    assert cluster(batch, WEEK) == []


def test_unrelated_articles_stay_apart() -> None:
    batch = [item(n, PARAGRAPHS[n], T0 + timedelta(hours=n)) for n in range(0, 40, 4)]
    assert all(len(story.members) <= 2 for story in cluster(batch, WEEK))


# --- a pull's stories, extending stored ones ------------------------------------------------


def _member(ident: str, hours: int, centrality: float) -> StoryMember:
    return StoryMember(ident, T0 + timedelta(hours=hours), f"Title {ident}", centrality)


def _heads(members: dict[str, list[StoryMember]]) -> dict[str, StoryHead]:
    """Each story's heads as the store reads them (the earliest; the most central, the
    earliest of equals)."""
    heads = {}
    for story, found in members.items():
        ranked = sorted(found, key=lambda m: (m.first_seen, m.id))
        heads[story] = StoryHead(ranked[0], min(ranked, key=lambda m: (-m.centrality, m.first_seen, m.id)))
    return heads


def test_a_pull_that_links_two_stored_stories_merges_them() -> None:
    """A fresh article linked to members of two stored stories makes them one: its id the
    earliest member's of all, its label the most central member's, centrality kept across
    pulls added to this pull's. Only the linked are named; the stories are absorbed."""
    fresh = StoryInput("f", "Title f", "", T0 + timedelta(hours=5))
    x = StoryInput("x", "Title x", "", T0 + timedelta(hours=2))
    y = StoryInput("y", "Title y", "", T0 + timedelta(hours=3))
    loose = StoryInput("z", "Title z", "", T0 + timedelta(hours=4))  # a stored article in no story
    found = stories.Linked([x, y, loose, fresh], [[0, 1, 3]], [0.6, 0.7, 0.0, 1.3])
    members = {"s1": [_member("x0", 0, 0.5), _member("x", 2, 0.2)], "s2": [_member("y", 3, 1.0)]}
    made, gained = stories.extended(
        found, {"x": "s1", "y": "s2", "z": None}, _heads(members), {"x": 0.2, "y": 1.0}
    )
    assert made == [stories.Story("x0", "Title y", ("x", "y", "f"), ("s1", "s2"))]  # y: 1.0 kept + 0.7
    assert gained == {"x": 0.6, "y": 0.7, "f": 1.3}
    # An unlinked member still most central after this pull's gains labels the story.
    members["s1"].append(_member("x1", 1, 1.8))
    made, _ = stories.extended(
        found, {"x": "s1", "y": "s2", "z": None}, _heads(members), {"x": 0.2, "y": 1.0}
    )
    assert made == [stories.Story("x0", "Title x1", ("x", "y", "f"), ("s1", "s2"))]
    # A fresh article linked with a loose stored one makes a new story of the two.
    found = stories.Linked([loose, fresh], [[0, 1]], [0.9, 0.9])
    made, _ = stories.extended(found, {"z": None}, {}, {"z": 0.0})
    assert made == [stories.Story("z", "Title z", ("z", "f"))]  # equals: the earliest


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_extending_by_heads_makes_the_stories_reading_every_member_would(data: st.DataObject) -> None:
    """Whatever the stored stories and this pull's links, the ids, labels and memberships
    made from the heads alone are those made from every member: the earliest of all, and
    the most central after this pull's gains (the earliest of equals)."""
    hours = st.integers(0, 6)
    weights = st.sampled_from([0.0, 0.5, 1.0, 1.5])
    stored = data.draw(st.lists(st.tuples(st.integers(0, 3), hours, weights), min_size=1, max_size=12))
    members: dict[str, list[StoryMember]] = {}
    story_of: dict[str, str | None] = {}
    for n, (story, hour, weight) in enumerate(stored):
        ident = f"m{n}"
        story_of[ident] = f"s{story}" if story else None  # 0: an article in no story
        if story:
            members.setdefault(f"s{story}", []).append(_member(ident, hour, weight))
    fresh = [StoryInput(f"f{k}", f"Title f{k}", "", T0 + timedelta(hours=7 + k)) for k in range(3)]
    linkable = [
        StoryInput(m, f"Title {m}", "", T0 + timedelta(hours=h))
        for m, (_, h, _) in zip(story_of, stored, strict=True)
    ]
    linked = data.draw(st.lists(st.sampled_from(linkable), unique_by=lambda i: i.id, max_size=5))
    order = sorted([*linked, *fresh], key=lambda i: (i.first_seen, i.id))
    positions = list(range(len(order)))
    groups_of = data.draw(st.lists(st.integers(0, 2), min_size=len(order), max_size=len(order)))
    groups = [g for n in range(3) if len(g := [p for p in positions if groups_of[p] == n]) >= 2]
    centrality = [data.draw(weights) for _ in order]
    kept = {f"m{n}": weight for n, (_, _, weight) in enumerate(stored)}
    found = stories.Linked(order, groups, centrality)
    made, gained = stories.extended(
        found, story_of, _heads(members), {i.id: kept.get(i.id, 0.0) for i in linked}
    )

    # What reading every member makes: groups that reach one story are one, with all its
    # members; the id the earliest of them, the label the most central after the gains.
    merged: list[set[str]] = []
    for group in groups:
        ids = {order[p].id for p in group}
        ids |= {m.id for i in list(ids) if (story := story_of.get(i)) for m in members[story]}
        for other in [m for m in merged if m & ids]:
            merged.remove(other)
            ids |= other
        merged.append(ids)
    known = {i.id: (i.first_seen, i.title, kept.get(i.id, 0.0)) for i in [*linkable, *fresh]}
    expected = {}
    for every in merged:
        ranked = sorted(every, key=lambda i: (known[i][0], i))
        best = max(range(len(ranked)), key=lambda k: (known[ranked[k]][2] + gained.get(ranked[k], 0.0), -k))
        expected[frozenset(every)] = (ranked[0], known[ranked[best]][1])
    got = {}
    for story in made:
        every = set(story.members) | {m.id for s in story.absorbed for m in members[s]}
        got[frozenset(every)] = (story.id, story.label)
        # Named are the linked alone; absorbed, every stored story they reach.
        assert set(story.members) <= {i.id for i in order}
        assert set(story.absorbed) == {story_of[i] for i in story.members if story_of.get(i)}
    assert got == expected


def test_a_fresh_article_is_compared_with_the_stored_ones_found_for_it_and_no_other() -> None:
    """In a pull, a fresh article meets the stored ones the story index found for it, before
    or after it (within the window), and no stored article is searched: links between two
    stored ones are never made, however alike."""
    words = stories.Frequencies(1000, {})  # every word as rare: the vectors are the counts'

    def made(ident: str, hours: int, found: str, entities: frozenset[str] = frozenset()) -> StoryInput:
        return StoryInput(
            ident, ident, "", T0, T0 + timedelta(hours=hours), entities, dict.fromkeys(found, 1)
        )

    dam = frozenset({"mekong-dam"})
    later = made("s", 20, "abcdepqr", dam)
    crowd = [made(f"c{k:02}", 1 + k, f"abcde{chr(0x4E00 + k)}") for k in range(3)]
    fresh = made("f", 0, "pqrstuvwx", dam)
    f, s, c = stories.vectors([fresh.terms or {}, later.terms or {}, crowd[0].terms or {}], words)
    assert stories.RELATED <= stories._cosine(s, f) < stories.ALIKE < stories._cosine(s, c)

    def groups(found_for_f: list[str], *stored: StoryInput) -> list[set[str]]:
        found = stories.link([fresh, *stored], WEEK, fresh={"f": found_for_f}, frequencies=words)
        return [{found.order[p].id for p in group} for group in found.groups]

    assert groups(["s"], later, *crowd) == [{"f", "s"}]  # related, a place in common
    assert groups([], later, *crowd) == []
    far = made("s", 24 * 8, "abcdepqr", dam)
    assert groups(["s"], far) == []  # found, but beyond the window
