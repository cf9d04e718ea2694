"""A search that takes too long is the reader's to shorten (400, "try fewer words"); any
other trouble with the database during a search is the database's, and said as such (503),
never passed off as a slow search."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from digest.common.errors import SearchTimeout, StoreError
from digest.common.models import Article
from digest.common.query import parse
from digest.store import SourceSpec, open_store

from .helpers import SEEDS_SOURCE, pulled, settings_for
from .servers import AppServer


def test_a_search_past_its_time_is_a_search_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(tmp_path / "d.db") as store:
        store.sync_sources([SourceSpec("s", "https://s.example/", "feed")])
        now = store.now()
        articles = [
            Article(id=f"a{n}", source="s", title=f"China talks {n}", url=f"https://s.example/{n}", guid=None,
                    summary_html="", summary_text=f"talks with neighbours, round {n}", author=None,
                    published=None, first_seen=now + timedelta(seconds=n), updated=now,
                    content_hash=str(n))
            for n in range(2000)
        ]  # fmt: skip
        store.save_articles("s", articles, now=now)
        assert len(store.search(parse("china talks"), limit=5)) == 5
        # A deadline already past: the first check of the running query stops it.
        monkeypatch.setattr("digest.store.articles.SEARCH_SECONDS", -1.0)
        with pytest.raises(SearchTimeout, match="took too long"):
            store.search(parse("china talks"), limit=5)


@pytest.fixture
def broken_search(tmp_path: Path) -> AppServer:
    settings = settings_for(tmp_path, SEEDS_SOURCE)
    pulled(settings)
    with sqlite3.connect(settings.database.path) as conn:  # the search index is gone
        conn.execute("DROP TABLE articles_fts")
    with open_store(settings.database.path) as store, pytest.raises(StoreError) as raised:
        store.search(parse("china"))
    assert not isinstance(raised.value, SearchTimeout)
    return AppServer(settings)


def test_other_database_trouble_during_a_search_is_not_called_slow(broken_search: AppServer) -> None:
    with broken_search as server:
        for path in ("/search.atom", "/search.json", "/search"):
            answer = httpx.get(server.url(path), params={"q": "china"})
            assert answer.status_code == 503, (path, answer.status_code, answer.text)
            assert "too long" not in answer.text and "test.db" not in answer.text
            assert answer.headers["retry-after"] == "60"
            assert answer.headers["x-content-type-options"] == "nosniff"
        assert httpx.get(server.url("/")).status_code == 200  # the rest of the site still serves
