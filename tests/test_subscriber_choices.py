"""A reader's own rhythm and topics through the web forms, in headless Chromium: choose a
cadence, an hour, a time zone and topics on the preferences page and the subscribe form,
send them as the browser sends them, and see the next delivery in the reader's own time."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from digest.common.rhythms import Rhythm, local_time
from digest.config import Settings
from digest.store import open_store
from digest.subscribers.lifecycle import add, token
from digest.subscribers.tokens import secret_for
from tests.browser import Browser
from tests.helpers import add_subscribers, listed_subscribers, run, settings_for, write_config
from tests.servers import AppServer


def _served(folder: Path) -> Settings:
    return settings_for(folder, '[site]\ntitle = "China Watch"\n[schedule]\ntimezone = "Europe/London"\n')


def test_preferences_choose_a_rhythm_and_topics_and_show_the_next_delivery(tmp_path: Path) -> None:
    settings = _served(tmp_path)
    with open_store(settings.database.path) as store:
        ann = add(store, "ann@example.org", confirmed=True)
        link = f"/preferences/{token(secret_for(store, None), 'preferences', ann)}"
    assert ann.rhythm is None  # on the site's schedule
    with AppServer(settings) as server, Browser(tmp_path / "profile") as browser:
        browser.open(server.url(link))
        assert browser.run("document.querySelector('[name=cadence]').value") == ""  # "with everyone"
        assert "08:00 (Europe/London)" in browser.text(".next")  # digest_cron's next Monday
        assert browser.run("document.querySelector('[name=timezone]').value") == "Europe/London"
        browser.choose("cadence", "daily")
        browser.choose("hour", "7")
        browser.choose("timezone", "Asia/Tokyo")
        browser.run("document.querySelectorAll('[name=topic]')[0].value = 'Laos or Mekong'")
        browser.run("""document.querySelectorAll('[name=topic]')[1].value = '"belt and road" -europe'""")
        saved_from = datetime.now(UTC)
        browser.submit()
        assert "Saved." in browser.text()
        saved_by = datetime.now(UTC)
        with open_store(settings.database.path) as store:
            ann = store.subscriber(email="ann@example.org")  # type: ignore[assignment]
        assert ann is not None and ann.rhythm == Rhythm("daily", "Asia/Tokyo", 7, 0)
        # kept as typed (issue 29; lowercase "or" is a word, so this is a topic of three words)
        assert ann.topics == ("Laos or Mekong", '"belt and road" -europe')
        assert ann.next_due is not None and saved_from < ann.next_due <= saved_by + timedelta(days=1)
        shown = browser.text(".next")
        assert local_time(ann.next_due, "Asia/Tokyo") in shown and "07:00 (Asia/Tokyo)" in shown
        # The page shows what was saved, and a second save that changes nothing keeps the due time.
        assert browser.run("document.querySelector('[name=timezone]').value") == "Asia/Tokyo"
        assert browser.run("document.querySelector('[name=hour]').value") == "7"
        assert browser.run("document.querySelectorAll('[name=topic]')[1].value") == '"belt and road" -europe'
        browser.submit()
        with open_store(settings.database.path) as store:
            again = store.subscriber(email="ann@example.org")
        assert again is not None and again.next_due == ann.next_due
        # A topic that cannot be run is refused, and nothing changes.
        browser.open(server.url(link))
        browser.run("""document.querySelectorAll('[name=topic]')[2].value = '"unclosed'""")
        browser.choose("cadence", "monthly")
        browser.submit()
        assert "Not saved" in browser.text() and "quotation mark" in browser.text()
        with open_store(settings.database.path) as store:
            unchanged = store.subscriber(email="ann@example.org")
        assert unchanged is not None and unchanged.rhythm == ann.rhythm and unchanged.topics == ann.topics


def test_saving_preferences_keeps_a_time_zone_the_list_does_not_offer(tmp_path: Path) -> None:
    """A zone set by the command line or a CSV (Lord Howe's half-hour offset is no common
    one) is shown, selected, and kept when the reader saves only a theme: the form used to
    send its first option, and the reader moved to Pacific/Honolulu without a word."""
    settings = _served(tmp_path)
    rhythm = Rhythm("daily", "Australia/Lord_Howe", 7)
    with open_store(settings.database.path) as store:
        ann = add(store, "ann@example.org", confirmed=True, rhythm=rhythm)
        due = ann.next_due
        link = f"/preferences/{token(secret_for(store, None), 'preferences', ann)}"
    assert due is not None
    with AppServer(settings) as server, Browser(tmp_path / "profile") as browser:
        browser.open(server.url(link))
        assert browser.run("document.querySelector('[name=timezone]').value") == "Australia/Lord_Howe"
        browser.run("document.querySelector('[name=theme]').checked = true")
        browser.submit()
        assert "Saved." in browser.text()
    with open_store(settings.database.path) as store:
        after = store.subscriber(email="ann@example.org")
    assert after is not None and after.rhythm == rhythm and after.next_due == due and after.themes


def test_the_subscribe_form_takes_a_rhythm_in_the_readers_time_zone(tmp_path: Path) -> None:
    settings = _served(tmp_path)
    with AppServer(settings) as server, Browser(tmp_path / "profile") as browser:
        browser.open(server.url("/subscribe"))
        # Offered: the site's default cadence and zone, hour 8, Monday.
        defaults = [
            browser.run(f"document.querySelector('[name={n}]').value")
            for n in ("cadence", "timezone", "hour")
        ]
        assert defaults == ["weekly", "Europe/London", "8"]
        browser.choose("email", "bob@example.org")
        browser.choose("cadence", "weekly")
        browser.choose("weekday", "fri")
        browser.choose("hour", "6")
        browser.choose("timezone", "America/New_York")
        browser.run("document.querySelectorAll('[name=topic]')[0].value = 'Mekong'")
        browser.submit()
        assert "Check your inbox" in browser.text()
    chosen = ("bob@example.org", Rhythm("weekly", "America/New_York", 6, 4), ("Mekong",))  # as typed
    with open_store(settings.database.path) as store:
        queued = store.signups()
        pending = store.subscriber(email="bob@example.org")
    if queued:
        [signup] = queued
        assert (signup.email, signup.rhythm, signup.topics) == chosen
    else:  # the app's queue runner (every confirmations.TICK) already made bob pending from it
        assert pending is not None and pending.status == "pending"
        assert (pending.email, pending.rhythm, pending.topics) == chosen


def test_csv_import_and_export_carry_rhythms_and_topics_and_report_bad_lines(tmp_path: Path) -> None:
    from digest.subscribers.lifecycle import RhythmDefaults, export_csv, import_csv

    text = (
        "email,cadence,timezone,hour,weekday,topics\n"
        'ann@example.org,daily,Asia/Tokyo,7,,Laos OR Mekong; "belt and road"\n'
        "bob@example.org,weekly,,,fri,\n"  # the rest from the defaults
        "cid@example.org,,,,,\n"  # nothing chosen: the site's schedule
        "dan@example.org,hourly,,,,\n"
        "eve@example.org,daily,Mars/Olympus,,,\n"
        "fay@example.org,daily,,24,,\n"
        "gus@example.org,weekly,,,funday,\n"
        'hal@example.org,,,,,"""unclosed"\n'  # the cell holds: "unclosed
    )
    defaults = RhythmDefaults(None, "Europe/London")
    with open_store(tmp_path / "d.db") as store:
        report = import_csv(text, store, [], [], origin="list.csv", defaults=defaults)
        assert (report.added, report.updated) == (3, 0)
        assert [e.split(":")[1].strip() for e in report.errors] == [
            "line 5",
            "line 6",
            "line 7",
            "line 8",
            "line 9",
        ]
        assert "'hourly' is not one of daily, weekly, monthly" in report.errors[0]
        assert "not an IANA time zone" in report.errors[1] and "from 0 to 23" in report.errors[2]
        assert "day of the week" in report.errors[3] and "quotation mark" in report.errors[4]
        found = {s.email.split("@")[0]: s for s in store.subscribers()}
        assert found["ann"].rhythm == Rhythm("daily", "Asia/Tokyo", 7)
        assert found["ann"].topics == ("Laos OR Mekong", '"belt and road"')  # as typed (issue 29)
        assert found["bob"].rhythm == Rhythm("weekly", "Europe/London", 8, 4)
        assert found["cid"].rhythm is None and found["cid"].next_due is None
        exported = export_csv(store)
        # The export reads back as the same subscribers; a blank cell keeps what one has.
        assert import_csv(exported, store, [], [], defaults=defaults).errors == []
        again = {s.email.split("@")[0]: (s.rhythm, s.topics) for s in store.subscribers()}
        assert again == {k: (v.rhythm, v.topics) for k, v in found.items()}
        import_csv("email,hour\nann@example.org,\nbob@example.org,9\n", store, [], [], defaults=defaults)
        assert store.subscriber(email="ann@example.org").rhythm == found["ann"].rhythm  # type: ignore[union-attr]
        assert store.subscriber(email="bob@example.org").rhythm == Rhythm("weekly", "Europe/London", 9, 4)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("field", "value"),
    [("timezone", "Etc"), ("timezone", "America"), ("timezone", "localtime"), ("timezone", "x" * 300),
     ("timezone", "../../etc/passwd"), ("timezone", "Africa/Asmera"), ("hour", "²"), ("hour", "-1"),
     ("hour", "1" * 50), ("weekday", "0"), ("cadence", "hourly"), ("topic", '"x')],
)  # fmt: skip
def test_hostile_form_values_get_a_400_never_a_500(tmp_path: Path, field: str, value: str) -> None:
    import re

    import httpx

    settings = _served(tmp_path)
    good = {"cadence": "daily", "timezone": "Asia/Tokyo", "hour": "7", "weekday": "mon", "topic": "laos"}
    with AppServer(settings) as server:
        form = httpx.get(server.url("/subscribe")).text
        found = re.search(r'name="form_token" value="([^"]+)"', form)
        assert found
        posted = httpx.post(
            server.url("/subscribe"),
            data={**good, field: value, "email": "ann@example.org", "form_token": found.group(1)},
            headers={"Origin": server.url("")},
        )
    assert posted.status_code == 400, (field, value, posted.status_code)
    assert '<p class="error">' in posted.text
    with open_store(settings.database.path) as store:
        assert store.signups() == []


def test_a_bad_rhythm_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, "")
    add_subscribers(
        config,
        "b@example.org",
        options=("--confirmed", "--cadence", "weekly", "--weekday", "friday", "--topic", "Mekong"),
    )
    [bob] = listed_subscribers(config)
    # the topic as typed (issue 29)
    assert (bob["cadence"], bob["timezone"], bob["hour"], bob["weekday"], bob["topics"]) == (
        "weekly", "UTC", 8, "fri", ["Mekong"]
    )  # fmt: skip
    assert bob["next_due"] > bob["created"]
    for option in (["--timezone", "Etc"], ["--timezone", "x" * 300], ["--hour", "²"], ["--weekday", "0"]):
        done = run(
            "--config",
            str(config),
            "subscribers",
            "add",
            "a@example.org",
            "--confirmed",
            *option,
            cwd=tmp_path,
        )
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("digest: error: ")


def test_the_site_default_cadence_is_a_newcomers_when_they_choose_none(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[digest]\ncadence = "monthly"\n[schedule]\ntimezone = "Europe/Paris"\n')
    add_subscribers(config, "a@example.org")
    [ann] = listed_subscribers(config)
    assert (ann["cadence"], ann["timezone"], ann["hour"]) == ("monthly", "Europe/Paris", 8)
    (tmp_path / "other").mkdir()
    bad = write_config(tmp_path / "other", '[digest]\ncadence = "hourly"\n')
    refused = run("--config", str(bad), "subscribers", "list", cwd=tmp_path)
    assert refused.returncode == 1 and "digest.cadence" in refused.stderr and "hourly" in refused.stderr


@pytest.mark.parametrize(
    ("rhythm", "words"),
    [
        (Rhythm("daily", "Europe/Paris", 7, 0), "the daily digest of"),
        (Rhythm("monthly", "UTC", 8, 0), "the monthly digest of"),
        (None, "the digest of"),  # the site's schedule: not named
    ],
)
def test_the_confirmation_names_the_rhythm_chosen(tmp_path: Path, rhythm: Rhythm | None, words: str) -> None:
    # It said "the weekly digest" to someone who had chosen Daily.
    from digest.mail.send import confirmation_message
    from digest.store import SubscriberChange

    settings = settings_for(tmp_path, '[site]\ntitle = "China Watch"\n')
    with open_store(settings.database.path) as store:
        pending = SubscriberChange(
            "ann@example.org", status="pending", pending_since=store.now(), rhythm=rhythm
        )
        store.upsert_subscribers([pending])
        ann = store.subscriber(email="ann@example.org")
        assert ann is not None
        message = message_from_bytes(confirmation_message(store, settings, ann).data, policy=default)
    text = message.get_content()  # type: ignore[attr-defined]
    assert f"asked to receive {words} China Watch at ann@example.org" in " ".join(text.split())


def test_a_topic_as_typed_carries_no_control_characters_nor_a_formula_into_a_terminal_or_csv(
    tmp_path: Path,
) -> None:
    """Topics are kept as typed (issue 29): what a visitor types must still not drive the
    operator's terminal (escape sequences, forged lines) nor a spreadsheet (formulas)."""
    from digest.subscribers.lifecycle import export_csv, import_csv

    hostile = "mekong\x1b[2J\x1b]0;pwned\x07\nbob@x.org active FAKE\u200b LINE"
    formula = '=HYPERLINK("http://evil.example/")'
    config = write_config(tmp_path, "")
    add_subscribers(
        config, "ann@example.org", options=("--confirmed", "--topic", formula, "--topic", hostile)
    )
    [ann] = listed_subscribers(config)
    assert ann["topics"] == [formula, "mekong [2J ]0 pwned bob@x.org active FAKE LINE"]
    shown = run("--config", str(config), "subscribers", "list", cwd=tmp_path)
    assert shown.returncode == 0 and "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert shown.stdout.splitlines()[1:] == ["1 subscriber"]  # ann's one line, and the count
    with open_store(tmp_path / "test.db") as store:
        exported = export_csv(store)
        [cells] = list(csv.DictReader(io.StringIO(exported)))
        assert cells["topics"].startswith("'=HYPERLINK")  # a spreadsheet shows it as text
        assert not any(value.startswith(("=", "+", "-", "@")) for value in cells.values())
        assert import_csv(exported, store, [], []).errors == []
        again = store.subscriber(email="ann@example.org")
    assert again is not None and list(again.topics) == ann["topics"]  # the round trip keeps them
