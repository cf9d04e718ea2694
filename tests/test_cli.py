"""The command line as a user runs it: a real process, real files, exit codes and messages."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.mail.schedule import NEXT_DUE
from digest.store import open_store

from .helpers import (
    SEEDS,
    SEEDS_SOURCE,
    free_port,
    listed_articles,
    rss,
    run,
    skip_or_fail,
    wait_for,
    write_config,
)
from .servers import FeedServer, Reply, Running, Serving


def _clean_failure(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    return lines[-1]


def test_embedded_default_pulls_the_40_seed_articles(tmp_path: Path) -> None:
    pulled = run("pull", cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == "seeds: 40 new, 0 updated, 0 unchanged"
    assert (tmp_path / "digest.db").exists()
    listed = run("articles", cwd=tmp_path)
    assert listed.stdout.strip().endswith("40 articles")
    data = listed_articles(cwd=tmp_path)
    assert len(data) == 40
    for field in (
        "id",
        "title",
        "url",
        "source",
        "published",
        "first_seen",
        "summary",
        "regions",
        "themes",
        "story",
    ):
        assert field in data[0]
    assert all(a["regions"] and a["themes"] for a in data)  # grouping ran as part of pull
    assert all(a["places"] for a in data)
    assert len({a["id"] for a in data}) == 40
    again = run("pull", cwd=tmp_path)
    assert again.stdout.strip() == "seeds: 0 new, 0 updated, 40 unchanged"


def test_articles_filters(tmp_path: Path) -> None:
    run("pull", cwd=tmp_path)
    assert listed_articles("--since", "2999-01-01", cwd=tmp_path) == []
    assert len(listed_articles("--limit", "3", cwd=tmp_path)) == 3
    europe = listed_articles("--region", "europe", cwd=tmp_path)
    assert europe and all("europe" in a["regions"] for a in europe)
    bad_region = run("articles", "--region", "atlantis", cwd=tmp_path)
    assert bad_region.returncode == 2 and "is not one of east-asia" in bad_region.stderr
    bad_since = run("articles", "--since", "last tuesday", cwd=tmp_path)
    assert bad_since.returncode == 2 and "ISO 8601" in bad_since.stderr


def test_init_writes_a_config_that_works(tmp_path: Path) -> None:
    assert run("init", cwd=tmp_path).returncode == 0
    config = tmp_path / "digest.toml"
    assert "[[sources]]" in config.read_text()
    pulled = run("pull", cwd=tmp_path)  # its "seeds/" is the bundled sample site
    assert pulled.returncode == 0 and "40 new" in pulled.stdout
    again = run("init", cwd=tmp_path)
    assert "already exists" in _clean_failure(again)


def test_pull_reports_each_source_and_fails_after_pulling_the_rest(
    server: FeedServer, tmp_path: Path
) -> None:
    server.routes["/ok.xml"] = Reply(200, rss([{"title": "Fine", "link": "https://x.org/fine"}]))
    config = write_config(
        tmp_path,
        '[[sources]]\nname = "dead"\nurl = "http://127.0.0.1:9/feed"\n'
        f'[[sources]]\nname = "ok"\nurl = "{server.url("/ok.xml")}"\n',
    )
    result = run("--config", str(config), "pull", cwd=tmp_path)
    line = _clean_failure(result)
    assert line.startswith("dead: error:") and "cannot connect" in line
    assert "ok: 1 new" in result.stdout
    only = run("--config", str(config), "pull", "--source", "ok", cwd=tmp_path)
    assert only.returncode == 0 and "dead" not in only.stdout + only.stderr
    unknown = run("--config", str(config), "pull", "--source", "nope", cwd=tmp_path)
    assert "no source named 'nope'" in _clean_failure(unknown)


def test_bad_input_gets_one_clear_line(tmp_path: Path) -> None:
    missing = run("--config", "nowhere.toml", "pull", cwd=tmp_path)
    assert _clean_failure(missing) == "digest: error: nowhere.toml: config file not found (given by --config)"

    broken = tmp_path / "broken.toml"
    broken.write_text('[site]\ntitle = "x"\nbase_url = \n')
    assert "broken.toml: invalid TOML" in _clean_failure(run("--config", str(broken), "pull", cwd=tmp_path))

    podcast = write_config(tmp_path, '[[sources]]\nname = "p"\nurl = "x"\nkind = "podcast"\n')
    line = _clean_failure(run("--config", str(podcast), "articles", cwd=tmp_path))
    assert line.endswith("sources[0].kind: 'podcast' is not one of auto, feed, html, text, email")

    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(2048))
    junk_config = write_config(tmp_path, f'[[sources]]\nname = "junk"\nurl = "{junk}"\n')
    assert "binary data" in _clean_failure(run("--config", str(junk_config), "pull", cwd=tmp_path))

    nodir = tmp_path / "nodir.toml"
    nodir.write_text('[database]\npath = "no/such/folder/d.db"\n')
    assert "does not exist" in _clean_failure(run("--config", str(nodir), "pull", cwd=tmp_path))

    clear = write_config(tmp_path, '[smtp]\nhost = "smtp.example.org"\nport = 25\nusername = "digest"\n')
    line = _clean_failure(run("--config", str(clear), "run", "--check", cwd=tmp_path))
    assert "smtp.security: logging in as 'digest' to smtp.example.org:25 over an unencrypted" in line


def test_nothing_is_lost_when_a_source_breaks(server: FeedServer, tmp_path: Path) -> None:
    server.routes["/f.xml"] = Reply(200, rss([{"title": "Kept", "link": "https://x.org/kept"}]))
    config = write_config(tmp_path, f'[[sources]]\nname = "f"\nurl = "{server.url("/f.xml")}"\n')
    assert run("--config", str(config), "pull", cwd=tmp_path).returncode == 0
    server.routes["/f.xml"] = Reply(200, b"<rss><channel><item><title>broken")
    run("--config", str(config), "pull", cwd=tmp_path)
    server.routes["/f.xml"] = Reply(500)
    _clean_failure(run("--config", str(config), "pull", cwd=tmp_path))
    titles = [a["title"] for a in listed_articles(config=config)]
    assert "Kept" in titles


# Runs the CLI in-process with the given arguments, then names the heavy packages it loaded.
_LOADED = """
import json, sys
from digest.cli.main import main
sys.argv = ["digest", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
heavy = ("apscheduler", "feedgen", "lxml", "starlette", "uvicorn", "aiosmtplib", "jinja2", "httpx",
         "asyncio", "nh3", "fastfeedparser", "feedparser", "email_validator", "sqlite_utils")
print(json.dumps([name for name in heavy if name in sys.modules]), file=sys.stderr)
"""


def test_quick_commands_load_nothing_heavy(tmp_path: Path) -> None:
    # Start-up time is import time: --help, status and a short article list need none of the
    # feed writers, the mail stack, the web app, the scheduler or the fetcher.
    assert run("pull", cwd=tmp_path).returncode == 0

    def loaded(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", _LOADED, json.dumps(args)], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return list(json.loads(done.stderr.splitlines()[-1]))

    assert loaded("--help") == []
    assert loaded("articles", "--limit", "5") == []
    loaded("status")  # the first works out when the next digest is due, with the scheduler's help
    assert loaded("status") == []  # later ones reuse it
    assert "Next digest: " in run("status", cwd=tmp_path).stdout


def test_the_format_choice_lists_every_feed_writer() -> None:
    # The CLI names the formats itself so that --help need not load the writers.
    from digest.cli.main import FORMATS
    from digest.publish import feeds as publish

    assert tuple(publish.OUTPUTS) == FORMATS


def test_the_next_digest_is_worked_out_again_when_the_schedule_changes(tmp_path: Path) -> None:
    write_config(tmp_path, '[schedule]\ndigest_cron = "0 8 * * mon"\n')
    first = run("status", cwd=tmp_path).stdout.splitlines()[-1]
    write_config(tmp_path, '[schedule]\ndigest_cron = "30 6 * * *"\n')
    second = run("status", cwd=tmp_path).stdout.splitlines()[-1]
    # times as a person reads them (issue 29: it was ISO with microseconds)
    assert re.fullmatch(r"Next digest: Mon \d{1,2} \w{3}( \d{4})? 08:00 UTC \(0 8 \* \* mon, UTC\)", first), (
        first
    )
    assert re.fullmatch(r"Next digest: \w{3} \d{1,2} \w{3}( \d{4})? 06:30 UTC \(30 6 \* \* \*, UTC\)", second)
    # A kept answer whose time has passed is worked out again.
    with open_store(tmp_path / "test.db") as store:
        kept = json.loads(store.get_setting(NEXT_DUE) or "{}")
        store.put_setting(
            NEXT_DUE,
            json.dumps({**kept, "since": "2020-01-01T00:00:00+00:00", "due": "2021-01-04T06:30:00+00:00"}),
        )
    third = run("status", cwd=tmp_path).stdout.splitlines()[-1]
    assert "2021" not in third and "06:30 UTC" in third, third


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = run("frobnicate", cwd=tmp_path)
    assert result.returncode == 2 and "No such command" in result.stderr


def test_groups_and_regroup(tmp_path: Path) -> None:
    run("pull", cwd=tmp_path)
    data = json.loads(run("groups", "--json", cwd=tmp_path).stdout)
    assert {r["slug"] for r in data["regions"]} >= {"southeast-asia", "europe", "africa"}
    assert sum(r["primary"] for r in data["regions"]) == 40
    assert all(t["title"] for t in data["themes"])
    assert any(s["articles"] == 3 and "Starmer" in s["label"] for s in data["stories"])
    text = run("groups", cwd=tmp_path).stdout
    assert "Southeast Asia" in text and "Stories (" in text
    regrouped = run("regroup", cwd=tmp_path)
    assert regrouped.returncode == 0 and "regrouped 40 articles" in regrouped.stdout
    assert json.loads(run("groups", "--json", cwd=tmp_path).stdout) == data
    themed = listed_articles("--theme", "party-relations", cwd=tmp_path)
    assert themed and all("party-relations" in a["themes"] for a in themed)
    bad = run("articles", "--theme", "astrology", cwd=tmp_path)
    assert bad.returncode == 2 and "is not one of" in bad.stderr


def test_removed_sources_are_shown_as_removed_and_a_rename_keeps_every_article(
    server: FeedServer, tmp_path: Path
) -> None:
    from digest.config import load_settings
    from digest.service.runner import Service

    server.routes["/dead.xml"] = Reply(500, b"down")
    both = f'{SEEDS_SOURCE}[[sources]]\nname = "dead"\nurl = "{server.url("/dead.xml")}"\n'
    config = write_config(tmp_path, both)
    assert run("--config", str(config), "pull", cwd=tmp_path).returncode == 1  # dead fails
    config = write_config(tmp_path, SEEDS_SOURCE)  # dead is removed
    status = run("--config", str(config), "status", cwd=tmp_path).stdout
    dead = next(line for line in status.splitlines() if line.strip().startswith("dead"))
    assert "removed" in dead and "next" not in dead
    assert not asyncio.run(Service(load_settings(str(config))).health())[1]["failing_sources"]
    before = listed_articles(config=config)
    # Renaming a source without links (the seeds: ids come from source and title) keeps its articles.
    renamed = run("--config", str(config), "sources", "rename", "seeds", "china-watch", cwd=tmp_path)
    assert renamed.returncode == 0, renamed.stderr
    config = write_config(tmp_path, f'[[sources]]\nname = "china-watch"\nurl = "{SEEDS}"\n')
    again = run("--config", str(config), "pull", cwd=tmp_path)
    assert again.returncode == 0 and "china-watch: 0 new" in again.stderr + again.stdout
    after = listed_articles(config=config)
    assert sorted(a["id"] for a in after) == sorted(a["id"] for a in before)
    assert {a["source"] for a in after} == {"china-watch"}
    clash = run("--config", str(config), "sources", "rename", "dead", "china-watch", cwd=tmp_path)
    assert clash.returncode == 1 and "'china-watch' already has 40 articles" in clash.stderr


def test_check_catches_every_value_that_cannot_work(tmp_path: Path) -> None:
    for body, words in (
        ('[grouping]\nstory_window = "inf"\n', "grouping.story_window: 'inf' is not a duration"),
        ("[grouping]\nstory_window = inf\n", "grouping.story_window: inf (float) is not a duration"),
        ('[schedule]\ndigest_cron = "0 8 31 2 *"\n', "schedule.digest_cron: '0 8 31 2 *' never fires"),
        (
            f'[[sources]]\nname = "s"\nurl = "{SEEDS}"\nkind = "html"\n[sources.selectors]\nitem = "div[[["\n',
            "sources[0].selectors.item: 'div[[[' is not a CSS selector",
        ),
    ):
        config = write_config(tmp_path, body)
        line = _clean_failure(run("--config", str(config), "run", "--check", cwd=tmp_path))
        assert words in line, (body, line)


@pytest.mark.parametrize("command", ["serve", "run"])
def test_a_port_in_use_is_one_line_naming_the_setting(tmp_path: Path, command: str) -> None:
    # A second `make run` met the first one's port: tracebacks from APScheduler or uvicorn.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, f"[web]\nport = {port}\n{SEEDS_SOURCE}")
        refused = run("--config", str(config), command, cwd=tmp_path)
    line = _clean_failure(refused)
    assert line == (
        f"digest: error: 127.0.0.1:{port} is already in use (another digest?); choose another port:"
        " web.port ([web] port, or DIGEST_WEB_PORT)"
    )
    assert [text for text in refused.stderr.splitlines() if text.strip()] == [line]


def test_the_service_says_where_it_serves_and_where_digests_go(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, f"[web]\nport = {port}\n{SEEDS_SOURCE}")
    service = Running(config, tmp_path, json_log=False)
    try:
        service.ready(lambda: f"http://127.0.0.1:{port}/" in service.text(), 30, "no address said")
        said = service.text()
    finally:
        service.stop()
    assert f"feeds and pages: http://127.0.0.1:{port}/" in said
    assert f"messages written to {tmp_path / 'outbox'}/" in said


TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?:INFO|WARNING|ERROR) (?=\S)")


def _sign_up_and_confirm(server: Serving, outbox: Path) -> None:
    """A reader signs up on the form and follows the confirmation link."""
    import httpx

    with httpx.Client(base_url=server.url(""), headers={"Origin": server.url("")}) as client:
        token = re.search(r'name="form_token" value="([^"]+)"', client.get("/subscribe").text)
        assert token
        client.post("/subscribe", data={"email": "ann@example.org", "form_token": token.group(1)})
        mail = wait_for(lambda: list(outbox.glob("confirm-*")), "a confirmation", 20)
        body = email.message_from_bytes(mail[0].read_bytes(), policy=email.policy.default).get_content()
        link = re.search(r"/confirm/\S+", body)
        assert link, body
        assert "Subscribed" in client.post(link.group(0)).text


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_serve_logs_in_one_format_and_says_what_readers_do(tmp_path: Path, log_format: str) -> None:
    config = write_config(tmp_path, f'[outbox]\npath = "out"\n{SEEDS_SOURCE}')
    with Serving(config, tmp_path, "--log-format", log_format) as server:
        _sign_up_and_confirm(server, tmp_path / "out")
        wait_for(lambda: "confirmed" in server.text(), "the confirmation logged", 10)
    lines = [line for line in server.text().splitlines() if line.strip()]
    if log_format == "json":
        messages = [json.loads(line)["message"] for line in lines]  # every line is one JSON object
    else:
        assert all(TEXT_LINE.match(line) for line in lines), lines  # uvicorn's own lines included
        messages = [TEXT_LINE.sub("", line, count=1) for line in lines]
    said = "\n".join(messages)
    assert f"feeds and pages: http://127.0.0.1:{server.port}/" in said
    assert f"confirmations of sign-ups: written to {tmp_path / 'out'}/" in said
    assert "sign-up received" in said and "ann@example.org" not in said
    assert re.search(rf"sign-up \d+: confirmation written to {re.escape(str(tmp_path / 'out'))}/", said)
    assert re.search(r"subscriber \d+ confirmed", said)


def test_a_command_that_writes_a_file_says_where(tmp_path: Path) -> None:
    assert run("pull", cwd=tmp_path).returncode == 0
    target = tmp_path / "site.atom"
    done = run("feed", "--format", "atom", "-o", str(target), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.strip() == f"{target}: written ({target.stat().st_size:,} bytes)"


def test_status_shows_times_as_a_person_reads_them(tmp_path: Path) -> None:
    assert run("pull", cwd=tmp_path).returncode == 0
    shown = run("status", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    seeds = next(line for line in shown.stdout.splitlines() if line.strip().startswith("seeds"))
    assert re.search(r"last \w{3} \d{1,2} \w{3} \d\d:\d\d UTC", seeds), seeds
    assert not re.search(r"\d\d:\d\d:\d\d|\+00:00", shown.stdout), shown.stdout


def test_shell_completion_works_as_the_docs_say(tmp_path: Path) -> None:
    docs = (Path(__file__).parent.parent / "docs" / "commands.md").read_text()
    assert "_DIGEST_COMPLETE=bash_source digest" in docs
    env = {"COMP_WORDS": "digest se", "COMP_CWORD": "1", "_DIGEST_COMPLETE": "bash_complete"}
    offered = subprocess.run(
        [sys.executable, "-c", "from digest.cli.main import main; main()"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert offered.stdout.split() == ["plain,send", "plain,serve"], offered.stderr


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 600 KB file system of its own (tmpfs; mounting needs root, as CI has)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        skip_or_fail(f"cannot mount a small file system: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_is_one_line_and_the_database_works_once_there_is_room(tiny_disk: Path) -> None:
    full = run("pull", cwd=tiny_disk)
    line = _clean_failure(full)
    assert line == f"digest: error: {tiny_disk / 'digest.db'}: cannot open database: database or disk is full"
    # once there is room, the same database opens and the pull does all of its work
    grown = subprocess.run(
        ["mount", "-o", "remount,size=20m", str(tiny_disk)], capture_output=True, text=True
    )
    assert grown.returncode == 0, grown.stderr
    again = run("pull", cwd=tiny_disk)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "seeds: 40 new, 0 updated, 0 unchanged"


def test_a_folder_given_as_the_config_is_said_to_be_one(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    line = _clean_failure(run("--config", "conf.d", "pull", cwd=tmp_path))
    assert line == "digest: error: conf.d: is a folder, not a config file (given by --config)"
    assert not (tmp_path / "digest.db").exists()
