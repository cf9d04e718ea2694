"""Filter rules per source (keep = [...], drop = [...]): parsed once, with errors naming the
source and the rule; applied to the seeds with exact counts (by region, by phrase, by
regex, together); remembered; bounded against catastrophic regexes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from digest.common import rules
from digest.common.errors import ConfigError

from .helpers import SEEDS_SOURCE, listed_articles, run, write_config


def _pull(tmp_path: Path, name: str, body: str) -> tuple[Path, str]:
    folder = tmp_path / name
    folder.mkdir()
    config = write_config(folder, f"{SEEDS_SOURCE}{body}")
    pulled = run("--config", str(config), "pull", cwd=folder)
    assert pulled.returncode == 0, pulled.stderr
    return config, pulled.stdout + pulled.stderr


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The seeds without rules: what each rule is checked against."""
    config, said = _pull(tmp_path_factory.mktemp("plain"), "plain", "")
    assert "seeds: 40 new" in said
    return listed_articles(config=config)


def _words(pattern: str, text: str) -> bool:
    return re.search(rf"(?<!\w){pattern}(?!\w)", text, re.IGNORECASE) is not None


def test_each_kind_of_rule_on_the_seeds(tmp_path: Path, everything: list[dict[str, Any]]) -> None:
    europe = {a["id"] for a in everything if "europe" in a["regions"]}
    laos = {a["id"] for a in everything if _words("laos", a["title"] + "\n" + a["summary"])}
    bri = {a["id"] for a in everything if _words(r"belt\s+and\s+road", a["summary"])}
    assert (len(europe), len(laos), len(bri)) == (9, 6, 5)  # the seeds, as grouped today

    config, said = _pull(tmp_path, "region", 'drop = ["region:europe"]\n')
    assert "seeds: 31 new, 0 updated, 0 unchanged, 9 dropped by rules" in said
    kept = listed_articles(config=config)
    assert len(kept) == 31 and not any("europe" in a["regions"] for a in kept)
    dropped = json.loads(
        run("--config", str(config), "articles", "--dropped", "--json", cwd=config.parent).stdout
    )
    assert {d["id"] for d in dropped} == europe and {d["rule"] for d in dropped} == {"drop: region:europe"}

    config, said = _pull(tmp_path, "phrase", "keep = ['Laos', 'text:\"Belt and Road\"']\n")
    assert {a["id"] for a in listed_articles(config=config)} == laos | bri
    assert f"{40 - len(laos | bri)} dropped by rules" in said

    config, said = _pull(tmp_path, "regex", 'drop = ["title:/^(china|xi)\\\\b/"]\n')
    starts = {a["id"] for a in everything if re.match(r"(china|xi)\b", a["title"], re.IGNORECASE)}
    assert (
        len(starts) > 5
        and {a["id"] for a in listed_articles(config=config)} == {a["id"] for a in everything} - starts
    )

    # Together: drop wins over keep; region rules wait for grouping, the others do not.
    config, said = _pull(
        tmp_path,
        "both",
        "keep = ['Laos', 'text:\"Belt and Road\"']\ndrop = ['region:europe', 'url:/xinhua/']\n",
    )
    by_url = {a["id"] for a in everything if "xinhua" in (a["url"] or "").lower()}
    assert {a["id"] for a in listed_articles(config=config)} == (laos | bri) - europe - by_url
    rules_said = json.loads(
        run("--config", str(config), "articles", "--dropped", "--json", cwd=config.parent).stdout
    )
    assert len(rules_said) == 40 - len((laos | bri) - europe - by_url)
    assert {r["rule"] for r in rules_said} <= {
        "drop: region:europe",
        "drop: url:/xinhua/",
        'keep: no keep rule matched (Laos; text:"Belt and Road")',
    }
    listed = run("--config", str(config), "articles", "--dropped", cwd=config.parent).stdout
    assert f"{len(rules_said)} dropped items" in listed


def test_a_drop_is_remembered_until_its_rule_goes(tmp_path: Path) -> None:
    config, said = _pull(tmp_path, "site", 'drop = ["Laos"]\n')
    assert "34 new" in said and "6 dropped by rules" in said
    again = run("--config", str(config), "pull", "--force", cwd=config.parent)
    assert again.returncode == 0 and "dropped" not in again.stdout + again.stderr  # not judged again
    config.write_text(config.read_text().replace('drop = ["Laos"]\n', ""))
    back = run("--config", str(config), "pull", "--force", cwd=config.parent)
    assert back.returncode == 0, back.stderr
    assert len(listed_articles(config=config)) == 40  # the rule is gone: they are articles again
    assert (
        "0 dropped items" in run("--config", str(config), "articles", "--dropped", cwd=config.parent).stdout
    )


def test_bad_rules_name_the_source_and_the_rule(tmp_path: Path) -> None:
    for rule, says in (
        ('"title:/(unclosed/"', "not a valid regex"),
        ('"title:"', "no pattern"),
        ('"//"', "an empty regex"),
        (f'"/{"a" * 300}/"', "at most 200 characters"),
        ('"text:\\"half a phrase"', "write a phrase as"),
        ("42", "expected a list of rules"),
    ):
        folder = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        config = write_config(folder, f"{SEEDS_SOURCE}drop = [{rule}]\n")
        result = run("--config", str(config), "pull", cwd=folder)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert "source 'seeds'" in line and says in line, line


def test_matching_is_whole_words_case_insensitive_and_bounded() -> None:
    parsed = rules.parse(["Laos", 'text:"belt and road"', "region:latin america"], ["author:/^AFP$/"], "s")
    assert parsed.keep[0].matches({"title": "LAOS rail", "text": ""})
    assert not parsed.keep[0].matches({"title": "Laotian rail", "text": ""})
    assert parsed.keep[1].matches({"text": "the Belt\n and   Road plan"})
    assert parsed.keep[2].matches({"region": ("latin-america",)}) and not parsed.keep[2].matches(
        {"region": ("europe",)}
    )
    assert parsed.drop[0].matches({"author": "afp"}) and not parsed.drop[0].matches({"author": "AFP wire"})
    assert parsed.needs_groups and not rules.parse(["Laos"], [], "s").needs_groups
    # Not a field: the whole thing is a pattern on title or text.
    assert rules.parse_rule("note:this", "s").fields == ("title", "text")
    # A regex that backtracks catastrophically on this text gives up in REGEX_SECONDS.
    evil = rules.parse_rule("/(a|aa)+$/", "s")
    started = time.perf_counter()
    assert not evil.matches({"title": "a" * 40 + "!", "text": ""})
    assert evil.matches({"title": "a" * 40 + "!", "text": ""}, undecided=True)  # how drop rules ask
    assert time.perf_counter() - started < 5  # (unbounded, the backtracking would take hours)
    hostile = rules.parse([], ["Laos", "/belt.and.road/"], "s")
    assert hostile.verdict({"title": "a" * 40 + "!", "text": ""}, grouped=False) is None
    # Invisible characters and look-alike forms do not hide a word from a rule.
    for disguised in ("La\u00ados", "L\u200baos", "\uff2c\uff41\uff4f\uff53"):
        fields = rules.fields_of(f"News from {disguised}", "", None, None, (), ())
        assert hostile.verdict(fields, grouped=False) == "drop: Laos", disguised
    with pytest.raises(ConfigError, match="at most 100 rules"):
        rules.parse(["x"] * 101, [], "s")
