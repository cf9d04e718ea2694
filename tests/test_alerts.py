"""The operator hears about trouble: alerts by email through a real SMTP sink, from sources
pulled for real from 127.0.0.1, checked tick by tick over simulated days; and the same
state at /healthz and in /metrics."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from digest.common.dates import to_iso, utcnow
from digest.config import AlertSettings, Settings
from digest.intake.pull import pull
from digest.service import alerting, alerts
from digest.store import DigestRecord, DigestSummary, SourceSummary, Store, open_store

from .helpers import pulled, rss, settings_for, smtp_section
from .servers import AppServer, FeedServer, Reply, SmtpSink


def _check(settings: Settings, at: Any) -> list[alerts.Notice]:
    with open_store(settings.database.path) as store:

        async def run(function: Any) -> Any:
            return function(store)

        return asyncio.run(alerting.check(run, settings, "test-holder", at))


def _feed(*titles: str) -> bytes:
    return rss(
        [{"title": t, "link": f"https://example.org/{n}", "guid": f"g{t}"} for n, t in enumerate(titles)]
    )


def test_a_failing_source_and_a_quiet_source_each_alert_once_a_day_and_recover_once(
    tmp_path: Path, server: FeedServer, smtp: SmtpSink
) -> None:
    server.routes["/broken.xml"] = Reply(500, b"oops")
    server.routes["/quiet.xml"] = Reply(body=_feed("Laos and China sign a rail deal"))
    settings = settings_for(
        tmp_path,
        smtp_section(smtp.port, timeout="5s")
        + '[alerts]\nemail = "Ops@Example.org"\nfailures = 5\nquiet_days = 14\n'
        f'[[sources]]\nname = "broken"\nurl = "{server.url("/broken.xml")}"\n'
        f'[[sources]]\nname = "quiet"\nurl = "{server.url("/quiet.xml")}"\n',
    )
    assert settings.alerts.email == "Ops@example.org"  # checked and normalised
    with open_store(settings.database.path) as store:
        for _ in range(5):
            pull(settings, store, ["broken"], force=True)
        pull(settings, store, ["quiet"], force=True)
        assert {s.name: s.consecutive_failures for s in store.source_summaries()} == {"broken": 5, "quiet": 0}
    t0 = utcnow()
    with sqlite3.connect(settings.database.path) as db:  # the quiet source's news is 20 days old
        db.execute("UPDATE articles SET first_seen = ?", [to_iso(t0 - timedelta(days=20))])

    ticks = [t0 + timedelta(hours=6 * n) for n in range(13)]  # three days, four ticks a day
    said: list[tuple[int, alerts.Notice]] = []
    for n, at in enumerate(ticks):
        said += [(n, notice) for notice in _check(settings, at)]
    per_day = Counter((notice.key, n // 4) for n, notice in said)
    assert set(per_day) == {
        (key, day) for key in ("source-failing:broken", "source-quiet:quiet") for day in range(4)
    }
    assert set(per_day.values()) == {1}  # one alert per problem per day, no more
    assert not any(notice.recovered for _, notice in said)
    assert len(smtp.messages) == len(said) == 8
    recipients, first = smtp.messages[0]
    assert recipients == ["Ops@example.org"] and first["Subject"].startswith("[Digest] problem: ")
    assert "failed its last 5 pulls" in smtp.messages[0][1].get_content()

    # /healthz (its details, for loopback) names the open problems, as the check last saw them.
    from digest.service.runner import Service

    _, health = asyncio.run(Service(settings).health())
    assert [(p["problem"], p["since"]) for p in health["problems"]] == [
        ("source-failing:broken", to_iso(t0)),
        ("source-quiet:quiet", to_iso(t0)),
    ]
    assert "no new article since" in health["problems"][1]["summary"]

    # Both recover: the broken source answers again, the quiet one has news.
    server.routes["/broken.xml"] = Reply(body=_feed("Cambodia hosts a summit"))
    server.routes["/quiet.xml"] = Reply(
        body=_feed("Laos and China sign a rail deal", "Vietnam and China talk trade")
    )
    pulled(settings, force=True)
    later = ticks[-1] + timedelta(hours=6)
    recovered = _check(settings, later)
    assert sorted((n.key, n.recovered) for n in recovered) == [
        ("source-failing:broken", True),
        ("source-quiet:quiet", True),
    ]
    subjects = [m["Subject"] for _, m in smtp.messages[-2:]]
    assert sorted(subjects) == [
        "[Digest] recovered: source-failing:broken",
        "[Digest] recovered: source-quiet:quiet",
    ]
    for n in range(1, 9):  # and nothing more, day after day
        assert _check(settings, later + timedelta(hours=6 * n)) == []
    assert len(smtp.messages) == 10


def test_an_alert_that_cannot_be_sent_waits_and_is_sent_once(
    tmp_path: Path, server: FeedServer, smtp: SmtpSink
) -> None:
    server.routes["/broken.xml"] = Reply(500, b"oops")
    body = (
        '[alerts]\nemail = "ops@example.org"\nfailures = 1\n'
        f'[[sources]]\nname = "broken"\nurl = "{server.url("/broken.xml")}"\n'
    )
    dead = settings_for(tmp_path, smtp_section(9, timeout="2s") + body)
    pulled(dead, force=True)
    now = utcnow()
    assert _check(dead, now) == []  # no mail server: nothing said, nothing recorded as said
    from digest.service.runner import Service

    _, health = asyncio.run(Service(dead).health())  # but /healthz knows
    assert [p["problem"] for p in health["problems"]] == ["source-failing:broken"]
    live = replace(dead, smtp=replace(dead.smtp, port=smtp.port))  # type: ignore[arg-type]
    assert [n.key for n in _check(live, now + timedelta(minutes=5))] == ["source-failing:broken"]
    assert _check(live, now + timedelta(minutes=10)) == [] and len(smtp.messages) == 1


def _summary(digest_id: str, created: Any, sent: int, bounced: int) -> DigestSummary:
    return DigestSummary(DigestRecord(digest_id, created, created, "done"), sent, 0, 0, bounced)


def test_digest_runs_with_failures_and_bounce_rates_are_problems() -> None:
    now = utcnow()
    settings = AlertSettings(email="ops@example.org")
    quiet_source = SourceSummary("s", 1, now, 200, None, 0, None, None, created=now, newest=now)
    assert alerts.problems([quiet_source], [], None, settings, now) == []
    run = {"digest": "d9", "total": 40, "failed": 0, "deferred": 40, "problem": "smtp: connection refused"}
    [problem] = alerts.problems([], [], run, settings, now)
    assert problem.key == "digest-run" and "40 deferred, of 40" in problem.summary
    assert alerts.problems([], [], {**run, "deferred": 0}, settings, now) == []
    digests = [
        _summary("small", now, 10, 5),  # too few to judge
        _summary("fine", now, 100, 5),  # 5%: not past it
        _summary("old", now - timedelta(days=9), 100, 50),  # too long ago
    ]
    assert alerts.problems([], digests, None, settings, now) == []
    [problem] = alerts.problems([], [*digests, _summary("bad", now, 100, 6)], None, settings, now)
    assert problem.key == "bounce-rate" and "6 of 100 messages bounced (6.0%" in problem.summary


def test_bounce_counts_come_from_the_ledger(store: Store) -> None:
    from digest.store import SubscriberChange

    store.upsert_subscribers([SubscriberChange(f"s{n}@example.org") for n in range(25)])
    ids = [s.id for s in store.subscribers()]
    now = utcnow()
    store.create_digest("d1", now, [(i, now, None) for i in ids])
    for i in ids:
        store.record_delivery("d1", i, "sent", message_id=f"<{i}@x>")
    for i in ids[:2]:
        store.record_feedback(i, "d1", "hard", "5.1.1", soft_limit=3, now=now)
    store.record_feedback(ids[2], "d1", "complaint", "abuse", soft_limit=3, now=now)  # not a bounce
    [summary] = store.digests()
    assert (summary.sent, summary.bounced) == (25, 2)
    [problem] = alerts.problems([], [summary], None, AlertSettings(email="o@example.org"), now)
    assert "2 of 25 messages bounced (8.0%" in problem.summary


def test_metrics_are_off_by_default_and_speak_prometheus_when_on(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "")
    with AppServer(settings) as app:
        assert httpx.get(app.url("/metrics"), timeout=5).status_code == 404
    on = replace(settings, web=replace(settings.web, metrics=True))
    from digest.common import metrics

    metrics.feedback("hard", "bounced")
    metrics.feedback("complaint", "unsubscribed")
    metrics.feedback("hard", "repeat")  # a repeat is not counted again
    with AppServer(on) as app:
        answer = httpx.get(app.url("/metrics"), timeout=5)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    for name in (
        'digest_pulls_total{outcome="ok"}',
        "digest_articles_total",
        'digest_deliveries_total{outcome="sent"}',
        'digest_bounces_total{kind="hard"}',
        "digest_complaints_total",
        "digest_pull_duration_seconds_bucket",
        "digest_send_duration_seconds_bucket",
    ):
        assert name in text, name
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values['digest_bounces_total{kind="hard"}'] >= 1 and values["digest_complaints_total"] >= 1
