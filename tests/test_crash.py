"""Crashes: `digest pull` and `digest send` killed with SIGKILL at random moments, again and
again, then run to the end. The database stays intact, no article is lost, every subscriber
gets the digest, and no digest reaches anyone twice except possibly the one message whose
250 reply the killed process had not yet recorded (at most one per kill)."""

from __future__ import annotations

import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

from .helpers import add_subscribers, rss, run, smtp_section, sql_value, start, within, write_config
from .servers import FeedServer, Reply, SmtpSink


def test_kill_9_during_pull_and_send_loses_and_doubles_nothing(
    server: FeedServer, smtp: SmtpSink, tmp_path: Path
) -> None:
    rng = random.Random(7)
    items = [
        {"title": f"Story {n}", "link": f"https://x.org/{n}", "description": f"Text of story {n}. " * 40}
        for n in range(300)
    ]
    server.routes["/f.xml"] = Reply(200, rss(items))
    config = write_config(
        tmp_path,
        smtp_section(smtp.port, timeout="5s") + f'[[sources]]\nname = "f"\nurl = "{server.url("/f.xml")}"\n',
    )
    database = tmp_path / "test.db"
    subscribers = [f"r{n}@example.org" for n in range(40)]
    add_subscribers(config, *subscribers)
    smtp.delay = 0.05  # about 2 s for 40 messages: a send lasts long enough to be killed inside
    kills = sends_killed = 0
    for round_ in range(8):
        command = ("pull",) if round_ % 2 == 0 else ("send",)
        # The feed grows before each pull, so each send has a new digest to be killed in.
        server.routes["/f.xml"] = Reply(200, rss(items[: 60 * (round_ // 2 + 1)]))
        before = len(smtp.messages)
        process = start("--config", str(config), *command, cwd=tmp_path)
        if command == ("send",):
            # Kill inside the send: once a message of this run has gone out, at a random moment.
            # (The check is called here, in this round: it needs no binding of the loop's names.)
            within(lambda: len(smtp.messages) != before or process.poll() is not None, 30, every=0.01)  # noqa: B023
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            time.sleep(rng.uniform(0.3, 1.5))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
            sends_killed += command == ("send",) and len(smtp.messages) > before
        process.wait(timeout=30)
        wanted = 60 * (round_ // 2 + 1)
        if command == ("pull",) and sql_value(database, "SELECT count(*) FROM articles") < wanted:
            # Killed before it stored this round's articles: store them, so the send has work.
            assert run("--config", str(config), "pull", cwd=tmp_path).returncode == 0
    assert sends_killed == 4, sends_killed  # every send was killed while sending
    server.routes["/f.xml"] = Reply(200, rss(items))
    assert run("--config", str(config), "pull", cwd=tmp_path).returncode == 0
    final = run("--config", str(config), "send", cwd=tmp_path)
    assert final.returncode == 0, final.stderr

    assert sql_value(database, "PRAGMA integrity_check") == "ok"
    assert sql_value(database, "SELECT count(*) FROM articles") == 300
    assert sql_value(database, "SELECT count(*) FROM deliveries WHERE status = 'pending'") == 0
    received = Counter()
    for rcpts, message in smtp.messages:
        digest_id = re.search(r"/digests/(\w+)", message.get_body(("plain",)).get_content())
        assert digest_id
        for rcpt in rcpts:
            received[(rcpt, digest_id.group(1))] += 1
    assert {rcpt for rcpt, _ in received} == set(subscribers)  # everyone got the digest
    doubled = sum(n - 1 for n in received.values())
    assert doubled <= kills, (doubled, kills)
    print(
        f"{kills} kills ({sends_killed} inside a send), {len(smtp.messages)} messages, {doubled} duplicates"
    )
