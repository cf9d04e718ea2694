"""Many sources are fetched at once under the politeness rules (issue 30): at most ``[fetch]
workers`` requests in all and ``[fetch] per_host`` to one server; a source held back is not
fetched ahead; what is stored is what a pull one source at a time stores; no thread is left
behind (the grouping after a pull forks, which a process with threads may not)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import pytest

import digest.intake.pull
from digest.common.query import parse as parse_query
from digest.intake.fetch import BIG_DOCUMENT
from digest.intake.pull import pull
from digest.store import Store, open_store

from .helpers import SEEDS, rss, settings_for
from .servers import FeedServer, Reply, Seen

DELAY = 0.15  # long enough for requests to overlap on a loaded machine; a pull stays short


class Counted:
    """Requests in flight, at most, per server and in all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: dict[int, int] = {}
        self.most: dict[int, int] = {}
        self.total = self.most_total = 0

    def answer(self, server: int, body: bytes, seen: Seen) -> Reply:
        with self.lock:
            self.now[server] = self.now.get(server, 0) + 1
            self.total += 1
            self.most[server] = max(self.most.get(server, 0), self.now[server])
            self.most_total = max(self.most_total, self.total)
        time.sleep(DELAY)
        with self.lock:
            self.now[server] -= 1
            self.total -= 1
        return Reply(body=body, headers={"Content-Type": "application/rss+xml", "ETag": '"v1"'})


@pytest.fixture
def servers() -> Iterator[list[FeedServer]]:
    with ExitStack() as stack:
        yield [stack.enter_context(FeedServer()) for _ in range(3)]


def _feed(n: int) -> bytes:
    return rss([{"title": f"Item {n}.{i} on the Mekong", "link": f"https://e.org/{n}/{i}"} for i in range(2)])


def _config(servers: list[FeedServer], count: int, counted: Counted, fetch: str) -> str:
    body = f"[fetch]\nallow_private = true\n{fetch}\n"
    for n in range(count):
        server = n % len(servers)
        path = f"/f{n}.xml"
        feed = _feed(n)
        servers[server].routes[path] = lambda seen, s=server, b=feed: counted.answer(s, b, seen)
        body += f'[[sources]]\nname = "f{n}"\nurl = "{servers[server].url(path)}"\n'
    return body


def _titles(store: Store) -> list[str]:
    return sorted(a.title for a in store.articles())


@pytest.mark.parametrize(("workers", "per_host"), [(4, 1), (2, 2), (5, 2)])
def test_many_sources_are_fetched_at_once_within_the_limits(
    servers: list[FeedServer], tmp_path: Path, workers: int, per_host: int
) -> None:
    counted = Counted()
    fetch = f"workers = {workers}\nper_host = {per_host}"
    settings = settings_for(tmp_path, _config(servers, 12, counted, fetch))
    with open_store(settings.database.path) as store:
        reports = pull(settings, store)
        assert [r.name for r in reports] == [f"f{n}" for n in range(12)]  # reported in order
        assert all(r.ok and r.new == 2 for r in reports), [r.summary() for r in reports]
        assert len(_titles(store)) == 24
    # Each limit holds (and each case is one where the other alone would let it be passed).
    assert max(counted.most.values()) <= per_host
    assert counted.most_total <= workers
    assert counted.most_total >= 2  # and at once: slow answers overlapped
    assert not [t for t in threading.enumerate() if t.name.startswith("digest-fetch")]  # all gone
    # The second pull asks with what the first was told, and is told nothing changed.
    with open_store(settings.database.path) as store:
        again = pull(settings, store)
    assert all(r.not_modified or r.new == 0 for r in again)
    last = [r for r in servers[0].requests if r.path == "/f0.xml"][-1]
    assert last.headers.get("if-none-match") == '"v1"'


def test_one_at_a_time_stores_the_same(servers: list[FeedServer], tmp_path: Path) -> None:
    counted = Counted()
    together = settings_for(tmp_path / "a", _config(servers, 6, counted, "workers = 8"))
    alone = settings_for(tmp_path / "b", _config(servers, 6, counted, "workers = 1\nper_host = 1"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    found = []
    for settings in (together, alone):
        with open_store(settings.database.path) as store:
            pull(settings, store)
            found.append([(a.id, a.title, a.url) for a in store.articles()])
    assert found[0] == found[1] and len(found[0]) == 12


def test_a_source_the_server_asked_to_wait_is_not_fetched_ahead(
    servers: list[FeedServer], tmp_path: Path
) -> None:
    counted = Counted()
    body = _config(servers, 4, counted, "workers = 4")
    servers[1].routes["/f1.xml"] = Reply(429, b"slow down", headers={"Retry-After": "3600"})
    settings = settings_for(tmp_path, body)
    with open_store(settings.database.path) as store:
        first = {r.name: r for r in pull(settings, store)}
        assert "HTTP 429" in (first["f1"].error or "") and first["f0"].new == 2
        second = {r.name: r for r in pull(settings, store)}
    assert "deferred" in (second["f1"].error or "")
    assert servers[1].hits("/f1.xml") == 1  # asked once: not again, not even ahead
    assert servers[0].hits("/f0.xml") == 2


def test_a_big_feed_is_worked_on_with_no_fetching_thread_alive(
    servers: list[FeedServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process with threads may not fork: while a big feed's items are normalised (on every
    core, when there are several), fetching ahead waits; the small feeds around it do not."""
    import digest.intake.pull

    counted = Counted()
    body = _config(servers, 6, counted, "workers = 4")
    big = rss([{"title": f"Item {i} on the Mekong", "link": f"https://e.org/big/{i}"} for i in range(3500)])
    assert len(big) > BIG_DOCUMENT
    servers[0].routes["/f3.xml"] = Reply(body=big, headers={"Content-Type": "application/rss+xml"})
    threads_seen: dict[int, list[int]] = {}
    normalise_all = digest.intake.pull.fork_map

    def watched(fn: Any, items: Any, **options: Any) -> Any:
        fetching = [t for t in threading.enumerate() if t.name.startswith("digest-fetch")]
        threads_seen.setdefault(len(items), []).append(len(fetching))
        return normalise_all(fn, items, **options)

    monkeypatch.setattr(digest.intake.pull, "fork_map", watched)
    settings = settings_for(tmp_path, body)
    with open_store(settings.database.path) as store:
        reports = pull(settings, store)
    assert [r.new for r in reports] == [2, 2, 2, 3500, 2, 2]
    assert threads_seen[3500] == [0]  # the big one: no thread, so it may fork
    assert threads_seen[2][0] > 0 and threads_seen[2][-1] == 0  # the small: fetched ahead, but the last


# Serves a folder on 127.0.0.1 from another process (this one keeps to one thread, as
# `digest pull` does, so that the pull may fork).
SERVE = """
import functools, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass
server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=sys.argv[1]))
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    folder = tmp_path / "feeds"
    folder.mkdir()
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield folder, int(server.stdout.readline())
    finally:
        server.kill()
        server.wait()


def _seed_feeds(folder: Path, count: int) -> None:
    """``count`` feeds of the seeds' paragraphs, each item told by two feeds (so stories form)."""
    text = "\n".join(p.read_text() for p in sorted(SEEDS.glob("*.txt")))
    paragraphs = [b.strip() for b in re.split(r"\n\s*\n", text) if len(b.strip()) > 150]
    for f in range(count):
        items = [
            {
                "title": escape(paragraphs[(f // 2 * 5 + n) % len(paragraphs)][:90]),
                "link": f"https://feed{f}.example.org/{n}",
                "description": escape(f"<p>{escape(paragraphs[(f // 2 * 5 + n) % len(paragraphs)])}</p>"),
            }
            for n in range(5)
        ]
        (folder / f"f{f}.xml").write_bytes(rss(items))


def test_sources_fetched_ahead_are_worked_on_by_a_helper_and_stored_as_without_it(
    served: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where forking is safe (one thread) and another core is free, what is fetched ahead is
    parsed, normalised and read for grouping by a helper process while this one stores the
    sources before it; the articles, their search index, regions, themes and stories are
    those of a pull on one core, where nothing forks."""
    folder, port = served
    _seed_feeds(folder, 12)
    assert threading.active_count() == 1, [t.name for t in threading.enumerate()]
    worked_in = tmp_path / "worked"
    worked_in.mkdir()
    work_fetch = digest.intake.pull._work_fetch

    def noted(job: Any, **options: Any) -> Any:
        (worked_in / f"{job[0].name}-{os.getpid()}").touch()
        return work_fetch(job, **options)

    monkeypatch.setattr(digest.intake.pull, "_work_fetch", noted)
    moment = datetime.now(UTC).replace(microsecond=0)
    body = "[fetch]\nallow_private = true\nworkers = 4\n" + "".join(
        f'[[sources]]\nname = "f{f}"\nurl = "http://127.0.0.1:{port}/f{f}.xml"\n' for f in range(12)
    )
    found = []
    for cores in ({0, 1}, {0}):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, c=cores: c, raising=False)
        place = tmp_path / f"on{len(cores)}"
        place.mkdir()
        settings = settings_for(place, body)
        with open_store(settings.database.path, clock=lambda: moment) as store:
            reports = pull(settings, store)
            assert all(r.ok and r.new == 5 for r in reports), [r.summary() for r in reports]
            articles = store.articles()
            found.append(
                (
                    [
                        (a.id, a.title, a.summary_html, a.content_hash, a.regions, a.themes, a.story)
                        for a in articles
                    ],
                    [a.id for a in store.search(parse_query("china"), limit=100)],
                )
            )
        assert threading.active_count() == 1  # the helper's threads are gone, and the fetchers'
    helped = {p.name.rsplit("-", 1)[1] for p in worked_in.iterdir()}
    assert helped and str(os.getpid()) not in helped  # the helper worked on some, in its own process
    assert found[0] == found[1]
    assert len(found[0][0]) == 60 and found[0][1]
    assert sum(1 for a in found[0][0] if a[6]) >= 2  # and stories formed


def test_a_pull_of_many_sources_groups_as_it_goes_and_links_on_the_helper(
    served: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pull of many sources groups what it stored every ``GROUP_EVERY`` articles, not all
    at the end, so what waits to be grouped stays bounded whatever the number of sources
    (issue 30). With a helper, the helper links while this process scores. Regions and
    themes are those of grouping all at the end; an event told by sources grouped in two
    rounds is one story; and with a helper or without, everything stored is the same."""
    folder, port = served
    _seed_feeds(folder, 12)
    assert threading.active_count() == 1, [t.name for t in threading.enumerate()]
    linked_in = tmp_path / "linked"
    linked_in.mkdir()
    linked, group_shared = digest.intake.pull.linked, digest.intake.pull.group_shared
    rounds: list[int] = []

    def noted(task: Any) -> Any:
        (linked_in / f"{len(task.items)}-{os.getpid()}").touch()
        return linked(task)

    def counted(*args: Any, **options: Any) -> Any:
        rounds.append(1)
        return group_shared(*args, **options)

    monkeypatch.setattr(digest.intake.pull, "linked", noted)
    monkeypatch.setattr(digest.intake.pull, "group_shared", counted)
    moment = datetime.now(UTC).replace(microsecond=0)
    body = "[fetch]\nallow_private = true\nworkers = 4\n" + "".join(
        f'[[sources]]\nname = "f{f}"\nurl = "http://127.0.0.1:{port}/f{f}.xml"\n' for f in range(12)
    )
    found = {}
    for name, cores, every in (("at the end", {0}, 1000), ("helped", {0, 1}, 15), ("alone", {0}, 15)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, c=cores: c, raising=False)
        monkeypatch.setattr(digest.intake.pull, "GROUP_EVERY", every)
        rounds.clear()
        place = tmp_path / name.replace(" ", "-")
        place.mkdir()
        settings = settings_for(place, body)
        with open_store(settings.database.path, clock=lambda: moment) as store:
            assert all(r.ok and r.new == 5 for r in pull(settings, store))
            assert store.ungrouped() == []
            found[name] = {a.id: (a.source, a.title, a.regions, a.themes, a.story) for a in store.articles()}
        assert len(rounds) == (1 if every == 1000 else 4), name  # 15 articles: three sources a round
        assert threading.active_count() == 1
    assert found["helped"] == found["alone"] and len(found["helped"]) == 60
    assert {i: a[2:4] for i, a in found["helped"].items()} == {
        i: a[2:4] for i, a in found["at the end"].items()
    }
    # f2 and f3 tell the same five items, grouped in the first round and the second.
    story = {(a[0], a[1]): a[4] for a in found["helped"].values()}
    titles = {a[1] for a in found["helped"].values() if a[0] == "f2"}
    assert all(story["f2", t] is not None and story["f2", t] == story["f3", t] for t in titles)
    helpers = {p.name.rsplit("-", 1)[1] for p in linked_in.iterdir()} - {str(os.getpid())}
    assert helpers, "the helper linked some rounds in its own process"
