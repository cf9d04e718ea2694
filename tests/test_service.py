"""`digest run` as a real subprocess: scheduled pulls, the digest once, restarts, shutdown."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .helpers import (
    add_subscribers,
    cron_away,
    free_port,
    hourly_away,
    rss,
    run,
    silent_port,
    smtp_section,
    within,
    write_config,
)
from .servers import FeedServer, Reply, Running, SmtpSink


def _config(tmp_path: Path, smtp: SmtpSink, sources: str, cron: str = "*/2 * * * * *") -> tuple[Path, int]:
    port = free_port()
    body = (
        f'[schedule]\npull_every = "1s"\ndigest_cron = "{cron}"\n'
        f"[web]\nport = {port}\n"
        f"{smtp_section(smtp.port, timeout='5s')}"
        f"{sources}"
    )
    return write_config(tmp_path, body), port


@pytest.fixture
def feed(server: FeedServer) -> Iterator[FeedServer]:
    server.routes["/f.xml"] = Reply(
        200, rss([{"title": "First story", "link": "https://x.org/1", "description": "One."}])
    )
    yield server


def test_the_service_pulls_sends_once_restarts_and_stops_cleanly(
    feed: FeedServer, smtp: SmtpSink, tmp_path: Path
) -> None:
    config, port = _config(tmp_path, smtp, f'[[sources]]\nname = "f"\nurl = "{feed.url("/f.xml")}"\n')
    assert run("--config", str(config), "run", "--check", cwd=tmp_path).returncode == 0
    add_subscribers(config, "ann@example.org")
    service = Running(config, tmp_path)
    try:
        assert within(lambda: len(smtp.messages) >= 1), service.lines
        health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
        assert health["status"] == "ok" and health["last_pull"]
        # A new item on the feed is pulled within seconds and goes out in the next digest.
        feed.routes["/f.xml"] = Reply(
            200,
            rss(
                [
                    {"title": "Second story", "link": "https://x.org/2", "description": "Two."},
                    {"title": "First story", "link": "https://x.org/1", "description": "One."},
                ]
            ),
        )
        assert within(lambda: len(smtp.messages) >= 2), service.lines
        # More cron ticks, seen in the log: nothing new, nothing sent.
        ticks = service.count("digest", "nothing new")
        assert within(lambda: service.count("digest", "nothing new") >= ticks + 2), service.lines
    finally:
        code, took = service.stop()
    assert code == 0 and took < 10
    bodies = [m.get_body(("plain",)).get_content() for _, m in smtp.messages]
    assert (
        len(bodies) == 2
        and "First story" in bodies[0]
        and "Second story" in bodies[1]
        and "First story" not in bodies[1]
    )
    again = Running(config, tmp_path)  # a restart right after sends nothing again
    try:  # its catch-up and two cron ticks, seen in its log
        assert within(lambda: again.count("catch-up") == 1), again.lines
        assert within(lambda: again.count("digest", "nothing new") >= 2), again.lines
    finally:
        assert again.stop()[0] == 0
    assert len(smtp.messages) == 2
    status = run("--config", str(config), "status", cwd=tmp_path)
    assert (
        status.returncode == 0
        and "sent 1, failed 0, pending 0" in status.stdout
        and "Next digest:" in status.stdout
    )


def test_a_digest_missed_while_down_is_sent_once_on_start(
    feed: FeedServer, smtp: SmtpSink, tmp_path: Path
) -> None:
    sources = f'[[sources]]\nname = "f"\nurl = "{feed.url("/f.xml")}"\n'
    config, _ = _config(tmp_path, smtp, sources, cron=hourly_away())
    first = Running(config, tmp_path)
    assert within(lambda: first.count("catch-up") == 1), first.lines
    assert first.stop()[0] == 0
    add_subscribers(config, "ann@example.org")
    # The digest fell due while the service was down: pretend it was two hours ago.
    from digest.common.dates import to_iso, utcnow
    from digest.config import load_settings
    from digest.store import open_store

    settings = load_settings(config, env={})
    with open_store(settings.database.path) as store:
        from datetime import timedelta

        store.put_setting("digest_last_due", to_iso(utcnow() - timedelta(hours=2)))
    second = Running(config, tmp_path)
    try:
        assert within(lambda: len(smtp.messages) >= 1), second.lines
        assert within(lambda: second.count("digest", "sent") >= 1), second.lines  # its report
    finally:
        assert second.stop()[0] == 0
    assert smtp.recipients() == ["ann@example.org"]
    assert any("was missed" in str(e["message"]) for e in second.events())
    third = Running(config, tmp_path)  # and not again: its catch-up finds nothing missed
    try:
        assert within(lambda: third.count("catch-up", "no digest missed") == 1), third.lines
    finally:
        third.stop()
    assert len(smtp.messages) == 1


def test_a_hanging_source_delays_nothing(feed: FeedServer, smtp: SmtpSink, tmp_path: Path) -> None:
    with silent_port() as hanging:
        sources = (
            f'[[sources]]\nname = "hang"\nurl = "http://127.0.0.1:{hanging}/feed"\n'
            f'[[sources]]\nname = "f"\nurl = "{feed.url("/f.xml")}"\n'
        )
        config, _ = _config(tmp_path, smtp, sources)
        add_subscribers(config, "ann@example.org")
        service = Running(config, tmp_path)
        started = time.monotonic()
        try:
            assert within(lambda: len(smtp.messages) >= 1, 19), service.lines
            took = time.monotonic() - started
        finally:
            code, stop_took = service.stop()
    assert took < 19  # before the hanging fetch times out (20 s), with room for a loaded machine
    assert code == 0 and stop_took < 10


def test_two_processes_on_one_database_send_one_digest(
    feed: FeedServer, smtp: SmtpSink, tmp_path: Path
) -> None:
    sources = f'[[sources]]\nname = "f"\nurl = "{feed.url("/f.xml")}"\n'
    config, _ = _config(tmp_path, smtp, sources)
    other = tmp_path / "other.toml"
    other.write_text(config.read_text().replace("[web]\nport = ", f"[web]\nport = {free_port()}\n# was "))
    add_subscribers(config, *(f"r{n}@example.org" for n in range(3)))
    one, two = Running(config, tmp_path), Running(other, tmp_path)
    try:
        assert within(lambda: len(smtp.messages) >= 3), one.lines + two.lines
        # Two more ticks in each process (the cron fires every 2 s): still nothing more sent.
        before = [p.count("digest") for p in (one, two)]
        assert within(
            lambda: all(p.count("digest") >= n + 2 for p, n in zip((one, two), before, strict=True))
        )
    finally:
        one.stop()
        two.stop()
    assert sorted(smtp.recipients()) == ["r0@example.org", "r1@example.org", "r2@example.org"]


def test_the_database_survives_the_service_and_commands_at_once(
    feed: FeedServer, smtp: SmtpSink, tmp_path: Path
) -> None:
    config, _ = _config(tmp_path, smtp, f'[[sources]]\nname = "f"\nurl = "{feed.url("/f.xml")}"\n')
    service = Running(config, tmp_path)
    failures = []
    try:
        deadline = time.monotonic() + 8
        n = 0
        while time.monotonic() < deadline:
            for args in (
                ("pull",),
                ("articles", "--json"),
                ("subscribers", "add", f"c{n}@example.org", "--confirmed"),
                ("status",),
            ):
                result = run("--config", str(config), *args, cwd=tmp_path)
                if result.returncode != 0 or "Traceback" in result.stderr:
                    failures.append((args, result.stderr[-300:]))
            n += 1
    finally:
        assert service.stop()[0] == 0
    assert failures == []
    import sqlite3

    with sqlite3.connect(tmp_path / "test.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM subscribers").fetchone()[0] == n


def test_credentials_in_source_urls_never_show(server: FeedServer, smtp: SmtpSink, tmp_path: Path) -> None:
    server.routes["/private.xml"] = Reply(500, b"boom")
    host = server.base.removeprefix("http://")
    url = f"http://reader:s3cret-pass@{host}/private.xml?api_key=TOPSECRET&format=rss"
    config, port = _config(tmp_path, smtp, f'[[sources]]\nname = "private"\nurl = "{url}"\n')
    service = Running(config, tmp_path)
    try:
        assert within(lambda: any(e.get("event") == "pull" for e in service.events())), service.lines
        local = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
        # Behind a reverse proxy on this machine, a visitor's address comes in X-Forwarded-For.
        visitor = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Forwarded-For": "203.0.113.7"})
    finally:
        service.stop()
    [failing] = local["failing_sources"]
    assert failing["source"] == "private" and failing["error"].startswith(
        f"http://{host}/private.xml?…: HTTP 500"
    )
    assert visitor.json() == {"status": "ok"}  # no sources, errors or schedule for visitors
    status = run("--config", str(config), "status", cwd=tmp_path)
    pull = run("--config", str(config), "pull", cwd=tmp_path)
    assert "HTTP 500" in status.stdout and "HTTP 500" in pull.stderr
    shown = [
        json.dumps(local),
        "".join(service.lines),
        status.stdout,
        status.stderr,
        pull.stdout,
        pull.stderr,
    ]
    for text in shown:
        assert "s3cret" not in text and "TOPSECRET" not in text and "reader:" not in text


def test_the_service_sends_to_whoever_is_due_on_their_own_rhythm(
    feed: FeedServer, smtp: SmtpSink, tmp_path: Path
) -> None:
    from digest.common.dates import utcnow
    from digest.config import load_settings
    from digest.store import open_store

    sources = f'[[sources]]\nname = "f"\nurl = "{feed.url("/f.xml")}"\n'
    config, _ = _config(tmp_path, smtp, sources, cron=cron_away())  # the site's
    add_subscribers(config, "ann@example.org", options=("--confirmed", "--cadence", "daily", "--hour", "6"))
    add_subscribers(config, "bob@example.org")  # the site's schedule
    assert run("--config", str(config), "pull", cwd=tmp_path).returncode == 0
    settings = load_settings(config, env={})
    with open_store(settings.database.path) as store:
        ann = store.subscriber(email="ann@example.org")
        assert ann is not None and ann.next_due is not None and ann.next_due > utcnow()
        store.set_next_due([(ann.id, utcnow())])  # her 06:00 has just come
    first = Running(config, tmp_path)
    try:
        assert within(lambda: len(smtp.messages) >= 1), first.lines
        assert within(lambda: first.count("digest", "1 sent") >= 1), first.lines
    finally:
        assert first.stop()[0] == 0
    assert smtp.recipients() == ["ann@example.org"]  # bob's cron has not fired
    assert str(smtp.messages[0][1]["Subject"]).startswith("Your daily digest, ")
    with open_store(settings.database.path) as store:
        ann = store.subscriber(email="ann@example.org")
        assert ann is not None and ann.next_due is not None and ann.next_due > utcnow()  # tomorrow 06:00
    again = Running(config, tmp_path)  # a restart: she is not due again
    try:
        assert within(lambda: again.count("catch-up") == 1), again.lines
        time.sleep(1)
    finally:
        assert again.stop()[0] == 0
    assert len(smtp.messages) == 1
