"""Real clients against the served app: newsboat (a feed reader) and headless Chromium.

Both are Debian packages that `.ci/run` installs; on a machine without them these tests
skip with a message, and in CI (CI=true) they fail instead, so they cannot silently vanish.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import feedparser
import httpx
import pytest

from digest.config import Settings

from .helpers import CHROMIUM_FLAGS, need, stored_articles
from .servers import AppServer


@pytest.mark.parametrize("path", ["/feed.atom", "/regions/southeast-asia/feed.rss"])
def test_newsboat_reads_the_feeds(
    served_seeds: tuple[AppServer, Settings], tmp_path: Path, path: str
) -> None:
    newsboat = need("newsboat")
    server, _ = served_seeds
    url = server.url(path)
    (tmp_path / "urls").write_text(url + "\n")
    (tmp_path / "config").write_text("")
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path),
    }
    # A cache per feed: newsboat keeps one copy of an item id across feeds.
    cache = tmp_path / "cache.db"
    result = subprocess.run(
        [
            newsboat,
            "-u",
            str(tmp_path / "urls"),
            "-c",
            str(cache),
            "-C",
            str(tmp_path / "config"),
            "-x",
            "reload",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(cache) as db:
        stored = db.execute("SELECT title, url, guid FROM rss_item WHERE feedurl = ?", (url,)).fetchall()
    expected = feedparser.parse(httpx.get(url).content).entries
    assert len(stored) == len(expected) > 0
    assert {title for title, _, _ in stored} == {e.title for e in expected}
    assert {guid for _, _, guid in stored} == {e.id for e in expected}


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    chromium = need("chromium")
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_chromium_renders_the_home_page_and_an_article(
    served_seeds: tuple[AppServer, Settings], tmp_path: Path
) -> None:
    server, settings = served_seeds
    shots = Path(os.environ.get("DIGEST_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    article = next(a for a in stored_articles(settings) if a.title == "Xi meets Lao president")
    pages = {"home": server.url("/"), "article": server.url(f"/articles/{article.id}")}
    for name, url in pages.items():
        shot = shots / f"{name}.png"
        taken = _chromium(
            "--window-size=1280,1600", f"--screenshot={shot}", url, profile=tmp_path / f"p-{name}"
        )
        assert shot.exists() and shot.stat().st_size > 10_000, taken.stderr[-500:]
        dom = _chromium("--dump-dom", url, profile=tmp_path / f"d-{name}").stdout
        assert "China Watch" in dom
        assert 'href="/feed.atom"' in dom and 'rel="alternate"' in dom
    home = _chromium("--dump-dom", pages["home"], profile=tmp_path / "home-again").stdout
    assert "By region" in home and "Southeast Asia" in home
    page = _chromium("--dump-dom", pages["article"], profile=tmp_path / "article-again").stdout
    assert "<h1>Xi meets Lao president</h1>" in page and "Thongloun Sisoulith" in page
