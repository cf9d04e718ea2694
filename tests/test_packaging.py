"""What a user installs: `make run` gets the package and its extras without the test tools,
and a missing extra is named in one line when the configuration needs it."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from .helpers import digest_env, run, write_config

ROOT = Path(__file__).resolve().parent.parent
TEST_TOOLS = {
    "pytest",
    "pytest-timeout",
    "mypy",
    "ruff",
    "hypothesis",
    "pycountry",
    "trustme",
    "websocket-client",
}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _closure(root: str, extras: set[str]) -> set[str]:
    """Every distribution `pip install 'ROOT[EXTRAS]'` brings, read from the installed
    packages' own metadata (their Requires-Dist), markers evaluated for this Python."""
    found: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(root, frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        if (_name(name), wanted) in seen:
            continue
        seen.add((_name(name), wanted))
        found.add(_name(name))
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": extra}) for extra in wanted or {""}):
                todo.append((req.name, frozenset(req.extras)))
    return found


def _make_run_install_line() -> str:
    """The pip command `make run` gives a fresh clone (make -n: printed, not run)."""
    shown = subprocess.run(
        ["make", "-n", "run", "VENV=/nonexistent/venv"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    installs = [line for line in shown.stdout.splitlines() if "pip install" in line]
    assert len(installs) == 1, shown.stdout
    return installs[0]


def test_make_run_installs_the_extras_and_no_test_tools() -> None:
    line = _make_run_install_line()
    extras = re.search(r"'\.\[([a-z,]+)\]'", line)
    assert extras is not None, line
    chosen = set(extras.group(1).split(","))
    assert "test" not in chosen
    assert {"fulltext", "postgres"} <= chosen
    brought = _closure("digest", chosen)
    assert {
        "trafilatura",
        "psycopg",
        "jinja2",
        "feedgen",
        "apscheduler",
        "aiosmtplib",
        "sqlite-utils",
    } <= brought
    assert not brought & TEST_TOOLS, sorted(brought & TEST_TOOLS)
    # and the bare package leaves the extras out: each is needed for one setting only
    bare = _closure("digest", set())
    assert "trafilatura" not in bare and "psycopg" not in bare and "babel" not in bare


def _without(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`digest ARGS` in a Python where ``module`` cannot be imported, as for a pip user who
    installed digest without the extra that brings it."""
    program = f"import sys; sys.modules[{module!r}] = None; from digest.cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        cwd=cwd,
        env=digest_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_missing_extra_is_named_in_one_line_before_any_work(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, '[[sources]]\nname = "site"\nurl = "https://example.org/feed"\nfull_text = true\n'
    )
    result = _without("trafilatura", "--config", str(config), "pull", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"digest: error: {config}: source 'site': full_text = true needs the fulltext extra, "
        "which is not installed: pip install 'digest[fulltext]'"
    ]
    assert not (tmp_path / "digest.db").exists()

    (tmp_path / "pg.toml").write_text('[database]\nurl = "postgresql://digest@127.0.0.1:1/digest"\n')
    result = _without("psycopg", "--config", str(tmp_path / "pg.toml"), "status", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.endswith("needs the postgres extra, which is not installed: pip install 'digest[postgres]'")
    assert "database.url" in line

    # with the extra installed, the same config is read and used
    listed = run("--config", str(config), "articles", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "extra" not in listed.stderr
