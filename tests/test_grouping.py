"""Grouping: places, regions, themes and stories, on the seeds and on hand-made hard cases."""

from __future__ import annotations

import os
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path

import pycountry
import pytest

from digest.common.models import Article
from digest.common.sanitize import text_to_html
from digest.config import parse_settings
from digest.grouping.classify import Reader, _evidence, _Read, group_pending, regroup
from digest.grouping.places import Gazetteer
from digest.grouping.regions import PlaceCount, assign_regions, count_places, regions, score_regions
from digest.grouping.themes import FALLBACK, Taxonomy, ThemeMatch, assign_themes, taxonomy_for
from digest.intake.pull import pull
from digest.store import Evidence, open_store

from .helpers import DATA, SEEDS_SOURCE, pulled, rss, settings_for, stored_articles
from .servers import FeedServer, Reply


def _expected_primary() -> dict[str, str]:
    lines = (DATA / "seed_regions.tsv").read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines if line and not line.startswith("#")]
    return {title: region for title, region in rows[1:]}


EXPECTED_PRIMARY = _expected_primary()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> list[Article]:
    folder = tmp_path_factory.mktemp("seeded")
    settings = settings_for(folder, SEEDS_SOURCE)
    pulled(settings)
    return stored_articles(settings)


def _names(text: str) -> list[tuple[str, str]]:
    return [(text[m.start : m.end], m.place.key) for m in Gazetteer.default().find(text)]


# --- gazetteer ---------------------------------------------------------------------------


def test_every_iso_country_is_in_the_gazetteer_with_a_known_region() -> None:
    gazetteer = Gazetteer.default()
    missing = [c.alpha_2 for c in pycountry.countries if c.alpha_2 not in gazetteer.places]
    assert missing == []
    for key in ("XK", "PS", "TW", "HK", "MO", "GL", "PR", "EH"):
        assert key in gazetteer.places
    known = set(regions())
    assert all(place.region in known for place in gazetteer.places.values())


def test_conventions_of_design_md() -> None:
    region = {key: p.region for key, p in Gazetteer.default().places.items()}
    assert region["IR"] == region["TR"] == region["AM"] == region["AZ"] == region["GE"] == "middle-east"
    assert region["RU"] == region["BY"] == region["UA"] == "europe"
    assert region["AF"] == "south-asia"
    assert region["EG"] == region["MA"] == region["DZ"] == region["TN"] == "africa"
    assert region["GL"] == "north-america"
    assert region["CU"] == region["JM"] == region["PR"] == "latin-america"


def test_no_name_means_two_regions() -> None:
    gazetteer = Gazetteer.load()
    by_form: dict[str, set[str]] = {}
    from digest.grouping import places as places_module

    for row in places_module._rows("places.tsv"):
        for cell in ("names", "adjectives", "places"):
            for form in places_module._split(row[cell] or ""):
                by_form.setdefault(form, set()).add(row["region"])
    clashes = {form: found for form, found in by_form.items() if len(found) > 1}
    assert clashes == {}
    assert len(gazetteer.forms) > 1500


# --- mention finding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Talks in South Africa, not Africa.", [("South Africa", "ZA"), ("Africa", "region:africa")]),
        ("Niger and Nigeria signed.", [("Niger", "NE"), ("Nigeria", "NG")]),
        ("Papua New Guinea and Guinea met.", [("Papua New Guinea", "PG"), ("Guinea", "GN")]),
        ("China's envoy and China’s minister.", [("China", "CN"), ("China", "CN")]),
        ("China Daily, the Tehran Times and Beijing Review reported.", []),
        (
            "At the Shanghai Cooperation Organisation summit",
            [("Shanghai Cooperation Organisation", "body:Shanghai Cooperation Organisation")],
        ),
        ("Michael Jordan met King Abdullah of Jordan.", [("Jordan", "JO")]),
        ("Chad Smith played in Atlanta, Georgia.", [("Atlanta, Georgia", "US")]),
        ("Chad's army entered Georgia's capital.", [("Chad", "TD"), ("Georgia", "GE")]),
        ("A professor at Fujian Normal University and the University of Tokyo.", []),
        ("the US-China talks and the U.S. envoy", [("US", "US"), ("China", "CN"), ("U.S.", "US")]),
        ("us and china in lower case are not names", []),
        ("Lao PDR and the Lao People’s Revolutionary Party", [("Lao PDR", "LA"), ("Lao", "LA")]),
        ("Okinawa and the Ryukyu Islands", [("Okinawa", "JP"), ("Ryukyu Islands", "JP")]),
    ],
)
def test_mention_finding(text: str, expected: list[tuple[str, str]]) -> None:
    assert _names(text) == expected


# --- regions -----------------------------------------------------------------------------


def test_seed_primary_regions_match_a_reading_of_them(seeded: list[Article]) -> None:
    got = {a.title: (a.regions[0] if a.regions else None) for a in seeded}
    assert set(got) == set(EXPECTED_PRIMARY)
    wrong = {
        title: (EXPECTED_PRIMARY[title], got[title]) for title in got if got[title] != EXPECTED_PRIMARY[title]
    }
    print(f"primary region: {40 - len(wrong)}/40 right; wrong: {wrong}")
    assert len(wrong) <= 2, wrong


def test_a_place_every_article_names_does_not_win_by_default(seeded: list[Article]) -> None:
    china_first = [a.title for a in seeded if a.regions and a.regions[0] == "east-asia"]
    assert len(china_first) <= 6  # the sample site names China in all 40 posts
    uruguay = next(a for a in seeded if "Uruguay" in a.title)
    assert uruguay.regions[0] == "latin-america"


def test_global_only_when_no_place_is_named() -> None:
    no_place = count_places("BRICS and the UN discuss reform", "Leaders of BRICS met at the United Nations.")
    assert assign_regions(score_regions(no_place)) == ["global"]
    with_place = count_places("BRICS meets in Brazil", "Leaders met at the United Nations.")
    assert assign_regions(score_regions(with_place)) == ["latin-america"]
    assert assign_regions(score_regions([])) == []


def test_title_outweighs_a_passing_mention() -> None:
    places = count_places(
        "Kenya and Ethiopia agree on a border road", "Officials met.\n\nA Peruvian firm may bid."
    )
    assert assign_regions(score_regions(places)) == ["africa"]


def test_ignore_places_overrides_for_one_source(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, f'{SEEDS_SOURCE}ignore_places = ["Xi Jinping", "China", "Russia"]\n')
    pulled(settings)
    mongolia = next(a for a in stored_articles(settings) if a.title.startswith("China, Russia and Mongolia"))
    assert mongolia.regions[0] == "east-asia"
    assert "europe" not in mongolia.regions  # Russia, ignored, no longer counts


def test_evidence_is_in_the_json(tmp_path: Path, seeded: list[Article]) -> None:
    from digest.publish.objects import article_json

    laos = article_json(next(a for a in seeded if a.title == "Xi meets Lao president"))
    lao = next(p for p in laos["places"] if p["name"] == "Laos")
    assert lao["region"] == "southeast-asia" and lao["count"] >= 3 and "title" in lao["in"]
    assert laos["themes"] and all(laos["theme_phrases"][slug] for slug in laos["themes"] if slug != FALLBACK)


# --- themes ------------------------------------------------------------------------------


def test_theme_distribution_on_the_seeds(seeded: list[Article]) -> None:
    themes = Taxonomy.from_settings(()).themes
    assert 8 <= len(themes) <= 12
    counts = Counter(theme for a in seeded for theme in a.themes)
    assert all(a.themes for a in seeded)
    assert max(counts.values()) <= len(seeded) // 2, counts
    assert len(counts) >= 8  # the taxonomy discriminates: most themes are used


def test_every_article_gets_a_theme() -> None:
    taxonomy = Taxonomy.from_settings(())
    assert assign_themes(taxonomy.match("Xyzzy", "Plugh.")) == [FALLBACK]
    matched = taxonomy.match("Free trade agreement signed", "Tariffs fall and exports rise.")
    assert assign_themes(matched)[0] == "trade-investment"
    assert "free trade" in matched["trade-investment"].phrases


def test_users_replace_or_extend_the_taxonomy() -> None:
    text = (
        '[themes.shipping]\ntitle = "Shipping"\nphrases = ["port", "container"]\n'
        '[themes.trade-investment]\nextend = true\nphrases = ["customs union"]\n'
        '[themes.energy-climate]\nstrong = ["pipeline"]\n'
    )
    settings = parse_settings(text, origin="t.toml", base_dir=Path("."), env={})
    taxonomy = taxonomy_for(settings)
    assert taxonomy.themes["shipping"].title == "Shipping"
    assert "customs union" in taxonomy.themes["trade-investment"].phrases
    assert "free trade" in taxonomy.themes["trade-investment"].phrases  # extended, not replaced
    assert set(taxonomy.themes["energy-climate"].phrases) == {"pipeline"}  # replaced
    only = parse_settings(
        '[themes]\ndefaults = false\n[themes.x]\nphrases = ["y"]\n', origin="t", base_dir=Path("."), env={}
    )
    assert set(taxonomy_for(only).themes) == {"x"}


def test_theme_config_errors_name_the_key() -> None:
    from digest.common.errors import ConfigError

    with pytest.raises(ConfigError, match=r"t.toml: themes.Bad Slug: 'Bad Slug' is not a valid theme slug"):
        parse_settings('[themes."Bad Slug"]\nphrases = ["x"]\n', origin="t.toml", base_dir=Path("."), env={})
    with pytest.raises(ConfigError, match=r"themes.empty: a theme needs phrases"):
        parse_settings("[themes.empty]\ntitle = 'E'\n", origin="t.toml", base_dir=Path("."), env={})


# --- stories -----------------------------------------------------------------------------


def _story_of(articles: list[Article], prefix: str) -> str | None:
    return next(a.story for a in articles if a.title.startswith(prefix))


def test_the_three_starmer_posts_are_one_story(seeded: list[Article]) -> None:
    starmer = {_story_of(seeded, p) for p in ("Deal diplomacy", "Keir Starmer", "Breaking the ice")}
    assert len(starmer) == 1 and None not in starmer
    members = [a for a in seeded if a.story in starmer]
    assert len(members) == 3


def test_other_events_between_the_same_countries_stay_apart(seeded: list[Article]) -> None:
    starmer = _story_of(seeded, "Keir Starmer")
    assert _story_of(seeded, "Mark Carney") != starmer
    laos = [_story_of(seeded, "China and Laos designate"), _story_of(seeded, "Xi Jinping congratulates Lao")]
    assert laos[0] is None or laos[0] != laos[1]
    vietnam = [
        _story_of(seeded, "China and Vietnam exchange"),
        _story_of(seeded, "Xi congratulates Vietnamese"),
    ]
    assert vietnam[0] is None or vietnam[0] != vietnam[1]


# One event, as several sources carry it.
MEKONG = {
    "title": "Mekong ministers agree on a water data centre",
    "description": "Ministers of the Lancang-Mekong countries agreed in Vientiane to share river data.",
    "pubDate": "Tue, 10 Nov 2026 09:30:00 +0000",
}


def _feeds(server: FeedServer, names: str) -> str:
    """A source for each letter of ``names``, fed by ``/LETTER.xml`` on ``server``."""
    return "".join(f'[[sources]]\nname = "{n}"\nurl = "{server.url(f"/{n}.xml")}"\n' for n in names)


def test_one_item_fed_by_two_sources_is_one_story(server: FeedServer, tmp_path: Path) -> None:
    item = MEKONG
    other = {
        "title": "Brazil hosts climate talks",
        "description": "Delegates met in Belém.",
        "pubDate": "Tue, 10 Nov 2026 10:00:00 +0000",
    }
    server.routes["/a.xml"] = Reply(
        200, rss([{**item, "link": "https://a.example/mekong"}, {**other, "link": "https://a.example/b"}])
    )
    server.routes["/b.xml"] = Reply(200, rss([{**item, "link": "https://b.example/copy-of-mekong"}]))
    sources = _feeds(server, "ab")
    settings = settings_for(tmp_path, sources)
    with open_store(settings.database.path) as store:
        pull(settings, store)
        articles = store.articles()
        stories = store.group_counts().stories
    copies = [a for a in articles if a.title.startswith("Mekong")]
    assert len(copies) == 2 and copies[0].story is not None and copies[0].story == copies[1].story
    assert stories[0].label == item["title"] and stories[0].articles == 2
    assert next(a for a in articles if a.title.startswith("Brazil")).story is None


def test_a_later_pull_joins_stored_stories_through_the_index_reading_no_stored_text(
    server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pull links its articles with the stored ones the story index finds, never reading
    the text of the window (issue 30): a third copy of an event joins the story two earlier
    pulls made, and it comes out as one pull of all three makes it."""
    item = MEKONG
    other = {
        "title": "Brazil hosts climate talks",
        "description": "Delegates met in Belém to prepare the next round of climate talks.",
        "pubDate": "Tue, 10 Nov 2026 10:00:00 +0000",
    }
    for name in "abc":
        server.routes[f"/{name}.xml"] = Reply(200, rss([{**item, "link": f"https://{name}.example/mekong"}]))
    server.routes["/d.xml"] = Reply(200, rss([{**other, "link": "https://d.example/brazil"}]))
    sources = _feeds(server, "abcd")

    def stories(settings_folder: Path, *pulls: tuple[str, ...]) -> list[tuple[str, int, tuple[str, ...]]]:
        settings = settings_for(settings_folder, sources)
        for names in pulls:
            pulled(settings, *names)
        with open_store(settings.database.path) as store:
            counts = store.group_counts().stories
            by_id = {a.id: a.source for a in store.articles()}
        return [(s.label, s.articles, tuple(sorted(by_id[m] for m in s.members))) for s in counts]

    (tmp_path / "one").mkdir()
    together = stories(tmp_path / "one", ("a", "b", "c", "d"))
    assert together == [(item["title"], 3, ("a", "b", "c"))]
    (tmp_path / "apart").mkdir()
    settings = settings_for(tmp_path / "apart", sources)
    pulled(settings, "a", "b")
    with open_store(settings.database.path) as store:
        assert not store.story_index_empty()

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a pull read the story window's text")

    monkeypatch.setattr(type(store), "story_inputs", never)
    assert stories(tmp_path / "apart", ("d",), ("c",)) == together


def test_articles_whose_stories_a_crash_left_unsaved_are_still_found_later(
    server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index takes a pull's articles before anything marks them classified: a process
    that dies before their stories are saved leaves them findable, and the next copy of the
    event links with them."""
    item = MEKONG
    for name in "abc":
        server.routes[f"/{name}.xml"] = Reply(200, rss([{**item, "link": f"https://{name}.example/mekong"}]))
    sources = _feeds(server, "abc")
    settings = settings_for(tmp_path, sources)
    pulled(settings, "a")  # the index is made

    def dies(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed")

    with open_store(settings.database.path) as store:
        monkeypatch.setattr(type(store), "save_stories", dies)
        with pytest.raises(RuntimeError, match="killed"):
            pull(settings, store, ["b"])
        monkeypatch.undo()
        assert store.ungrouped() == []  # b's copy was classified, its story never saved
        assert store.group_counts().stories == ()
    pulled(settings, "c")
    with open_store(settings.database.path) as store:
        [story] = store.group_counts().stories
        [b] = store.articles(source="b")
        [c] = store.articles(source="c")
        # c is an exact copy: it links with the latest copy there is, b's, found by the index.
        assert set(story.members) == {b.id, c.id}


def test_regroup_recomputes_and_pull_groups_only_what_is_new(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, SEEDS_SOURCE)
    with open_store(settings.database.path) as store:
        pull(settings, store)
        before = {a.id: (a.regions, a.themes, a.story) for a in store.articles()}
        assert group_pending(store, settings).classified == 0  # nothing new
        report = regroup(store, settings)
        assert report.classified == 40
        after = {a.id: (a.regions, a.themes, a.story) for a in store.articles()}
        assert after == before  # deterministic
        counts = store.group_counts()
    assert sum(r.primary for r in counts.regions) == 40


def test_a_big_pull_shared_among_processes_groups_as_one_process_does(
    tmp_path: Path, seeded: list[Article], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 480 items (over parallel.MIN_ITEMS) of the seeds' real text, a few copies of each.
    start = datetime(2026, 11, 2, tzinfo=UTC)
    items = [
        {
            "title": escape(f"{article.title} ({copy})"),
            "link": f"https://example.org/{copy}/{n}",
            "pubDate": format_datetime(start + timedelta(hours=3 * n + copy)),
            "description": escape(text_to_html(article.summary_text)),
        }
        for copy in range(12)
        for n, article in enumerate(seeded)
    ]
    feed = tmp_path / "big.xml"
    feed.write_bytes(rss(items))
    forks: list[int] = []
    real_fork = os.fork

    def counted_fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    def grouped(name: str, cores: int) -> dict[str, tuple[object, ...]]:
        folder = tmp_path / name
        folder.mkdir()
        settings = settings_for(folder, f'[[sources]]\nname = "big"\nurl = "{feed}"\n')
        with monkeypatch.context() as patch:
            patch.setattr(threading, "active_count", lambda: 1)  # this process's helpers do not fork
            patch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
            patch.setattr(os, "fork", counted_fork)
            with open_store(settings.database.path) as store:
                [report] = pull(settings, store)
                assert report.new == len(items)
                return {
                    a.id: (a.regions, a.themes, a.story, a.places, a.theme_matches) for a in store.articles()
                }

    alone = grouped("alone", 1)
    assert forks == []
    shared = grouped("shared", 3)
    assert len(forks) >= 5  # normalising, reading and clustering each took other processes
    assert shared == alone
    assert sum(1 for _, _, story, _, _ in alone.values() if story) > 400  # the copies are stories


def _places_data(places: list[PlaceCount]) -> list[dict[str, object]]:
    return [
        {"key": p.key, "name": p.name, "region": p.region, "kind": p.kind,
         "title": p.title, "lead": p.lead, "body": p.body}
        for p in places
    ]  # fmt: skip


def _matches_data(matches: dict[str, ThemeMatch]) -> dict[str, dict[str, object]]:
    return {slug: {"score": m.score, "phrases": list(m.phrases)} for slug, m in matches.items()}


def test_evidence_is_encoded_as_the_store_record_encodes_it(seeded: list[Article]) -> None:
    reader = Reader(parse_settings("", origin="test.toml", base_dir=Path("."), env={}))
    texts = [(a.title, a.summary_text) for a in seeded]
    texts.append(('Côte d’Ivoire and "Türkiye" meet São Tomé', "Abidjan hosted Ankara's envoy.\n\nBoth."))
    for n, text in enumerate(texts):
        found = reader.read(text)
        expected = Evidence.of(str(n), _places_data(found.places), _matches_data(found.matches))
        assert _evidence(str(n), found) == expected
        assert _evidence(str(n), _Read.unpacked(found.packed())) == expected  # read on another core
    assert any("Côte" in _evidence("x", reader.read(text)).places_json for text in texts[-1:])
