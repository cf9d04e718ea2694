"""Hostile sources and content: bounded work, a clear error for that source, clean output."""

from __future__ import annotations

import json
import time
from pathlib import Path

import feedparser
import pytest

from digest.intake.pull import pull
from digest.publish.site import Site
from digest.store import open_store

from .helpers import (
    SEEDS_SOURCE,
    add_subscribers,
    article,
    listed_articles,
    rss,
    run,
    settings_for,
    sql_value,
    write_config,
)
from .servers import FeedServer, Reply

LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">'.encode()
        for n in range(1, 10)
    )
    + b']><rss version="2.0"><channel><title>t</title><item><title>&lol9;</title><link>http://x.org/1</link></item></channel></rss>'
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><rss version="2.0"><channel>'
    b"<title>t</title><item><title>Safe &xxe;</title><link>http://x.org/2</link></item></channel></rss>"
)


def _pull_one(server: FeedServer, tmp_path: Path, body: bytes, extra: str = "") -> tuple[object, list]:  # type: ignore[type-arg]
    server.routes["/f"] = Reply(200, body, {"Content-Type": "application/rss+xml"})
    settings = settings_for(tmp_path, f'{extra}[[sources]]\nname = "f"\nurl = "{server.url("/f")}"\n')
    with open_store(settings.database.path) as store:
        started = time.monotonic()
        [report] = pull(settings, store)
        report.took = time.monotonic() - started  # type: ignore[attr-defined]
        return report, store.articles()


def test_entity_expansion_and_external_entities_go_nowhere(server: FeedServer, tmp_path: Path) -> None:
    report, articles = _pull_one(server, tmp_path, LAUGHS)
    assert report.took < 5  # type: ignore[attr-defined]
    assert all(len(a.title) < 400 for a in articles)
    (tmp_path / "x").mkdir()
    _, safe = _pull_one(server, tmp_path / "x", XXE)
    assert safe and all("root:" not in a.title + a.summary_text for a in safe)


def test_a_feed_with_too_many_items_is_refused_quickly(server: FeedServer, tmp_path: Path) -> None:
    body = rss([{"title": f"i{n}", "link": f"http://x.org/{n}"} for n in range(20_000)])
    report, articles = _pull_one(server, tmp_path, body, "[fetch]\nmax_items = 5000\nmax_bytes = 52428800\n")
    assert "20000 items is over the limit of 5000" in str(report.error)  # type: ignore[attr-defined]
    assert report.took < 5 and articles == []  # type: ignore[attr-defined]


def test_huge_titles_and_bodies_are_cut(server: FeedServer, tmp_path: Path) -> None:
    title = "word " * 2_000_000  # a 10 MB title
    body = rss([{"title": title, "link": "http://x.org/big", "description": "x" * 3_000_000}])
    report, articles = _pull_one(server, tmp_path, body, "[fetch]\nmax_bytes = 52428800\n")
    assert report.ok and report.took < 20  # type: ignore[attr-defined]
    [article] = articles
    assert len(article.title) <= 300 and article.title.endswith("…")
    assert len(article.summary_html) <= 1_100_000


def test_controls_bidi_and_broken_utf8_never_reach_readers(server: FeedServer, tmp_path: Path) -> None:
    raw = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        "<item><title>Esc\x1b[31m \u202eevil\u202c &#x7; title</title><link>http://x.org/c</link>"
        '<description>&lt;p style="background:url(javascript:x)" onload="y()"&gt;ok&lt;img src="http://track.example/p.gif"&gt;&lt;/p&gt;</description></item>'
        "</channel></rss>"
    ).encode() + b"<!-- \xff\xfe broken utf-8 -->"
    _, articles = _pull_one(server, tmp_path, raw)
    [article] = articles
    for bad in ("\x1b", "\u202e", "\u202c", "\x07"):
        assert bad not in article.title
    for bad in ("javascript", "onload", "track.example", "style="):
        assert bad not in article.summary_html
    settings = settings_for(tmp_path, f'[[sources]]\nname = "f"\nurl = "{server.url("/f")}"\n')
    site = Site(settings)
    with open_store(settings.database.path) as store:
        feed, _ = site.feed(store, site.specs[0], "atom")
        page = site.article(store, article)
    assert feedparser.parse(feed).bozo == 0 and "\x1b" not in feed.decode() and "\u202e" not in page


def test_backup_while_running(tmp_path: Path) -> None:
    assert run("pull", cwd=tmp_path).returncode == 0
    result = run("backup", str(tmp_path / "copy.db"), cwd=tmp_path)
    assert result.returncode == 0
    assert sql_value(tmp_path / "copy.db", "PRAGMA integrity_check") == "ok"
    assert sql_value(tmp_path / "copy.db", "SELECT count(*) FROM articles") == 40
    again = run("backup", str(tmp_path / "copy.db"), cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ('[digest]\ntemplates = "no-such-folder"\n', "digest.templates:"),
        ('[schedule]\ndigest_cron = "99 * * * *"\n', "schedule.digest_cron"),
        ('[schedule]\ntimezone = "Nowhere/Land"\n', "schedule.timezone"),
        ('[fetch]\nmax_items = "lots"\n', "fetch.max_items"),
        ('[site]\ntitel = "typo"\n', "site.titel: unknown key"),
    ],
)
def test_each_mistake_gets_one_line(tmp_path: Path, config: str, needle: str) -> None:
    path = tmp_path / "digest.toml"
    path.write_text(config)
    result = run("--config", str(path), "run", "--check", cwd=tmp_path)
    output = result.stderr + result.stdout
    assert "Traceback" not in output and needle in output
    if "unknown key" not in needle:
        assert (
            result.returncode == 1 and len([line for line in result.stderr.splitlines() if line.strip()]) == 1
        )


def test_a_broken_user_template_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "digest.html.j2").write_text("<p>{{ broken </p>")
    (tmp_path / "digest.toml").write_text('[digest]\ntemplates = "mine"\n')
    run("pull", cwd=tmp_path)
    result = run("preview", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "digest.html.j2, line 1" in result.stderr
    assert listed_articles("--limit", "1", cwd=tmp_path)


BAD_LINKS = [
    "javascript:alert(document.cookie)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(2)",
    "data:text/html,<script>alert(3)</script>",
    "vbscript:msgbox(4)",
    "file:///etc/passwd",
    "mailto:someone@example.org",
]


def _active_links(text: str) -> list[str]:
    lowered = text.lower()
    return [scheme for scheme in ("javascript:", "data:", "vbscript:", "file:") if scheme in lowered]


def test_only_web_links_leave_digest(server: FeedServer, tmp_path: Path) -> None:
    from digest.publish.feeds import FeedSpec, render
    from digest.publish.site import publish_site

    items = [
        {"title": f"Bad link {n}", "link": link.replace("&", "&amp;").replace("<", "&lt;"), "guid": f"g{n}"}
        for n, link in enumerate(BAD_LINKS)
    ]
    items.append({"title": "Good link", "link": "https://example.org/good", "guid": "good"})
    server.routes["/f"] = Reply(200, rss(items), {"Content-Type": "application/rss+xml"})
    settings = settings_for(
        tmp_path,
        f'[site]\nbase_url = "https://news.example.org"\n[[sources]]\nname = "f"\nurl = "{server.url("/f")}"\n',
    )
    with open_store(settings.database.path) as store:
        [report] = pull(settings, store)
        assert report.new == len(BAD_LINKS) + 1
        stored = {a.title: a for a in store.articles()}
        assert {t: a.url for t, a in stored.items() if a.url} == {"Good link": "https://example.org/good"}
        spec = FeedSpec("site", None, "T")
        articles = store.articles()
        for fmt in ("atom", "rss", "json"):
            body = render(spec, fmt, articles, settings).decode()
            assert _active_links(body) == [], fmt
            if fmt == "json":
                links = {i["title"]: i["url"] for i in json.loads(body)["items"]}
            else:
                links = {e.title: e.link for e in feedparser.parse(body).entries}
            bad = stored["Bad link 0"]
            assert links["Bad link 0"] == f"https://news.example.org/articles/{bad.id}", fmt
            assert links["Good link"] == "https://example.org/good", fmt
        page = Site(settings).article(store, bad)
        assert "Read it at the source" not in page and _active_links(page) == []
        out = tmp_path / "public"
        publish_site(settings, store, out)
        for path in out.rglob("*"):
            if path.is_file():
                assert _active_links(path.read_text()) == [], path


def test_links_stored_before_the_fix_are_not_published(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from digest.publish.feeds import FeedSpec, render

    settings = settings_for(tmp_path, '[[sources]]\nname = "s"\nurl = "https://example.org/feed"\n')
    when = datetime(2026, 11, 1, tzinfo=UTC)
    with open_store(settings.database.path) as store:
        store.sync_sources(settings.sources)
        store.save_articles("s", [article("a1", when, title="Old", url="https://example.org/old")], now=when)
        # As an earlier version stored it, before links were checked.
        store.conn.execute("UPDATE articles SET url = 'javascript:alert(1)' WHERE id = 'a1'")
        found = store.article("a1")
        assert found is not None
        for fmt in ("atom", "rss", "json"):
            assert _active_links(render(FeedSpec("site", None, "T"), fmt, [found], settings).decode()) == []
        assert _active_links(Site(settings).article(store, found)) == []
        store.conn.execute("DELETE FROM migrations WHERE name = '0006_web_links_only'")
    with open_store(settings.database.path) as store:  # the migration clears such links
        assert store.article("a1").url is None  # type: ignore[union-attr]


def test_files_digest_creates_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    import os
    import stat

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    config = write_config(tmp_path, f'{SEEDS_SOURCE}[outbox]\npath = "out"\n')
    old = os.umask(0o022)  # the usual umask: new files world-readable unless digest says otherwise
    try:
        assert run("--config", str(config), "pull", cwd=tmp_path).returncode == 0
        database = tmp_path / "test.db"
        with open_store(database) as store:  # while open: the WAL and shared-memory files exist
            store.put_setting("x", "y")
            files = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
            assert all(p.exists() for p in files)
            assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
        assert run("--config", str(config), "backup", str(tmp_path / "copy.db"), cwd=tmp_path).returncode == 0
        assert mode(tmp_path / "copy.db") == 0o600
        add_subscribers(config, "ann@example.org")
        assert run("--config", str(config), "send", cwd=tmp_path).returncode == 0
        out = tmp_path / "out"
        assert mode(out) == 0o700 and [mode(p) for p in out.iterdir()] == [0o600]
        # A database and an outbox made world-readable by an earlier version are tightened.
        database.chmod(0o644)
        out.chmod(0o755)
        open_store(database).close()
        assert run("--config", str(config), "send", "--to", "bob@example.org", cwd=tmp_path).returncode == 0
        assert mode(database) == 0o600 and mode(out) == 0o700
    finally:
        os.umask(old)
