"""The subscribe and preferences forms, and the digest email, as a phone (390 px) and a
desktop (1280 px) show them in headless Chromium, measured by bounding boxes: each checkbox
and its label on one line as one unit, the weekday shown only for a weekly digest and the
day of the month only for a monthly one (CSS alone: the pages run no script), targets at
least 44 px tall, placeholders that look like placeholders, a visible focus ring, nothing
wider than the window; in the email, no empty band under the header, metadata at 14 px or
more in readable contrast, footer links at least 44 px tall."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from digest.config import Settings
from digest.store import open_store
from digest.subscribers.lifecycle import add, token
from digest.subscribers.tokens import secret_for
from tests.browser import Browser
from tests.helpers import SEEDS_SOURCE, pulled, run, settings_for, write_config
from tests.servers import AppServer

PHONE, DESKTOP = 390, 1280
TARGET = 44  # px: the smallest control or link a thumb should have to hit
SAME_LINE = 4  # px: how far apart two vertical centres on one line may be
GAP = 16  # px: at most between a checkbox and its label's text


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, str]]:
    """The seeds served, and the preferences page of a subscriber on the site's schedule."""
    folder = tmp_path_factory.mktemp("forms")
    settings: Settings = settings_for(folder, f'[site]\ntitle = "China Watch"\n{SEEDS_SOURCE}')
    pulled(settings)
    with open_store(settings.database.path) as store:
        ann = add(store, "ann@example.org", confirmed=True)
        preferences = f"/preferences/{token(secret_for(store, None), 'preferences', ann)}"
    with AppServer(settings) as server:
        yield server, preferences


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with Browser(tmp_path_factory.mktemp("profile")) as opened:
        yield opened


def _show(browser: Browser, url: str, width: int) -> None:
    """``url`` in a window ``width`` px wide, as a phone (touch, viewport meta) below 600."""
    browser.call(
        "Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=width < 600
    )
    browser.open(url)


def _open(site: tuple[AppServer, str], browser: Browser, page: str, width: int) -> None:
    """The subscribe or the preferences page of ``site``, shown ``width`` px wide."""
    server, preferences = site
    _show(browser, server.url("/subscribe" if page == "subscribe" else preferences), width)


# Each checkbox, its label's box(es) and the first line of its label's words (a Range over
# the text from its first letter: a leading space can sit on the box's line when the words
# do not).
CHECKBOXES = """
[...document.querySelectorAll('input[type=checkbox]')].map(box => {
  const label = box.closest('label');
  const walker = document.createTreeWalker(label, NodeFilter.SHOW_TEXT);
  let node = walker.nextNode();
  while (node && !node.data.trim()) node = walker.nextNode();
  const range = document.createRange();
  range.setStart(node, node.data.search(/\\S/));
  range.setEnd(node, node.data.length);
  const b = box.getBoundingClientRect(), t = range.getClientRects()[0], l = label.getBoundingClientRect();
  return {name: node.data.trim(), box: [b.left, b.top, b.right, b.bottom], text: [t.left, t.top, t.right, t.bottom],
          label: [l.left, l.top, l.right, l.bottom], pieces: label.getClientRects().length};
})
"""


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
@pytest.mark.parametrize("page", ["subscribe", "preferences"])
def test_each_checkbox_sits_with_its_label(
    site: tuple[AppServer, str], browser: Browser, page: str, width: int
) -> None:
    _open(site, browser, page, width)
    boxes: list[dict[str, Any]] = browser.run(CHECKBOXES)
    assert len(boxes) >= 15  # every region and theme
    for found in boxes:
        box, text, label = found["box"], found["text"], found["label"]
        where = f"{found['name']!r} at {width} px"
        assert found["pieces"] == 1, f"{where}: the label wraps apart instead of as one unit"
        assert abs((box[1] + box[3]) / 2 - (text[1] + text[3]) / 2) <= SAME_LINE, (
            f"{where}: box {box}, text {text}"
        )
        assert 0 <= text[0] - box[2] <= GAP, f"{where}: box {box}, text {text}"
        assert label[3] - label[1] >= TARGET, f"{where}: label only {label[3] - label[1]} px tall"


def _visible(browser: Browser, selector: str) -> bool:
    return bool(browser.run(f"document.querySelector({json.dumps(selector)}).checkVisibility()"))


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
@pytest.mark.parametrize("page", ["subscribe", "preferences"])
def test_the_weekday_and_the_day_of_the_month_follow_the_cadence(
    site: tuple[AppServer, str], browser: Browser, page: str, width: int
) -> None:
    _open(site, browser, page, width)
    cadences = browser.run("[...document.querySelectorAll('[name=cadence] option')].map(o => o.value)")
    assert {"daily", "weekly", "monthly"} <= set(cadences)
    assert browser.run("document.scripts.length") == 0  # CSS alone does it
    for cadence in cadences:
        browser.run(f"document.querySelector('[name=cadence]').value = {json.dumps(cadence)}")
        shown = {"weekday": _visible(browser, "[name=weekday]"), "monthday": _visible(browser, ".monthday")}
        assert shown == {"weekday": cadence == "weekly", "monthday": cadence == "monthly"}, (cadence, shown)
        if cadence:  # a rhythm of the reader's own: at their hour, in their zone
            assert _visible(browser, "[name=hour]") and _visible(browser, "[name=timezone]"), cadence


FIELDS = """
[...document.querySelectorAll('form input:not([type=hidden]):not([type=checkbox]), form select, form button')]
  .filter(e => e.checkVisibility())
  .map(e => [e.name || e.textContent.trim(), e.getBoundingClientRect().height, e.getBoundingClientRect().width])
"""


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
@pytest.mark.parametrize("page", ["subscribe", "preferences"])
def test_targets_are_large_and_nothing_overflows(
    site: tuple[AppServer, str], browser: Browser, page: str, width: int
) -> None:
    _open(site, browser, page, width)
    fields: list[list[Any]] = browser.run(FIELDS)
    assert len(fields) >= 7 and all(height >= TARGET for _, height, _ in fields), fields
    button = browser.run(
        "document.querySelector('form button[type=submit]').getBoundingClientRect().toJSON()"
    )
    assert button["height"] >= TARGET
    if width == PHONE:  # full width: the thumb cannot miss it
        inner = browser.run("document.querySelector('form').clientWidth")
        assert button["width"] >= inner - 1, (button, inner)
    overflow = browser.run("[document.documentElement.scrollWidth, window.innerWidth]")
    assert overflow[0] <= overflow[1], overflow


@pytest.mark.parametrize("page", ["subscribe", "preferences"])
def test_placeholders_look_like_examples_and_focus_shows(
    site: tuple[AppServer, str], browser: Browser, page: str
) -> None:
    _open(site, browser, page, PHONE)
    topic = "document.querySelector('[name=topic]')"
    assert browser.run(f"{topic}.placeholder").startswith("e.g. ")
    typed = _rgb(browser.run(f"getComputedStyle({topic}).color"))
    hint = _rgb(browser.run(f"getComputedStyle({topic}, '::placeholder').color"))
    assert sum(hint) - sum(typed) >= 150, (hint, typed)  # lighter than typed text, by far
    for _ in range(30):  # the keyboard's way to the first checkbox
        browser.call(
            "Input.dispatchKeyEvent", type="rawKeyDown", key="Tab", code="Tab", windowsVirtualKeyCode=9
        )
        browser.call("Input.dispatchKeyEvent", type="keyUp", key="Tab", code="Tab", windowsVirtualKeyCode=9)
        if browser.run("document.activeElement.type") == "checkbox":
            break
    ring = browser.run(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [document.activeElement.tagName, s.outlineStyle, parseFloat(s.outlineWidth)]; })()"
    )
    assert ring[0] == "INPUT" and ring[1] not in ("none", "auto") and ring[2] >= 2, ring


def _rgb(css: str) -> tuple[int, ...]:
    """``rgb(r, g, b)`` or ``rgba(r, g, b, a)`` as three numbers."""
    return tuple(int(float(part)) for part in css[css.index("(") + 1 : -1].split(",")[:3])


def _luminance(rgb: tuple[int, ...]) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(one: tuple[int, ...], other: tuple[int, ...]) -> float:
    light, dark = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


# The email's parts, found by their classes (the CSS is inlined, the classes stay).
EMAIL = """
(() => {
  const box = e => e.getBoundingClientRect();
  const paint = e => { while (e && getComputedStyle(e).backgroundColor.endsWith(', 0)')) e = e.parentElement;
                       return e ? getComputedStyle(e).backgroundColor : 'rgb(255, 255, 255)'; };
  const header = document.querySelector('.header');
  return {
    header: box(header).bottom,
    first: box(document.querySelector('h2')).top,
    meta: [...document.querySelectorAll('.meta')].map(e => [parseFloat(getComputedStyle(e).fontSize),
                                                            getComputedStyle(e).color, paint(e)]),
    links: [...document.querySelectorAll('.foot a')].map(a => [a.getAttribute('href'), box(a).height]),
    overflow: [document.documentElement.scrollWidth, window.innerWidth],
  };
})()
"""


def test_the_digest_email_on_a_phone(tmp_path: Path, browser: Browser) -> None:
    config = str(write_config(tmp_path, f'[outbox]\npath = "out"\n{SEEDS_SOURCE}'))
    assert run("--config", config, "pull", cwd=tmp_path).returncode == 0
    page = tmp_path / "digest.html"
    assert run("--config", config, "preview", "-o", str(page), cwd=tmp_path).returncode == 0
    _show(browser, page.as_uri(), PHONE)
    found = browser.run(EMAIL)
    assert 0 <= found["first"] - found["header"] < 40, found  # no empty band under the header
    assert len(found["meta"]) >= 10
    for size, color, background in found["meta"]:
        assert size >= 14 and _contrast(_rgb(color), _rgb(background)) >= 4.5, (size, color, background)
    hrefs = [href for href, _ in found["links"]]
    assert len(hrefs) == 3 and any("/digests/" in href for href in hrefs), hrefs  # web copy too
    assert all(height >= TARGET for _, height in found["links"]), found["links"]
    assert found["overflow"][0] <= found["overflow"][1], found["overflow"]
