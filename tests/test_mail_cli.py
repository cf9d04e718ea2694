"""The mail commands as a user runs them: subscribers, preview, send."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests import clock

from .helpers import (
    CHROMIUM_FLAGS,
    SEEDS_SOURCE,
    add_subscribers,
    free_port,
    listed_subscribers,
    need,
    rss,
    run,
    smtp_section,
    write_config,
)
from .servers import FeedServer, Reply, SmtpSink


def _config(tmp_path: Path, smtp: SmtpSink | None = None) -> Path:
    mail = smtp_section(smtp.port, timeout="5s") if smtp else '[outbox]\npath = "out"\n'
    return write_config(tmp_path, f"{mail}{SEEDS_SOURCE}")


def test_subscribers_import_export_and_list(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(
        "email,status,regions,themes\n"
        "ann@example.org,,europe africa,\n"
        "not-an-address,,,\n"
        "bob@example.org,pending,,party-relations\n"
        "cat@example.org,active,atlantis,\n"
        "dan@example.org,weird,,\n"
    )
    result = run("--config", config, "subscribers", "import", str(csv_file), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        f"{csv_file}: line 3:" in result.stderr and "line 5:" in result.stderr and "line 6:" in result.stderr
    )
    assert "2 added, 0 updated, 3 rejected" in result.stdout
    listed = listed_subscribers(config)
    assert {(s["email"], s["status"]) for s in listed} == {
        ("ann@example.org", "active"),
        ("bob@example.org", "pending"),
    }
    assert next(s for s in listed if s["email"] == "ann@example.org")["regions"] == ["europe", "africa"]
    exported = run("--config", config, "subscribers", "export", cwd=tmp_path).stdout
    assert exported.splitlines()[0] == (
        "email,status,regions,themes,cadence,timezone,hour,weekday,topics,created,confirmed,unsubscribed"
    )
    (tmp_path / "again.csv").write_text(exported)
    again = run("--config", config, "subscribers", "import", str(tmp_path / "again.csv"), cwd=tmp_path)
    assert "0 added, 2 updated, 0 rejected" in again.stdout
    removed = run("--config", config, "subscribers", "remove", "bob@example.org", cwd=tmp_path)
    assert removed.returncode == 0
    missing = run("--config", config, "subscribers", "remove", "bob@example.org", cwd=tmp_path)
    assert missing.returncode == 1 and "no such subscriber" in missing.stderr
    bad = run("--config", config, "subscribers", "add", "nope", "--confirmed", cwd=tmp_path)
    assert bad.returncode == 1 and "is not a valid email address" in bad.stderr


def test_a_big_import_takes_seconds(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    rows = "\n".join(
        f"reader{n}@example.org,active,{'europe' if n % 2 else ''},{'trade-investment' if n % 3 else ''}"
        for n in range(10_000)
    )
    (tmp_path / "big.csv").write_text("email,status,regions,themes\n" + rows + "\n")
    import time

    started = time.monotonic()
    result = run("--config", config, "subscribers", "import", str(tmp_path / "big.csv"), cwd=tmp_path)
    took = time.monotonic() - started
    assert result.returncode == 0 and "10000 added" in result.stdout
    assert took < 30, took  # generous for a loaded CI machine; typically a few seconds


def test_preview_and_send(tmp_path: Path, smtp: SmtpSink) -> None:
    config = str(_config(tmp_path, smtp))
    assert run("--config", config, "pull", cwd=tmp_path).returncode == 0
    add_subscribers(config, "ann@example.org")
    add_subscribers(config, "eve@example.org", options=("--region", "africa", "--confirmed"))
    html = run("--config", config, "preview", "--for", "eve@example.org", cwd=tmp_path)
    assert (
        html.returncode == 0
        and html.stdout.lstrip().lower().startswith("<!doctype html>")
        and "Africa" in html.stdout
    )
    text = run("--config", config, "preview", "--format", "text", "-o", str(tmp_path / "p.txt"), cwd=tmp_path)
    assert text.returncode == 0 and "Unsubscribe:" in (tmp_path / "p.txt").read_text()
    dry = run("--config", config, "send", "--dry-run", cwd=tmp_path)
    assert "2 of 2 subscribers due have something new" in dry.stdout and smtp.messages == []
    test_copy = run("--config", config, "send", "--to", "editor@example.org", cwd=tmp_path)
    assert test_copy.returncode == 0 and smtp.recipients() == ["editor@example.org"]
    sent = run("--config", config, "send", cwd=tmp_path)
    assert sent.returncode == 0 and "2 sent, 0 failed" in sent.stdout
    assert sorted(smtp.recipients()) == ["ann@example.org", "editor@example.org", "eve@example.org"]
    again = run("--config", config, "send", cwd=tmp_path)
    assert "nothing to send" in again.stdout and len(smtp.messages) == 3


def test_send_exits_1_naming_the_server_when_deliveries_fail(tmp_path: Path, smtp: SmtpSink) -> None:
    config = str(_config(tmp_path, smtp))
    run("--config", config, "pull", cwd=tmp_path)
    add_subscribers(config, "gone@example.org")
    smtp.reject = {"gone@example.org"}
    result = run("--config", config, "send", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"127.0.0.1:{smtp.port} said 550" in result.stderr
    dead_port = free_port()
    dead = Path(config).read_text().replace(f"port = {smtp.port}", f"port = {dead_port}")
    Path(config).write_text(dead)
    add_subscribers(config, "new@example.org")
    down = run("--config", config, "send", cwd=tmp_path)
    assert down.returncode == 1 and "Traceback" not in down.stderr
    [line] = down.stderr.strip().splitlines()  # one line: the server, and what went wrong
    assert line.startswith(f"digest: error: SMTP cannot connect to 127.0.0.1:{dead_port}: ")
    assert "Connect call failed" in line or "Connection refused" in line, line


@pytest.mark.parametrize(("name", "width"), [("phone", 375), ("desktop", 1280)])
def test_the_html_digest_fits_phones_and_desktops(tmp_path: Path, name: str, width: int) -> None:
    chromium = need("chromium")
    config = str(_config(tmp_path))
    run("--config", config, "pull", cwd=tmp_path)
    body = run("--config", config, "preview", cwd=tmp_path).stdout
    # For the test only: a script that reports whether anything is wider than the window.
    probe = (
        "<script>window.onload=()=>{document.title=document.documentElement.scrollWidth>window.innerWidth"
        "?'OVERFLOW '+document.documentElement.scrollWidth:'FITS'}</script>"
    )
    page = tmp_path / "digest.html"
    page.write_text(body.replace("</body>", probe + "</body>"))
    shots = Path(os.environ.get("DIGEST_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    common = [chromium, *CHROMIUM_FLAGS, f"--window-size={width},2400", "--hide-scrollbars"]
    subprocess.run(
        [
            *common,
            f"--user-data-dir={tmp_path / 'a'}",
            f"--screenshot={shots / f'digest-{name}.png'}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    dom = subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'b'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert (shots / f"digest-{name}.png").stat().st_size > 10_000
    assert "<title>FITS</title>" in dom, dom[:300]


def test_send_since_restarts_everyones_window(tmp_path: Path, smtp: SmtpSink) -> None:
    config = str(_config(tmp_path, smtp))
    run("--config", config, "pull", cwd=tmp_path)
    add_subscribers(config, "ann@example.org")
    assert "1 sent" in run("--config", config, "send", cwd=tmp_path).stdout
    assert "nothing to send" in run("--config", config, "send", cwd=tmp_path).stdout
    resent = run("--config", config, "send", "--since", "2000-01-01", cwd=tmp_path)  # the operator asks again
    assert resent.returncode == 0 and "1 sent" in resent.stdout and len(smtp.messages) == 2
    future = run("--config", config, "send", "--to", "ed@example.org", "--since", "2999-01-01", cwd=tmp_path)
    assert future.returncode == 1 and "nothing new" in future.stderr


def test_an_import_never_revives_anyone_and_keeps_what_it_is_not_given(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    add_subscribers(config, "ann@example.org", options=("--confirmed", "--region", "europe"))
    add_subscribers(config, "bob@example.org", options=("--confirmed", "--theme", "party-relations"))
    from digest.config import load_settings
    from digest.store import open_store
    from digest.subscribers.lifecycle import unsubscribe

    with open_store(load_settings(config).database.path) as store:
        before = {r.email: r for r in store.subscribers()}
        unsubscribe(store, before["ann@example.org"].id)
        store.set_subscriber_status(
            before["bob@example.org"].id, "bounced", at=before["bob@example.org"].created
        )
    (tmp_path / "list.csv").write_text(
        "email,nickname,colour\n"  # no status, regions or themes: none of them may change
        "ann@example.org,Annie,red\n"
        "bob@example.org,Bobby\n"  # a short row is fine
        "cid@example.org,Cid,blue,extra,cells\n"  # more cells than the header: that line is rejected
        "dee@example.org,Dee,green\n"
    )
    quiet = run("--config", config, "subscribers", "import", str(tmp_path / "list.csv"), cwd=tmp_path)
    assert "Traceback" not in quiet.stderr and quiet.returncode == 1
    assert "unknown columns nickname, colour, ignored" in quiet.stderr
    assert "line 4: 2 more cells than the header has columns" in quiet.stderr
    (tmp_path / "again.csv").write_text("email,status\nann@example.org,active\nbob@example.org,pending\n")
    loud = run("--config", config, "subscribers", "import", str(tmp_path / "again.csv"), cwd=tmp_path)
    assert loud.returncode == 1 and "line 2: ann@example.org unsubscribed on " in loud.stderr
    assert "line 3: bob@example.org is bounced" in loud.stderr
    with open_store(load_settings(config).database.path) as store:
        after = {r.email: r for r in store.subscribers()}
    assert after["ann@example.org"].status == "unsubscribed" and after["bob@example.org"].status == "bounced"
    for email in ("ann@example.org", "bob@example.org"):  # preferences and creation time kept
        for key in ("regions", "themes", "created"):
            assert getattr(after[email], key) == getattr(before[email], key), (email, key)
    assert after["dee@example.org"].status == "active" and "cid@example.org" not in after


def test_addresses_that_cannot_be_mailed_are_refused_at_the_door(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    local = run("--config", config, "subscribers", "add", "jörg@example.org", "--confirmed", cwd=tmp_path)
    assert local.returncode == 1 and "Traceback" not in local.stderr
    assert local.stderr.count("\n") == 1 and "jörg@example.org" in local.stderr
    (tmp_path / "l.csv").write_text("email\njörg@example.org\n", encoding="utf-8")
    imported = run("--config", config, "subscribers", "import", str(tmp_path / "l.csv"), cwd=tmp_path)
    assert imported.returncode == 1 and "line 2:" in imported.stderr and "0 added" in imported.stdout
    # An internationalised domain is fine: it is stored in its ASCII form, which SMTP takes.
    idn = run("--config", config, "subscribers", "add", "ann@bücher.example", "--confirmed", cwd=tmp_path)
    assert idn.returncode == 0 and "ann@xn--bcher-kva.example" in idn.stdout
    assert run("--config", config, "pull", cwd=tmp_path).returncode == 0
    sent = run("--config", config, "send", cwd=tmp_path)
    assert sent.returncode == 0 and "1 sent" in sent.stdout


def test_a_dry_run_honours_since(tmp_path: Path, smtp: SmtpSink) -> None:
    config = str(_config(tmp_path, smtp))
    run("--config", config, "pull", cwd=tmp_path)
    add_subscribers(config, "ann@example.org")
    assert run("--config", config, "send", cwd=tmp_path).returncode == 0  # ann is up to date
    plain = run("--config", config, "send", "--dry-run", cwd=tmp_path).stdout
    assert "new digest: 0 of 1 subscribers due have something new" in plain
    since = run("--config", config, "send", "--dry-run", "--since", "2000-01-01", cwd=tmp_path).stdout
    assert "new digest from 2000-01-01 00:00 UTC: 1 of 1 subscribers due have something new" in since
    assert len(smtp.messages) == 1  # a dry run sends nothing


def test_preview_for_a_subscriber_shows_their_next_digest_with_their_topics(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    assert run("--config", config, "pull", cwd=tmp_path).returncode == 0
    add_subscribers(
        config,
        "ann@example.org",
        options=(
            *("--confirmed", "--region", "europe", "--cadence", "daily", "--timezone", "Asia/Tokyo"),
            *("--hour", "7", "--topic", "Laos OR Mekong"),
        ),
    )
    # Noon UTC (21:00 in Tokyo) on a day after the pull: what was pulled is new by then.
    at = (datetime.now(UTC) + timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
    shown = run(
        "--config", config, "preview", "--for", "ann@example.org", "--format", "text",
        "--at", at.isoformat(), "--since", "2000-01-01", cwd=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    # Her next digest closes at 07:00 in Tokyo the next morning; her topics open it, whatever
    # their region, before her region's section.
    closes = at + timedelta(days=1)
    assert f"Your daily digest, {closes.day} {closes:%B} · " in shown.stdout
    topics, _, rest = shown.stdout.partition("YOUR TOPICS")[2].partition("EUROPE")
    assert "Xi meets Lao president" in topics and "EUROPE" in shown.stdout
    assert "Xi meets Lao president" not in rest  # in one section only


def test_the_suppression_list_holds_until_the_operator_reactivates(tmp_path: Path, smtp: SmtpSink) -> None:
    config = str(_config(tmp_path, smtp))
    assert run("--config", config, "pull", cwd=tmp_path).returncode == 0
    add_subscribers(config, "ann@example.org", "bob@example.org")
    from digest.common.dates import utcnow
    from digest.config import load_settings
    from digest.store import open_store

    with open_store(load_settings(config).database.path) as store:
        bob = store.subscriber(email="bob@example.org")
        assert bob is not None
        store.create_digest("old", utcnow(), [(bob.id, utcnow(), None)])
        for _ in range(3):  # three refusals for good in a row: bounced
            store.record_delivery(
                "old", bob.id, "failed", reply="550 no such user", strike=True, strikes_to_bounce=3
            )
        store.finish_digest("old")
    listed = listed_subscribers(config, "--status", "bounced")
    assert [(s["email"], s["status"]) for s in listed] == [("bob@example.org", "bounced")]
    assert listed[0]["reason"] == "3 refusals in a row: 550 no such user"  # not blank
    # Neither the operator's add nor an import brings a bounced address back.
    readd = run("--config", config, "subscribers", "add", "bob@example.org", "--confirmed", cwd=tmp_path)
    assert readd.returncode == 1 and "is bounced and never mailed again" in readd.stderr
    (tmp_path / "list.csv").write_text("email,regions\nbob@example.org,europe\n")
    imported = run("--config", config, "subscribers", "import", str(tmp_path / "list.csv"), cwd=tmp_path)
    assert imported.returncode == 0 and "line 2: bob@example.org is bounced: kept as it is" in imported.stderr
    assert run("--config", config, "send", cwd=tmp_path).returncode == 0
    assert smtp.recipients() == ["ann@example.org"]
    # The operator clears it by hand; the log says so; the strikes start again from none.
    cleared = run("--config", config, "subscribers", "reactivate", "bob@example.org", cwd=tmp_path)
    assert cleared.returncode == 0 and "bob@example.org: active again" in cleared.stdout
    assert (
        "reactivated by the operator (was bounced: 3 refusals in a row: 550 no such user)" in cleared.stderr
    )
    again = run("--config", config, "subscribers", "reactivate", "ann@example.org", cwd=tmp_path)
    assert again.returncode == 1 and "is active, not bounced nor a complainer" in again.stderr
    with open_store(load_settings(config).database.path) as store:
        bob = store.subscriber(email="bob@example.org")
        assert bob is not None and (bob.status, bob.bounces, bob.regions) == ("active", 0, ())
    assert run("--config", config, "send", cwd=tmp_path).returncode == 0
    assert smtp.recipients() == ["ann@example.org", "bob@example.org"]


def test_a_send_as_of_a_future_moment_loses_nothing_first_seen_before_it(
    tmp_path: Path, smtp: SmtpSink, server: FeedServer
) -> None:
    """`send --at` a month ahead ends its digest now, not a month ahead: an article first
    seen after that send goes out in the next digest (it used to fall between the two)."""
    server.routes["/f.xml"] = Reply(200, rss([{"title": "Laos railway opens", "link": "https://x.org/1"}]))
    config = str(
        write_config(
            tmp_path,
            smtp_section(smtp.port)
            + f'[[sources]]\nname = "f"\nurl = "{server.url("/f.xml")}"\nevery = "1s"\n',
        )
    )
    assert run("--config", config, "pull", cwd=tmp_path).returncode == 0
    add_subscribers(config, "ann@example.org")
    ahead = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    assert run("--config", config, "send", "--at", ahead, cwd=tmp_path).returncode == 0
    server.routes["/f.xml"] = Reply(
        200,
        rss(
            [
                {"title": "Laos railway opens", "link": "https://x.org/1"},
                {"title": "Mekong dam talks resume", "link": "https://x.org/2"},
            ]
        ),
    )
    assert run("--config", config, "pull", "--force", cwd=tmp_path).returncode == 0
    assert run("--config", config, "send", cwd=tmp_path).returncode == 0
    bodies = [message.get_body(("plain",)).get_content() for _, message in smtp.messages]
    assert len(bodies) == 2 and "Laos railway opens" in bodies[0]
    assert "Mekong dam talks resume" in bodies[1] and "Laos railway opens" not in bodies[1]


def test_no_path_but_their_own_sign_up_mails_someone_who_left_and_none_mails_a_complainer(
    tmp_path: Path, smtp: SmtpSink
) -> None:
    """A complainer is never mailed again, whoever asks: not by the operator's add (which
    used to send a confirmation, or with --confirmed make them active and wipe the reason),
    an import, nor the subscribe form; someone who unsubscribed comes back only by signing
    up again themselves. The operator may reactivate a complainer by hand, and the log says why."""
    from digest.config import load_settings
    from digest.mail import confirmations
    from digest.store import open_store
    from digest.subscribers import signups

    config = str(_config(tmp_path, smtp))
    add_subscribers(config, "cid@example.org", "una@example.org")
    settings = load_settings(config)
    with open_store(settings.database.path) as store:
        cid, una = (store.subscriber(email=f"{n}@example.org") for n in ("cid", "una"))
        assert cid is not None and una is not None
        assert (
            store.record_feedback(cid.id, None, "complaint", "abuse report", soft_limit=3, now=store.now())
            == "unsubscribed"
        )
        store.set_subscriber_status(una.id, "unsubscribed", at=store.now())
    for name, said in (
        ("cid", "complained of a digest and is never mailed again"),
        ("una", "only they can sign up again"),
    ):
        for extra in ((), ("--confirmed",)):
            refused = run(
                "--config", config, "subscribers", "add", f"{name}@example.org", *extra, cwd=tmp_path
            )
            assert refused.returncode == 1 and said in refused.stderr, refused.stderr
    (tmp_path / "list.csv").write_text("email,status\ncid@example.org,\ncid@example.org,active\n")
    imported = run("--config", config, "subscribers", "import", str(tmp_path / "list.csv"), cwd=tmp_path)
    assert "line 2: cid@example.org complained of a digest: kept as it is" in imported.stderr
    assert "line 3: cid@example.org unsubscribed" in imported.stderr  # an import never re-subscribes
    # The subscribe form: the one who unsubscribed is asked to confirm; the complainer gets nothing.
    with open_store(settings.database.path) as store:
        for name in ("cid", "una"):
            signups.enqueue(store, f"{name}@example.org", [], [])
    import asyncio

    asyncio.run(confirmations.drain(lambda: open_store(settings.database.path), settings))
    assert smtp.recipients() == ["una@example.org"]
    with open_store(settings.database.path) as store:
        cid = store.subscriber(email="cid@example.org")
        assert cid is not None and (cid.status, cid.reason) == ("unsubscribed", "complaint: abuse report")
    cleared = run("--config", config, "subscribers", "reactivate", "cid@example.org", cwd=tmp_path)
    assert cleared.returncode == 0 and "(was unsubscribed: complaint: abuse report)" in cleared.stderr


def test_send_without_a_server_says_the_messages_went_to_the_outbox(tmp_path: Path) -> None:
    # It said "1 sent" and nothing more when no message had left the machine.
    config = str(_config(tmp_path))
    assert run("--config", config, "pull", cwd=tmp_path).returncode == 0
    assert (
        run(
            "--config", config, "subscribers", "add", "ann@example.org", "--confirmed", cwd=tmp_path
        ).returncode
        == 0
    )
    sent = run("--config", config, "send", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert f"no [smtp] server is set: the messages were written to {tmp_path / 'out'}/" in sent.stdout
    assert [p.suffix for p in (tmp_path / "out").iterdir()] == [".eml"]


def _bodies(smtp: SmtpSink) -> list[str]:
    return [message.get_body(("plain",)).get_content() for _, message in smtp.messages]


def test_send_everyone_then_their_own_rhythm_sends_each_article_once(
    tmp_path: Path, smtp: SmtpSink, server: FeedServer, shim: Path
) -> None:
    """A reader on a rhythm of their own is not due now: `send` says when they are and how to
    send anyway; `send --everyone` sends them their digest now, and their rhythm's own digest
    then starts where it ended (nothing twice, nothing lost); `--at` ahead records nothing
    ahead."""
    server.routes["/f.xml"] = Reply(200, rss([{"title": "Laos railway opens", "link": "https://x.org/1"}]))
    feed = f'[[sources]]\nname = "f"\nurl = "{server.url("/f.xml")}"\nevery = "1s"\n'
    config = str(write_config(tmp_path, smtp_section(smtp.port) + feed))
    assert run("--config", config, "pull", cwd=tmp_path).returncode == 0
    now = datetime.now(UTC)
    due_hour = (now + timedelta(hours=3)).hour  # two to three hours ahead, today or tomorrow
    rhythm = ("--cadence", "daily", "--timezone", "UTC", "--hour", str(due_hour))
    add_subscribers(config, "ann@example.org", options=("--confirmed", *rhythm))
    [ann] = listed_subscribers(config)
    due = datetime.fromisoformat(ann["next_due"])
    assert now < due <= now + timedelta(hours=3)

    idle = run("--config", config, "send", cwd=tmp_path)
    assert idle.returncode == 0 and smtp.messages == []
    assert f"next: 1 subscriber due {due:%a} {due.day} {due:%b %H:%M} UTC" in idle.stdout, idle.stdout
    assert "digest send --everyone" in idle.stdout
    # a dry run ahead of her due time records nothing: later runs see no misdated reader
    ahead = run(
        "--config", config, "send", "--dry-run", "--at", (due + timedelta(days=3)).isoformat(), cwd=tmp_path
    )
    assert ahead.returncode == 0, ahead.stderr

    everyone = run("--config", config, "send", "--everyone", cwd=tmp_path)
    assert everyone.returncode == 0, everyone.stderr
    assert smtp.recipients() == ["ann@example.org"] and "Laos railway opens" in _bodies(smtp)[0]
    again = run("--config", config, "send", "--everyone", cwd=tmp_path)
    assert again.returncode == 0 and len(smtp.messages) == 1  # nothing new: nothing sent
    [ann] = listed_subscribers(config)
    assert datetime.fromisoformat(ann["next_due"]) == due  # her rhythm is where it was

    two = [{"title": "Laos railway opens", "link": "https://x.org/1"}]
    two.append({"title": "Mekong dam talks resume", "link": "https://x.org/2"})
    server.routes["/f.xml"] = Reply(200, rss(two))
    assert run("--config", config, "pull", "--force", cwd=tmp_path).returncode == 0
    # her own digest, in a process whose clock has reached her due time
    real = time.time() - int(os.environ.get("TEST_CLOCK_OFFSET", "0"))
    moved = clock.moved(shim, round((due + timedelta(minutes=1)).timestamp() - real))
    own = run("--config", config, "send", cwd=tmp_path, env=moved)
    assert own.returncode == 0 and "Traceback" not in own.stderr, own.stderr
    assert "far ahead" not in own.stdout + own.stderr
    bodies = _bodies(smtp)
    assert len(bodies) == 2, own.stdout
    assert "Mekong dam talks resume" in bodies[1] and "Laos railway opens" not in bodies[1]
    [ann] = listed_subscribers(config)
    assert datetime.fromisoformat(ann["next_due"]) == due + timedelta(days=1)


def test_send_at_a_future_moment_records_nothing_ahead(
    tmp_path: Path, smtp: SmtpSink, server: FeedServer
) -> None:
    server.routes["/f.xml"] = Reply(200, rss([{"title": "Laos railway opens", "link": "https://x.org/1"}]))
    feed = f'[[sources]]\nname = "f"\nurl = "{server.url("/f.xml")}"\nevery = "1s"\n'
    config = str(write_config(tmp_path, smtp_section(smtp.port) + feed))
    assert run("--config", config, "pull", cwd=tmp_path).returncode == 0
    due_hour = (datetime.now(UTC) + timedelta(hours=3)).hour
    add_subscribers(
        config, "ann@example.org", options=("--confirmed", "--cadence", "daily", "--hour", str(due_hour))
    )
    [before] = listed_subscribers(config)
    ahead = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    sent = run("--config", config, "send", "--at", ahead, cwd=tmp_path)
    assert sent.returncode == 0 and smtp.recipients() == ["ann@example.org"], sent.stderr
    [after] = listed_subscribers(config)
    assert after["next_due"] == before["next_due"]  # not a month ahead
    dry = run("--config", config, "send", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "far ahead" not in dry.stdout + dry.stderr
    assert "0 of 0 subscribers due" in dry.stdout and "next: 1 subscriber due" in dry.stdout


def test_subscribers_list_shows_each_rhythm_topics_and_next_due(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    add_subscribers(
        config,
        "ann@example.org",
        options=("--confirmed", "--cadence", "weekly", "--weekday", "fri", "--hour", "6", "--timezone", "Asia/Tokyo",
                 "--topic", "Laos OR Mekong", "--region", "europe"),
    )  # fmt: skip
    add_subscribers(config, "bob@example.org")
    listed = run("--config", config, "subscribers", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    ann, bob, total = listed.stdout.splitlines()
    [due] = [s["next_due"] for s in listed_subscribers(config) if s["email"] == "ann@example.org"]
    due_there = datetime.fromisoformat(due).astimezone(ZoneInfo("Asia/Tokyo"))
    assert due_there.strftime("%a %H:%M") == "Fri 06:00"
    assert ann.split()[:2] == ["ann@example.org", "active"]
    assert "weekly on Friday at 06:00 (Asia/Tokyo)" in ann
    assert f"next Fri {due_there.day} {due_there:%b} 06:00 JST" in ann
    assert "europe" in ann and '"Laos OR Mekong"' in ann
    assert bob.split()[:2] == ["bob@example.org", "active"]
    assert "with everyone (0 8 * * mon, UTC)" in bob and "next Mon " in bob and "everything" in bob
    assert total == "2 subscribers"
