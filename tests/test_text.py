"""The plain-text page-dump parser, against the seeds and against the traps of such pages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.common.errors import ParseError
from digest.intake.kinds.auto import detect_kind
from digest.intake.kinds.text import looks_like_title, parse_text

from .helpers import SEEDS

# Ground truth read off the two captures by hand: every post, in page order.
SNAPSHOT_000 = [
    "Li Qiang attends SCO heads of government meeting in Moscow",
    "Japanese Communist Party rejects Takaichi’s provocative remarks on Taiwan",
    "Chinese scholars question Japanese sovereignty over Ryukyu islands",
    "Lao and Chinese communists discuss theory",
    "Xi Jinping: Hegemonism causes only war and disaster;"
    " fairness and justice ensure global peace and development",
    "Li Qiang advances proposals for East Asian cooperation at regional meetings",
    "JVP delegation visits China",
    "China, Russia, Pakistan and Iran reject US return to Afghanistan",
    "China-Vietnam relations of comrades and brothers underlined in three high-level meetings",
    "Xi meets Lao president",
    "China, Russia and Mongolia strengthen three-way friendship in Beijing",
    "Xi Jinping meets leaders from Uzbekistan, Pakistan, Turkmenistan, Iran, Malaysia and Tajikistan",
    "Special friendship with Cambodia reflected in high-level visits",
    "Xi Jinping meets leaders from Armenia, Belarus, Maldives, Azerbaijan, Kyrgyzstan, India and Türkiye",
    "Xi Jinping meets UN Secretary General and leaders from Egypt, Myanmar and Kazakhstan",
    "Friendship with Pakistan is cornerstone of China’s regional diplomacy",
    "China extends a hand of friendship to Afghanistan",
    "Myanmar peace and reconciliation discussed in four-party talks",
    "Mekong Foreign Ministers meet in China’s city of peace and harmony",
    "China calls for peace between Cambodia and Thailand",
]
SNAPSHOT_004 = [
    "Coercive diplomacy is diplomacy of muscle",
    "Deal diplomacy: Starmer’s China trip bets on business over ideology",
    "China reaffirms backing for Iran",
    "China and Uruguay pledge closer bilateral and multilateral cooperation",
    "China and Laos designate 2026 as friendship year",
    "China and Vietnam exchange special envoys",
    "Xi Jinping holds same day conversations with Presidents Putin and Trump",
    "Keir Starmer’s small-stick diplomacy",
    "Breaking the ice: Starmer’s pragmatic turn to China",
    "From Zimbabwe to Algeria: China-Africa solidarity, a living tradition",
    "The sun has risen in the east – George Galloway’s message to Europe",
    "Greenland in the New Cold War",
    "CPC delegation visits India and Pakistan",
    "Xi congratulates Vietnamese counterpart on re-election",
    "Lula and Xi consult on bilateral ties and regional situation",
    "Fatah delegation visits China",
    "Mark Carney’s visit seals reset in Canada-China relations",
    "Venezuela and China reaffirm mutual solidarity",
    "Wang Yi continues 36-year tradition with first visit of 2026 to Africa",
    "Xi Jinping congratulates Lao leader on re-election",
]


def _parse(text: str) -> list[str]:
    return [item.title for item in parse_text(text.encode(), "text/plain", "file:///dump.txt")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("000_38ab7c206b449ec8.txt", SNAPSHOT_000), ("004_d6a08f411919dcee.txt", SNAPSHOT_004)],
)
def test_seed_snapshots_give_exactly_their_posts(name: str, expected: list[str]) -> None:
    items = parse_text((SEEDS / name).read_bytes(), "text/plain", "file:///seeds/" + name)
    assert [item.title for item in items] == expected


def test_reprinted_headings_stay_inside_their_post() -> None:
    items = parse_text((SEEDS / "000_38ab7c206b449ec8.txt").read_bytes(), None, "file:///x")
    afghanistan = next(i for i in items if i.title.startswith("China, Russia, Pakistan and Iran"))
    assert "Joint statement on Afghanistan shows regional resolve for peace" in afghanistan.content_html
    fatah = parse_text((SEEDS / "004_d6a08f411919dcee.txt").read_bytes(), None, "file:///x")
    post = next(i for i in fatah if i.title == "Fatah delegation visits China")
    assert "Liu Haixing Meets with a Fatah Delegation of Palestine" in post.content_html


def test_continue_reading_markers_are_stripped_and_bullets_become_lists() -> None:
    items = parse_text((SEEDS / "000_38ab7c206b449ec8.txt").read_bytes(), None, "file:///x")
    assert all("Continue reading" not in item.content_html for item in items)
    lao = next(i for i in items if i.title == "Xi meets Lao president")
    assert "<ul><li>Thongloun Sisoulith" in lao.content_html


def test_a_date_in_the_text_fills_published_with_the_year_of_the_page() -> None:
    items = parse_text((SEEDS / "000_38ab7c206b449ec8.txt").read_bytes(), None, "file:///x")
    first = items[0]  # "From November 17-24, Chinese Premier Li Qiang visited Russia..."
    assert first.published == datetime(2025, 11, 17, tzinfo=UTC)
    mekong = next(i for i in items if i.title.startswith("Mekong"))
    assert mekong.published == datetime(2025, 8, 15, tzinfo=UTC)


LABELS_AND_CAPTIONS = """\
Ministers agree on a new river commission

The foreign ministers of five countries agreed on Tuesday to set up a commission for the river.

Highlights

  • A secretariat in Vientiane
  • Annual meetings of ministers

Main points:

The commission will publish water data, and it will meet every year in a member country.

Ministers pose for a group photo in Vientiane on March 3, 2026. (Photo: KPL)

More paragraphs follow here, describing the meeting at length and in full sentences.

The post Ministers agree on a new river commission appeared first on Example News.

Second story of the page about something else entirely

This is the body of the second story, which is long enough to be a real paragraph of news.

Continue reading Second story of the page about something else entirely
"""


def test_labels_captions_and_boilerplate_do_not_become_articles() -> None:
    items = parse_text(LABELS_AND_CAPTIONS.encode(), "text/plain", "file:///x")
    assert [i.title for i in items] == [
        "Ministers agree on a new river commission",
        "Second story of the page about something else entirely",
    ]
    assert "Highlights" in items[0].content_html
    assert "appeared first on" not in items[0].content_html
    # Only the lead is searched for a date: a caption's or a quoted date further down is
    # rarely the day of the post.
    assert items[0].published is None


def test_an_excerpt_is_a_post_even_with_no_text_under_its_title() -> None:
    text = "Short notice of a meeting today\n\nContinue reading Short notice of a meeting today\n"
    assert _parse(text) == ["Short notice of a meeting today"]


def test_text_that_is_not_a_page_of_posts_yields_nothing() -> None:
    assert _parse("just some words\nand more words\n") == []
    assert _parse("") == []
    assert _parse("A title with no body at all") == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Xi meets Lao president", True),
        ("In this regard:", False),
        ("Highlights", False),
        ("Shii Kazuo had made a similar demand previously, on November 11, also in a post on X.", False),
        ("  • Igor Sergeenko, Speaker of the House of Representatives of Belarus;", False),
        ("Continue reading Xi meets Lao president", False),
        ("Delegates at the summit in Beijing (Photo/Xinhua)", False),
    ],
)
def test_title_shape(line: str, expected: bool) -> None:
    assert looks_like_title(line.strip()) is expected


def test_legacy_encodings_are_decoded() -> None:
    text = "Café owners meet the minister today\n\nThe café owners of the town met the minister on Monday.\n"
    items = parse_text(text.encode("cp1252"), "text/plain", "file:///x")
    assert [i.title for i in items] == ["Café owners meet the minister today"]


@pytest.mark.parametrize("lead", [b"{", b" \n{", b""])
def test_binary_data_is_named_binary_whatever_its_first_byte(lead: bytes) -> None:
    # Random bytes begin with "{" one time in 256: they were read as a broken JSON Feed.
    junk = lead + bytes(range(256)) * 8
    with pytest.raises(ParseError, match="binary data"):
        detect_kind(junk, None)
    with pytest.raises(ParseError, match="binary data"):
        detect_kind(junk, "application/json")
    assert detect_kind(lead + b'{"version": "https://jsonfeed.org/version/1.1"}', None) == "feed"
