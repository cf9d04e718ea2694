"""The fixtures: real servers on 127.0.0.1 (an HTTP server for sources, an SMTP sink, a DNS
server), a store in a temporary folder, the seeds served by the web app, and the library
that moves a process's clock. What they are made of lives in ``servers.py`` and
``helpers.py``; this file only hands them to tests, started and stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.config import Settings
from digest.store import Store, open_store

from .helpers import SEEDS_SOURCE, pulled, settings_for, skip_or_fail
from .servers import AppServer, DnsServer, FeedServer, SmtpSink


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "test.db") as st:
        yield st


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture(scope="module")
def served_seeds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, Settings]]:
    """The seeds pulled into a fresh database, served by the app (site title "China Watch")."""
    folder = tmp_path_factory.mktemp("served")
    settings = settings_for(folder, f'[site]\ntitle = "China Watch"\n{SEEDS_SOURCE}')
    pulled(settings)
    with AppServer(settings) as server:
        yield server, settings


@pytest.fixture(scope="session")
def shim() -> Iterator[Path]:
    """The library that moves a process's clock (tests/clock.py), built once; not under
    pytest's temporary folders, so PostgreSQL's user can load it too. Without a compiler:
    a skip here, a failure in CI."""
    import tempfile

    from tests import clock

    with tempfile.TemporaryDirectory(prefix="digest-clock-") as folder:
        try:
            library = clock.build(Path(folder))
        except clock.ClockError as exc:
            skip_or_fail(str(exc))
        yield library
