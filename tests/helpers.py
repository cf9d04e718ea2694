"""What the tests share, each in one place: where things are, free ports, waiting for what
another thread or process does, configuration files and settings, feeds and articles made
up for a test, and the `digest` command run for real.

Contract: plain functions and constants only. Fixtures live in ``conftest.py`` (pytest finds
them there), servers (HTTP, SMTP, DNS, the web app, `digest run` and `digest serve` in a
process of their own) in ``servers.py``. Nothing here mocks digest's own code: a test that
needs digest to do something runs it (``run``, ``start``, ``pulled``). A test module imports
from here, never from another test module.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import pytest
from lxml import etree

from digest.common.models import Article, SourceReport
from digest.config import Settings, parse_settings
from digest.intake.pull import pull
from digest.store import open_store

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
SHARED = REPO.parent / "shared"
DATA = Path(__file__).resolve().parent / "data"
ATOM_RNG = SHARED / "schemas" / "atom.rng"

# --- what a test needs from the machine ----------------------------------------------------


def skip_or_fail(message: str) -> NoReturn:
    """Skip on a user's machine; fail in CI (``CI`` set), where everything a test needs is
    installed, so that something missing can never pass as green."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require(path: Path, what: str) -> None:
    """``path`` (something in ../shared) exists, or the test skips (fails in CI)."""
    if not path.exists():
        skip_or_fail(f"{what} not found at {path} (it lives in ../shared)")


def atom_schema() -> etree.RelaxNG:
    """The Atom RELAX NG schema (RFC 4287) from ../shared, or the test skips (fails in CI)."""
    require(ATOM_RNG, "the Atom RELAX NG schema")
    return etree.RelaxNG(etree.parse(str(ATOM_RNG)))


def need(program: str) -> str:
    """The path of ``program`` (a Debian package `.ci/run` installs), or the test skips
    (fails in CI)."""
    found = shutil.which(program)
    if found is None:
        skip_or_fail(f"{program} is not installed (Debian package; `.ci/run` installs it)")
    return found


# Headless Chromium as the tests run it: no sandbox (CI runs as root), no GPU, and nothing
# fetched in the background, so that what it loads is what the test asks for.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]

# --- ports and waiting ------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now (the system's choice, let go at once:
    for a server the test starts next, or for one that stays down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def silent_port() -> Iterator[int]:
    """A port of 127.0.0.1 that takes connections and never says a word (a server that
    hangs), while the ``with`` lasts."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        yield int(silent.getsockname()[1])


def within(check: Callable[[], T], seconds: float = 20, every: float = 0.1) -> T:
    """Ask ``check`` every ``every`` seconds until it answers something true or ``seconds``
    have passed; its last answer (true: it came in time). For what another thread or process
    does, with a deadline instead of a sleep hoped long enough."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(every)


def wait_for(check: Callable[[], T], what: str, seconds: float = 20, every: float = 0.1) -> T:
    """``within``, failing the test (naming ``what``) when ``check`` never came true."""
    found = within(check, seconds, every)
    if not found:
        raise AssertionError(f"not within {seconds:g} s: {what}")
    return found


# --- configuration ----------------------------------------------------------------------------

# A source of the 40 seed articles (the sample site's snapshots in ``seeds/``).
SEEDS_SOURCE = f'[[sources]]\nname = "seeds"\nurl = "{SEEDS}"\n'


def _toml(keys: Mapping[str, str | int | bool | list[str]]) -> str:
    # JSON's strings, numbers, booleans and arrays are written as TOML writes them.
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())


def source(name: str, url: str | Path, **keys: str | int | bool | list[str]) -> str:
    """A ``[[sources]]`` table: ``name``, ``url``, then ``keys`` in the order given."""
    return f'[[sources]]\nname = "{name}"\nurl = "{url}"\n{_toml(keys)}'


def smtp_section(port: int, **keys: str | int) -> str:
    """An ``[smtp]`` table for a server on 127.0.0.1:``port``, then ``keys`` in the order given."""
    return f'[smtp]\nhost = "127.0.0.1"\nport = {port}\n{_toml(keys)}'


def _with_database(body: str) -> str:
    return f'[database]\npath = "test.db"\n\n{body}'


def write_config(folder: Path, body: str) -> Path:
    """``folder/digest.toml``: TOML ``body`` with the database (test.db) in ``folder``."""
    path = folder / "digest.toml"
    path.write_text(_with_database(body), encoding="utf-8")
    return path


def settings_for(folder: Path, body: str, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from TOML ``body`` (no file), with the database (test.db) in ``folder``; the
    environment is ``env`` only, never this process's."""
    return parse_settings(_with_database(body), origin="test.toml", base_dir=folder, env=dict(env or {}))


def mondays(count: int) -> list[str]:
    """``count`` Mondays at 08:00 UTC (the site's weekly digest, by default) a week apart, the
    first more than a day from now: moments for ``digest send --at`` by which whatever was
    pulled now is new, on whatever date the suite runs."""
    soon = datetime.now(UTC) + timedelta(days=1)
    first = (soon + timedelta(days=-soon.weekday() % 7)).replace(hour=8, minute=0, second=0, microsecond=0)
    if first <= soon:
        first += timedelta(weeks=1)
    return [(first + timedelta(weeks=n)).isoformat() for n in range(count)]


def cron_away() -> str:
    """A yearly cron (six fields, UTC) on the first of the month half a year from now: a site
    schedule that never fires while a test watches a running service, on whatever date the
    suite runs (the default, Mondays 08:00, would when the suite runs across one)."""
    return f"0 0 0 1 {(datetime.now(UTC).month + 5) % 12 + 1} *"


def hourly_away() -> str:
    """An hourly cron (six fields, UTC) at the minute half an hour from now: it never fires
    while a test watches, whatever the time the suite runs at."""
    return f"0 {(datetime.now(UTC).minute + 30) % 60} * * * *"


# --- feeds and articles -----------------------------------------------------------------------


def rss(items: list[dict[str, str]], *, extra_ns: str = "", channel_extra: str = "") -> bytes:
    """A small RSS 2.0 document; each item dict's keys become child elements."""
    parts = []
    for item in items:
        inner = "".join(f"<{k}>{v}</{k}>" for k, v in item.items())
        parts.append(f"<item>{inner}</item>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<rss version="2.0" {extra_ns}><channel><title>Test feed</title>'
        f"<link>http://example.org/</link><description>d</description>{channel_extra}"
        f"{''.join(parts)}</channel></rss>"
    ).encode()


def article(ident: str, seen: datetime, **fields: Any) -> Article:
    """An Article made up for a test: id ``ident``, source "s", title "Article IDENT", no
    link, no text, published, first seen and updated at ``seen``, content hash "h";
    ``fields`` (any of Article's) say otherwise."""
    made: dict[str, Any] = {
        "id": ident,
        "source": "s",
        "title": f"Article {ident}",
        "url": None,
        "guid": None,
        "summary_html": "",
        "summary_text": "",
        "author": None,
        "published": seen,
        "first_seen": seen,
        "updated": seen,
        "content_hash": "h",
    }
    return Article(**(made | fields))


def pulled(settings: Settings, *names: str, **options: Any) -> dict[str, SourceReport]:
    """``pull`` (the named sources, else all) into the settings' store; each source's report
    by its name, in the order pulled. ``options``: pull's own (force, group, fetcher)."""
    with open_store(settings.database.path) as store:
        return {report.name: report for report in pull(settings, store, names, **options)}


def stored_articles(settings: Settings) -> list[Article]:
    """Every article in the settings' store, as ``Store.articles`` orders them."""
    with open_store(settings.database.path) as store:
        return store.articles()


def sql_value(database: Path, sql: str) -> Any:
    """The first value of the first row ``sql`` gives on the SQLite file ``database``, over a
    connection of its own (as another process would look, waiting up to 30 s for a lock)."""
    with closing(sqlite3.connect(database, timeout=30)) as db:
        return db.execute(sql).fetchone()[0]


# --- the command line ---------------------------------------------------------------------------


def digest_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its DIGEST_* settings (a developer's own must not
    reach a test), then ``env`` (which may set DIGEST_* on purpose)."""
    found = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    found.update(env or {})
    return found


def run(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`digest ARGS` in ``cwd``, to the end (two minutes at most): exit code, stdout, stderr."""
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        cwd=cwd,
        env=digest_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def start(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
    stderr: int | IO[Any] | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """`digest ARGS` started in ``cwd`` and left running; its output goes nowhere unless
    ``stdout`` and ``stderr`` say where."""
    return subprocess.Popen(
        [sys.executable, "-m", "digest", *args], cwd=cwd, env=digest_env(env), stdout=stdout, stderr=stderr
    )


def listed_articles(
    *options: str, config: Path | str | None = None, cwd: Path | None = None
) -> list[dict[str, Any]]:
    """`digest articles --json OPTIONS` (with ``config``, run in its folder unless ``cwd``
    says otherwise; without, in ``cwd`` on the config found there), which must exit 0."""
    given = ("--config", str(config)) if config else ()
    folder = cwd or (Path(config).parent if config else None)
    assert folder is not None, "a config or a folder to run in"
    listed = run(*given, "articles", "--json", *options, cwd=folder)
    assert listed.returncode == 0, listed.stderr
    found: list[dict[str, Any]] = json.loads(listed.stdout)
    return found


def listed_subscribers(config: Path | str, *options: str) -> list[dict[str, Any]]:
    """`digest subscribers list --json OPTIONS` in the config's folder, which must exit 0."""
    listed = run("--config", str(config), "subscribers", "list", "--json", *options, cwd=Path(config).parent)
    assert listed.returncode == 0, listed.stderr
    found: list[dict[str, Any]] = json.loads(listed.stdout)
    return found


def add_subscribers(
    config: Path | str,
    *addresses: str,
    options: tuple[str, ...] = ("--confirmed",),
    env: Mapping[str, str] | None = None,
) -> None:
    """`digest subscribers add ADDRESS OPTIONS` (confirmed, unless ``options`` say otherwise)
    for each address, in the config's folder; each must exit 0."""
    for address in addresses:
        added = run(
            "--config", str(config), "subscribers", "add", address, *options, cwd=Path(config).parent, env=env
        )
        assert added.returncode == 0, added.stderr
