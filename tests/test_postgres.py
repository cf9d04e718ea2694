"""digest on PostgreSQL, as users run it: several `digest run` workers on one database with
a real SMTP sink and real feeds, a worker killed mid-send, `db copy` both ways, and the
messages for a server that is down, a wrong password or a missing database.

A throwaway server is started for the session (``tests/pgcluster.py``); these tests skip
with a message where PostgreSQL is not installed, and fail in CI, where it must be.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from digest.store import open_store
from digest.store.postgres.schema import MIGRATIONS
from tests import pgcluster

from .helpers import SEEDS, free_port, rss, run, within
from .servers import FeedServer, Reply, SmtpSink


@pytest.fixture
def pg(tmp_path: Path) -> str:
    """The URL of a new, empty database (a skip, or a failure in CI, without PostgreSQL)."""
    return pgcluster.database_for(str(tmp_path))


def _config(folder: Path, url: str, body: str = "", name: str = "digest.toml") -> Path:
    path = folder / name
    path.write_text(f'[database]\nurl = "{url}"\nclaim_seconds = "3s"\n\n{body}', encoding="utf-8")
    return path


def _digest(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run("--config", str(config), *args, cwd=config.parent, env=env)


class Worker:
    """`digest run` in a subprocess, its stderr (JSON log lines) collected."""

    def __init__(self, config: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(config), "run", "--log-format", "json"],
            cwd=config.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def events(self, event: str) -> list[str]:
        found = [json.loads(line) for line in self.lines if line.startswith("{")]
        return [str(e["message"]) for e in found if e.get("event") == event]

    def sent(self) -> int:
        """Messages this worker reported sending, over all its digest runs."""
        return sum(int(m.split(": ")[1].split(" sent")[0]) for m in self.events("digest") if " sent," in m)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def workers() -> Iterator[Callable[[Path], Worker]]:
    started: list[Worker] = []

    def start(config: Path) -> Worker:
        started.append(Worker(config))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


def _cron_in(seconds: int) -> tuple[str, float]:
    """A six-field cron (seconds first, UTC) due once, ``seconds`` from now; when, in time.time()."""
    due = time.time() + seconds
    moment = time.gmtime(due)
    return f"{moment.tm_sec} {moment.tm_min} {moment.tm_hour} * * *", due


def _service_config(folder: Path, url: str, smtp: SmtpSink, feed: FeedServer, cron: str) -> Path:
    return _config(
        folder,
        url,
        f'[schedule]\npull_every = "1h"\ndigest_cron = "{cron}"\n'
        f"[web]\nport = 0\n"
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\ntimeout = "10s"\n'
        f'[[sources]]\nname = "f"\nurl = "{feed.url("/f.xml")}"\n',
    )


def _subscribers(config: Path, count: int) -> None:
    table = config.parent / "people.csv"
    with table.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["email", "status"])
        out.writerows([f"reader{n:05d}@example.org", "active"] for n in range(count))
    done = _digest(config, "subscribers", "import", str(table))
    assert done.returncode == 0, done.stderr


def _recipients(smtp: SmtpSink) -> Counter[str]:
    return Counter(rcpt for rcpts, _ in smtp.messages for rcpt in rcpts)


@pytest.fixture
def feed(server: FeedServer) -> FeedServer:
    server.routes["/f.xml"] = Reply(
        200, rss([{"title": f"Story {n} from Vientiane", "link": f"https://x.org/{n}",
                   "description": f"Laos and the Mekong, part {n}."} for n in range(5)])
    )  # fmt: skip
    return server


# --- sharing the sending ------------------------------------------------------------------


@pytest.mark.parametrize("count", [2, 3])
def test_workers_share_a_digest_and_each_subscriber_gets_exactly_one(
    count: int, pg: str, feed: FeedServer, smtp: SmtpSink, tmp_path: Path, workers: Callable[[Path], Worker]
) -> None:
    config = _service_config(tmp_path, pg, smtp, feed, "0 0 1 1 *")
    assert _digest(config, "pull").returncode == 0
    _subscribers(config, 2000)
    smtp.delay = 0.002  # a server that takes a moment per message, as real ones do
    # Due once, 10 s after the workers start however long the setup took: they are all up by
    # then (a later one would join through its catch-up, while the sending goes on).
    cron, due = _cron_in(10)
    _service_config(tmp_path, pg, smtp, feed, cron)
    started = [workers(config) for _ in range(count)]
    assert within(lambda: len(smtp.messages) >= 2000 and all(w.sent() for w in started), 90), [
        w.lines[-3:] for w in started
    ]
    time.sleep(1)  # nothing more may come
    received = _recipients(smtp)
    assert len(received) == 2000 and set(received.values()) == {1}  # each exactly once
    shares = [w.sent() for w in started]
    assert sum(shares) == 2000 and all(share > 0 for share in shares), shares
    assert time.time() >= due
    with psycopg.connect(pg) as conn:  # one digest, planned once, sent by all
        assert conn.execute("SELECT count(*) FROM digests").fetchone() == (1,)


def _seeds_on(backend: str, smtp: SmtpSink, folder: Path, request: pytest.FixtureRequest) -> Path:
    """A config for the seeds (pulled) and the SMTP sink, on a SQLite file or a new
    PostgreSQL database."""
    body = f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\n[[sources]]\nname = "seeds"\nurl = "{SEEDS}"\n'
    if backend == "postgresql":
        config = _config(folder, request.getfixturevalue("pg"), body)
    else:
        config = folder / "digest.toml"
        config.write_text(f'[database]\npath = "digest.db"\n{body}', encoding="utf-8")
    assert _digest(config, "pull").returncode == 0
    return config


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_digest_sends_at_once_plan_one_digest_and_share_it(
    backend: str, smtp: SmtpSink, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = _seeds_on(backend, smtp, tmp_path, request)
    _subscribers(config, 300)
    smtp.delay = 0.002
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    sends = [
        subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(config), "send"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]  # fmt: skip
    outcomes = [(p.wait(timeout=120), p.stdout.read() if p.stdout else "") for p in sends]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    received = _recipients(smtp)
    assert len(received) == 300 and set(received.values()) == {1}
    shares = [int(m[1]) for _, out in outcomes for m in [re.search(r": (\d+) sent", out)] if m]
    assert sum(shares) == 300 and all(shares), outcomes  # both sent part of the one digest


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_dry_run_records_nothing(
    backend: str, smtp: SmtpSink, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`digest send --dry-run`, even --at a past moment, leaves the database as it found it
    (a dump of every table before and after is equal), so a weekly reader due in two days
    is not mailed by the next plain send."""
    from datetime import UTC, datetime, timedelta

    from digest.config import load_settings
    from digest.store import open_store

    config = _seeds_on(backend, smtp, tmp_path, request)
    now = datetime.now(UTC)
    in_two_days = now + timedelta(days=2)
    weekly = ("--cadence", "weekly", "--timezone", "UTC", "--hour", str(in_two_days.hour))
    weekday = ("--weekday", in_two_days.strftime("%a").lower())
    assert (
        _digest(config, "subscribers", "add", "ann@example.org", "--confirmed", *weekly, *weekday).returncode
        == 0
    )
    assert _digest(config, "subscribers", "add", "bob@example.org", "--confirmed").returncode == 0
    settings = load_settings(config, env={})

    def dump() -> dict[str, list[dict[str, object]]]:
        with open_store(settings.database.target, password=settings.database.password or None) as store:
            return {table: sorted((dict(row) for row in rows), key=repr) for table, rows in store.dump()}

    before = dump()
    for args in (
        ("--at", (now - timedelta(days=10)).isoformat()),
        ("--at", (now + timedelta(days=30)).isoformat()),
        (),
    ):
        shown = _digest(config, "send", "--dry-run", *args)
        assert shown.returncode == 0 and "new digest" in shown.stdout, shown.stderr
        assert "due again from now" not in shown.stdout + shown.stderr
    assert dump() == before
    assert _digest(config, "send").returncode == 0
    assert smtp.recipients() == ["bob@example.org"]  # ann's day is still two days off


def test_a_worker_killed_mid_send_leaves_its_share_to_the_others(
    pg: str, feed: FeedServer, smtp: SmtpSink, tmp_path: Path, workers: Callable[[Path], Worker]
) -> None:
    config = _service_config(tmp_path, pg, smtp, feed, "0 0 1 1 *")
    assert _digest(config, "pull").returncode == 0
    _subscribers(config, 2000)
    smtp.delay = 0.002
    _service_config(tmp_path, pg, smtp, feed, _cron_in(10)[0])  # due once, after the setup
    doomed, *others = [workers(config) for _ in range(3)]
    assert within(lambda: len(smtp.messages) >= 300, 90)
    # Mid-send: every worker has messages in flight, the server holding their answers.
    smtp.paused = True
    assert within(lambda: smtp.holding >= 6, 10)
    doomed.process.send_signal(signal.SIGKILL)
    doomed.process.wait(timeout=10)
    smtp.paused = False
    # Its claims expire (claim_seconds = 3s) and the others send the rest.
    assert within(lambda: len(_recipients(smtp)) >= 2000, 90), [w.lines[-3:] for w in others]
    time.sleep(1)
    received = _recipients(smtp)
    assert len(received) == 2000 and set(received.values()) == {1}
    assert within(lambda: all(w.sent() for w in others), 30)
    with psycopg.connect(pg) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FROM deliveries"
        ).fetchone()
        assert row == (2000, 2000)
        assert conn.execute("SELECT status FROM digests").fetchall() == [("done",)]


# --- sharing the pulls --------------------------------------------------------------------


def test_two_workers_pull_forty_sources_each_once_per_interval(
    pg: str, server: FeedServer, tmp_path: Path, workers: Callable[[Path], Worker]
) -> None:
    sources = ""
    for n in range(40):
        server.routes[f"/s{n}.xml"] = Reply(
            200, rss([{"title": f"Source {n} item", "link": f"https://x.org/s{n}", "description": "Laos."}])
        )
        sources += f'[[sources]]\nname = "s{n}"\nurl = "{server.url(f"/s{n}.xml")}"\n'
    config = _config(
        tmp_path, pg, f'[schedule]\npull_every = "6s"\ndigest_cron = "0 0 1 1 *"\n[web]\nport = 0\n{sources}'
    )
    pair = [workers(config), workers(config)]

    def first_pulls() -> list[set[str]]:
        return [{m.split()[1].rstrip(":") for m in w.events("pull")} for w in pair]

    def pulled_twice_by_both() -> bool:
        counts = Counter(seen.path for seen in server.requests)
        return len(counts) == 40 and min(counts.values()) >= 2 and all(first_pulls())

    # Waits for what it checks, however slowly a loaded machine starts the workers.
    assert within(pulled_twice_by_both, 150), Counter(seen.path for seen in server.requests)
    for worker in pair:
        worker.stop()
    hits: dict[str, list[float]] = {}
    for seen in server.requests:
        hits.setdefault(seen.path, []).append(seen.at)
    assert len(hits) == 40
    for path, times in hits.items():
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        # Once per interval (6 s), never twice: two workers pulling one source in one interval
        # would be apart by far less than two thirds of it, which scheduling noise never takes.
        assert len(times) >= 2 and min(gaps) > 4.0, (path, gaps)
    pulls = first_pulls()
    assert pulls[0] and pulls[1] and not pulls[0] & pulls[1]  # both shared, neither repeated another
    with psycopg.connect(pg) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM articles").fetchone() == (40, 40)
        assert conn.execute("SELECT count(*) FROM articles WHERE NOT grouped").fetchone() == (0,)


# --- moving between SQLite and PostgreSQL -------------------------------------------------


def test_db_copy_round_trip_keeps_everything_and_old_links_work(
    pg: str, smtp: SmtpSink, tmp_path: Path
) -> None:
    lite = tmp_path / "lite"
    lite.mkdir()
    body = f'[[sources]]\nname = "seeds"\nurl = "{SEEDS}"\n[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\n'
    config = lite / "digest.toml"
    config.write_text(f'[database]\npath = "digest.db"\n{body}', encoding="utf-8")
    assert _digest(config, "pull").returncode == 0
    for address in ("ann@example.org", "bob@example.org"):
        assert _digest(config, "subscribers", "add", address, "--confirmed").returncode == 0
    assert _digest(config, "send").returncode == 0
    link = next(
        str(message["List-Unsubscribe"]).strip("<>")
        for rcpts, message in smtp.messages
        if rcpts == ["bob@example.org"]
    )
    before = [
        _digest(config, *command).stdout for command in (("articles", "--json"), ("subscribers", "export"))
    ]

    copied = _digest(config, "db", "copy", "--to", pg)
    assert copied.returncode == 0, copied.stderr
    assert "40 articles, 2 subscribers, 1 digests, 2 deliveries" in copied.stdout
    refused = _digest(config, "db", "copy", "--to", pg)  # the target is not empty any more
    assert refused.returncode == 1 and "not empty" in refused.stderr and "Traceback" not in refused.stderr

    on_pg = _config(tmp_path, pg, body, name="pg.toml")
    again = tmp_path / "again.toml"  # back down: a new SQLite file takes the copy --from
    again.write_text(f'[database]\npath = "back.db"\n{body}', encoding="utf-8")
    back = _digest(again, "db", "copy", "--from", pg)
    assert back.returncode == 0, back.stderr
    also = _digest(on_pg, "db", "copy", "--to", f"sqlite:///{tmp_path / 'also.db'}")  # the same, from PG
    assert also.returncode == 0 and "40 articles" in also.stdout, also.stderr
    for settings in (on_pg, again):
        after = [
            _digest(settings, *command).stdout
            for command in (("articles", "--json"), ("subscribers", "export"))
        ]
        assert after == before
    assert json.loads(before[0]) and len(json.loads(before[0])) == 40
    for target in (pg, tmp_path / "back.db", tmp_path / "also.db"):  # the kept totals came along
        with open_store(target) as store:
            counted, kept = store.group_counts(), store.group_totals()
            assert (kept.regions, kept.themes) == (counted.regions, counted.themes) and kept.regions
            assert store.count_articles() == 40
            for region in (r.slug for r in kept.regions):  # so did the rows each group lists
                listed = [a.id for a in store.articles() if region in a.regions]
                assert [a.id for a in store.articles(region=region)] == listed, (target, region)

    # The token secret came along: an unsubscribe link mailed before the move still works.
    path = link.split("8080", 1)[1]
    with _serving(on_pg) as base:
        answer = httpx.post(f"{base}{path}", data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200 and "Unsubscribed" in answer.text
    assert "bob@example.org,unsubscribed" in _digest(on_pg, "subscribers", "export").stdout


class _serving:
    """`digest serve` on a free port, for the length of a with block; its base URL."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.port = free_port()

    def __enter__(self) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
        env["DIGEST_WEB_PORT"] = str(self.port)  # base_url stays the config's: one site behind a balancer
        self.process = subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(self.config), "serve"],
            cwd=self.config.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{self.port}"
        assert within(lambda: _answers(f"{base}/healthz"), 30)
        return base

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code in (200, 503)
    except httpx.HTTPError:
        return False


# --- the web, stateless -------------------------------------------------------------------


def test_two_web_processes_agree_on_etags_and_share_rate_limits(
    pg: str, feed: FeedServer, tmp_path: Path
) -> None:
    config = _config(tmp_path, pg, f'[[sources]]\nname = "f"\nurl = "{feed.url("/f.xml")}"\n')
    assert _digest(config, "pull").returncode == 0
    with _serving(config) as one, _serving(config) as two:
        tags = [httpx.get(f"{base}/feed.atom").headers["etag"] for base in (one, two)]
        assert tags[0] == tags[1]
        feed.routes["/f.xml"] = Reply(
            200,
            rss([{"title": "News from Phnom Penh", "link": "https://x.org/new", "description": "Cambodia."}]),
        )
        assert _digest(config, "pull").returncode == 0  # a third process changes the database
        changed = time.monotonic()
        assert within(
            lambda: all(httpx.get(f"{b}/feed.atom").headers["etag"] != tags[0] for b in (one, two)), 10
        )
        # Each looks for changes once a second: a few seconds at most, on both, loaded or not.
        assert time.monotonic() - changed < 5
        assert "Phnom Penh" in httpx.get(f"{two}/feed.atom").text

        # The subscribe form's limit (3 a hour per address) counts requests to either process.
        codes = []
        for n in range(4):
            base = (one, two)[n % 2]
            with httpx.Client(base_url=base, headers={"Origin": base}) as client:
                token = re.search(r'name="form_token" value="([^"]+)"', client.get("/subscribe").text)
                assert token
                codes.append(
                    client.post(
                        "/subscribe", data={"email": "same@example.org", "form_token": token[1]}
                    ).status_code
                )
        assert codes == [200, 200, 200, 429]


# --- starting up --------------------------------------------------------------------------


def test_workers_starting_together_migrate_once(pg: str, tmp_path: Path) -> None:
    config = _config(tmp_path, pg)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(config), "status"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in runs]
    assert all(code == 0 for code, _ in results), results
    with psycopg.connect(pg) as conn:
        applied = conn.execute("SELECT count(*), count(DISTINCT name) FROM migrations").fetchone()
        assert applied == (len(MIGRATIONS), len(MIGRATIONS))


def test_server_down_wrong_password_and_missing_database_are_one_line(pg: str, tmp_path: Path) -> None:
    cluster = pgcluster.shared()
    cluster.sql("CREATE ROLE reader LOGIN PASSWORD 'right-one'")
    database = urlsplit(pg).path.lstrip("/")
    cases = {
        "connection refused": f"postgresql://reader@127.0.0.1:{free_port()}/{database}",
        "password authentication failed": cluster.tcp_url(database, "reader"),
        'database "nowhere" does not exist': cluster.tcp_url("nowhere", "reader"),
    }
    for expected, url in cases.items():
        config = _config(tmp_path, url)
        done = _digest(
            config,
            "status",
            env={"DIGEST_DATABASE_PASSWORD": "wrong-one" if "password" in expected else "right-one"},
        )
        assert done.returncode == 1, (expected, done.stderr)
        [line] = done.stderr.strip().splitlines()
        assert expected in line.lower() and "127.0.0.1" in line and "Traceback" not in line, line
        assert "right-one" not in line and "wrong-one" not in line
    # The right password, from the environment only, opens it.
    config = _config(tmp_path, cluster.tcp_url(database, "reader"))
    cluster.sql("GRANT ALL ON SCHEMA public TO reader", database)
    done = _digest(config, "status", env={"DIGEST_DATABASE_PASSWORD": "right-one"})
    assert done.returncode == 0, done.stderr


def test_an_older_database_gets_its_search_vectors_from_the_one_tokenizer(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL database of the last release (its parser's generated vectors) is given
    vectors made from the one tokenizer: what it held before is found as SQLite finds it;
    and what later steps count (totals, lists, frequencies) is counted on, by 0012's
    statement triggers."""
    from datetime import UTC, datetime

    import digest.store.postgres.base
    from digest.common.models import Article
    from digest.common.query import parse
    from digest.store import open_store

    when = datetime(2026, 1, 1, tzinfo=UTC)
    article = Article(
        id="a0", source="s", title="Loan talks", url="https://s.example/0", guid=None, summary_html="",
        summary_text="The minister spoke of COVID-19 and the U.S.", author=None, published=None,
        first_seen=when, updated=when, content_hash="h0",
    )  # fmt: skip
    monkeypatch.setattr(digest.store.postgres.base, "MIGRATIONS", MIGRATIONS[:5])
    with open_store(pg) as store:
        with store.pool.connection() as conn:  # type: ignore[attr-defined]
            conn.execute(  # as the code of that step wrote it (sync_sources now writes step 13's columns)
                "INSERT INTO sources (name, url, fetch_url, kind, created, id_name)"
                " VALUES ('s', 'https://s.example/feed', 'https://s.example/feed', 'feed', %s, 's')",
                [when],
            )
            conn.execute(  # as the last release stored it: its vector generated by the server
                "INSERT INTO articles (id, source_id, title, summary_html, summary_text, first_seen, updated,"
                " content_hash, regions, grouped, places, theme_matches) SELECT 'a0', id, %s, '', %s, %s,"
                ' %s, \'h0\', \'["europe"]\', TRUE, \'[{"key": "LA"}, {"key": "LA"}]\','
                " '{\"trade\": {}}' FROM sources",
                (article.title, article.summary_text, when, when),
            )
            conn.execute(  # HTML that is only its text's paragraphs, stored twice then
                "INSERT INTO articles (id, source_id, title, summary_html, summary_text, first_seen, updated,"
                " content_hash) SELECT 'a1', id, 'Dam', '<p>A dam &amp; a river.</p>', 'A dam & a river.',"
                " %s, %s, 'h1' FROM sources",
                (when, when),
            )
        assert [a.id for a in store.search(parse("covid-19"))] == []  # the old parser: "-19" whole
    monkeypatch.undo()
    with open_store(pg) as store:
        assert "0006_search_tokens" in store.applied_migrations()
        for words in ("covid-19", "ministers", "U.S.", '"loan talks"'):
            assert [a.id for a in store.search(parse(words))] == ["a0"], words
        assert [a.id for a in store.articles(region="europe")] == ["a0"]  # 0008 filed what was there
        assert store.source_frequencies("s") == (1, {"LA": 1}, {"trade": 1})  # 0009 counted it
        with store.pool.connection() as conn:  # type: ignore[attr-defined]
            raw = conn.execute("SELECT id, summary_html FROM articles ORDER BY id").fetchall()
        assert [(r["id"], r["summary_html"]) for r in raw] == [("a0", ""), ("a1", None)]  # 0011: once
        dam = store.article("a1")
        assert dam is not None and (dam.summary_html, dam.summary_text) == (
            "<p>A dam &amp; a river.</p>",
            "A dam & a river.",
        )
        # 0012: what was counted a row at a time goes on being counted a statement at a time.
        assert store.count_articles() == 2 and [r.slug for r in store.group_totals().regions] == ["europe"]
        assert store.drop_articles([("a0", "drop: title:/loan/")], now=when) == 1
        assert store.source_frequencies("s") == (0, {}, {})
        assert store.articles(region="europe") == [] and store.group_totals().regions == ()
        assert store.count_articles() == 1


def test_a_database_made_by_a_newer_release_is_refused_in_one_line(pg: str, tmp_path: Path) -> None:
    config = _config(tmp_path, pg, f'[[sources]]\nname = "seeds"\nurl = "{SEEDS}"\n')
    assert _digest(config, "pull").returncode == 0
    with psycopg.connect(pg) as conn:
        conn.execute(
            "INSERT INTO migrations (id, name, applied) VALUES (%s, '0099_from_a_later_release', now())",
            [len(MIGRATIONS) + 1],
        )
        count = conn.execute("SELECT count(*) FROM articles").fetchone()
    refused = _digest(config, "pull")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert line.endswith(
        f": made by a newer release of digest (its schema has step {len(MIGRATIONS) + 1},"
        " 0099_from_a_later_release, unknown to this one): upgrade digest, or open a backup made before"
    ), line
    assert "postgresql://" in line and "password" not in line
    with psycopg.connect(pg) as conn:
        assert conn.execute("SELECT count(*) FROM articles").fetchone() == count
