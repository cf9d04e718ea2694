"""Cost against database size (issue 30): the same requests and commands on databases of
10,000 and 100,000 articles (300,000 with ``--sizes``), side by side, with the growth factor
(largest size / smallest) in the last column.

1. Builds each database through the store, as pulls would have filled it: articles of
   realistic text (each a recombination of the seeds' sentences, and a few of the shared
   corpora's, so every title and summary differs; summaries of 5-7 KB), from 20 sources,
   first seen over the last N/1,000 days (``--per-day``), saved a source at a time and
   grouped (regions, themes, stories) with digest's own ``group_pending`` after each day
   (``--group-every`` days: grouping's cost grows with the database; by the growth up to
   100,000, a 300,000-article build grouped daily would take some 45 minutes), as
   ``digest pull`` does. Prints the build
   time, the file size, how many articles the searches and regions below match, the bytes
   per article, and those bytes split by table (SQLite's ``dbstat``: indexes counted with
   their table, the search index's shadow tables as one).
2. On a copy of each database, measures from outside:
   - every page and feed in ``PATHS`` uncached, through ``digest serve`` on 127.0.0.1: each
     round bumps the ``changes`` counter from another connection and waits out the cache's
     RECHECK, so the next request of each path renders afresh; p50 and p99 over
     ``--samples`` rounds (searches each from a client address of their own, given in
     X-Forwarded-For, so the search rate limit never answers instead), each request on a
     connection of its own; ``/feed.atom`` from the cache; ``/`` from the cache as the
     second and third request on a kept-alive connection (as browsers and feed readers
     ask); and every server's peak memory. Every size is served at once and asked in turn,
     so that the machine's other work weighs on each alike;
   - ``digest articles --search laos --limit 20`` and ``--region europe --limit 20``
     (whole processes, median of ``--runs``, sizes in turn);
   - ``digest pull --source wire-01`` of 500 new items (5-7 KB each, an RSS file served on
     127.0.0.1), and ``digest pull`` of 25 new items from each of the 20 sources, each run
     on a fresh copy: wall time and peak memory;
   - with ``--subscribers N`` (at the smallest size only): ``digest send --dry-run`` to N
     subscribers imported from CSV, with a spread of regions and themes.

Built databases are kept under /tmp/scaledb/ with ``--reuse``, named by size, articles a
day, grouping interval and a hash of the schema module (a schema change builds afresh).
A 100,000-article database is about 2 GB; each size needs room for three copies while it
is measured (two without ``--reuse``). ``--quick`` (2,000 and 10,000 articles, 6 rounds, 1 run) takes about a minute.

    .venv/bin/python benchmarks/scale_db.py [--sizes 10000,100000] [--reuse] [--quick]
        [--samples 20] [--runs 3] [--subscribers 100000] [--per-day 1000] [--group-every 1]
"""

from __future__ import annotations

import argparse
import hashlib
import html
import http.client
import json
import math
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digest.common import query  # noqa: E402
from digest.common.dates import utcnow  # noqa: E402
from digest.common.models import Article, ParsedItem  # noqa: E402
from digest.config import parse_settings  # noqa: E402
from digest.grouping.classify import Reader, group_pending  # noqa: E402
from digest.intake.kinds.text import parse_text  # noqa: E402
from digest.intake.pull import normalise  # noqa: E402
from digest.intake.sync import sync_sources  # noqa: E402
from digest.store import open_store  # noqa: E402
from digest.store.articles import fts5  # noqa: E402
from digest.web.cache import RECHECK  # noqa: E402

PYTHON = sys.executable
DIGEST = str(Path(sys.executable).parent / "digest")
SCRATCH = Path(tempfile.gettempdir()) / "scaledb"  # /tmp/scaledb unless TMPDIR says otherwise
CORPORA = REPO.parent / "shared" / "corpora" / "rss2email"
SOURCES = [f"wire-{n:02d}" for n in range(1, 21)]
PULLED = SOURCES[0]  # the source the pull benchmark feeds 500 new items
PULL_ITEMS = 500
PATHS = [
    "/",
    "/feed.atom",
    "/regions/europe/",
    "/regions/europe/feed.atom",
    "/regions/oceania/",  # a region few articles are about: fewer than a page's worth
    "/search?q=laos",
    "/search?q=china",
]
CLI = {
    "articles --search laos --limit 20": ["articles", "--search", "laos", "--limit", "20"],
    "articles --region europe --limit 20": ["articles", "--region", "europe", "--limit", "20"],
}
REGIONS = ["europe", "east-asia", "southeast-asia", "south-asia", "middle-east", "africa",
           "latin-america", "north-america", "oceania", "central-asia", "global"]  # fmt: skip
THEMES = ["summits-diplomacy", "party-relations", "trade-investment", "security-conflict",
          "history-sovereignty", "development-infrastructure", "energy-climate",
          "global-governance", "opinion-analysis", "people-culture"]  # fmt: skip

# Runs a command; prints its wall time, the peak memory of that child alone, and its output.
TIMED = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
took = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps([took, peak, done.returncode, done.stdout[-4000:], done.stderr[-4000:]]))
"""


# --- text ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    """A real post: its title and its sentences in order."""

    title: str
    sentences: tuple[str, ...]


_SENTENCE_END = re.compile(r"(?<=[.!?”\"])\s+(?=[A-Z“\"‘'(0-9])")


def _sentences(paragraphs: list[str]) -> tuple[str, ...]:
    found = []
    for paragraph in paragraphs:
        text = " ".join(re.sub(r"<[^>]+>", " ", html.unescape(paragraph)).split())
        if text.startswith("Continue reading"):
            continue
        found += [s for s in _SENTENCE_END.split(text) if 40 <= len(s) <= 700 and len(s.split()) >= 6]
    return tuple(found)


def seed_posts() -> list[Post]:
    """The bundled seeds, read as digest reads them (``parse_text``)."""
    posts = []
    for path in sorted((REPO / "seeds").glob("*.txt")):
        for item in parse_text(path.read_bytes(), "text/plain", path.as_uri()):
            sentences = _sentences(re.findall(r"<p>(.*?)</p>", item.content_html, re.S))
            if len(sentences) >= 3:
                posts.append(Post(item.title, sentences))
    return posts


def corpus_posts() -> list[Post]:
    """Real-world feed entries of the shared corpora (rss2email's snapshots), if present."""
    if not CORPORA.is_dir():
        return []
    import feedparser

    posts = []
    for path in sorted(CORPORA.glob("*/feed.*")):
        for entry in feedparser.parse(path.read_bytes()).entries:
            body = " ".join(c.value for c in entry.get("content", [])) or entry.get("summary", "")
            sentences = _sentences(re.split(r"</p>|<br\s*/?>|\n\s*\n", body))
            if len(sentences) >= 3 and entry.get("title"):
                posts.append(Post(" ".join(entry.title.split()), sentences))
    return posts


def _names(reader: Reader, sentence: str) -> bool:
    """Whether a sentence names a country or a person (what ties articles into stories)."""
    return any(p.kind in ("country", "person") for p in reader.read((sentence, "")).places)


def _span(rng: random.Random, sentence: str, count: int) -> list[str]:
    words = sentence.split()
    start = rng.randrange(max(1, len(words) - count + 1))
    return words[start : start + count]


def _thirds(rng: random.Random, pool: list[str]) -> str:
    """A sentence of three thirds of three sentences."""
    words: list[str] = []
    for third in range(3):
        found = rng.choice(pool).split()
        cut = len(found) // 3
        words += found[third * cut : (third + 1) * cut] if third < 2 else found[2 * cut :]
    return " ".join(words)


class Writer:
    """Distinct articles of real sentences, the same for the same number on every run.

    The seeds hold some 800 sentences, all on one site's subjects: leads made of them that
    name countries or people tie nearly every article to the others into one story (a
    cosine over 0.2 and a shared place is easy with so few words). So titles and most
    leads are made of the sentences that name none, cut in thirds and joined again; one
    lead in seven (``PLACED_LEADS``) names places; the body, where places count by how
    often, is whole sentences. Every third article, more or less, shares its title and
    lead with its neighbours (``EVENT``): one event, reported by several sources."""

    EVENT = 3  # articles numbered n // EVENT alike share an event...
    IN_EVENT = 0.6  # ...with this chance each
    PLACED_LEADS = 0.15

    def __init__(self) -> None:
        self.seeds = seed_posts()
        self.others = corpus_posts()
        self.pool = [s for p in self.seeds for s in p.sentences]
        reader = Reader(parse_settings("", origin="scale_db", base_dir=REPO, env={}))
        self.plain = [s for s in self.pool if not _names(reader, s)]

    def item(self, n: int, source: str, when: datetime) -> ParsedItem:
        """Article ``n``: a title of 6-11 words of a sentence; a lead of two sentences made
        of thirds of others; then one post's sentences in order from somewhere in it (so its
        places and themes hold together), and others' until it has 5-7 KB of text, each
        sentence left out one time in six."""
        own = random.Random(n)
        rng = own if own.random() >= self.IN_EVENT else random.Random(-1 - n // self.EVENT)
        words = _span(rng, rng.choice(self.plain), rng.randint(6, 11))
        if rng is not own and own.random() < 0.5:
            words = words[:-1]  # the same event, told a little differently
        title = " ".join([words[0][:1].upper() + words[0][1:], *words[1:]]).rstrip(".,;:")
        pool = self.pool if rng.random() < self.PLACED_LEADS else self.plain
        chosen = [_thirds(rng, pool), _thirds(rng, pool)]
        size = len(chosen[0]) + len(chosen[1])
        posts = self.others if self.others and rng.random() < 0.1 else self.seeds
        target = own.randint(5000, 7000)
        for post in [rng.choice(posts), *(own.choice(posts) for _ in range(8))]:
            at = own.randrange(len(post.sentences))
            for k in range(len(post.sentences)):
                if size < target and own.random() >= 1 / 6:
                    chosen.append(post.sentences[(at + k) % len(post.sentences)])
                    size += len(chosen[-1]) + 1
        paragraphs = [" ".join(chosen[:2])]
        chosen = chosen[2:]
        while chosen:
            cut = own.randint(2, 5)
            paragraphs.append(" ".join(chosen[:cut]))
            chosen = chosen[cut:]
        return ParsedItem(
            title=title,
            url=f"https://{source}.example.org/{when:%Y/%m/%d}/{n}",
            content_html="".join(f"<p>{html.escape(p)}</p>" for p in paragraphs),
            author=own.choice([None, "Staff", "Correspondent", "Wire desk"]),
            published=when - timedelta(minutes=own.randrange(240)),
        )

    def article(self, n: int, source: str, when: datetime) -> Article:
        return normalise(self.item(n, source, when), source, f"https://{source}.example.org/", when)

    def rss(self, first: int, count: int, source: str, now: datetime) -> bytes:
        """RSS 2.0 of ``count`` new items, numbered from ``first``, published over the last hours."""
        out = []
        for n in range(first, first + count):
            item = self.item(n, source, now - timedelta(minutes=n - first))
            assert item.published is not None
            out.append(
                f"<item><title>{html.escape(item.title)}</title><link>{item.url}</link>"
                f"<guid>{item.url}</guid><pubDate>{item.published:%a, %d %b %Y %H:%M:%S +0000}</pubDate>"
                f"<description>{html.escape(item.content_html)}</description></item>"
            )
        return (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{source}</title><link>https://{source}.example.org/</link><description>bench</description>"
            + "".join(out)
            + "</channel></rss>"
        ).encode()


# --- building --------------------------------------------------------------------------------


def config_text(database: str, web_port: int = 8080, feed_port: int = 9, feeds: str = "") -> str:
    """A digest.toml: the database, the web server, and the 20 sources (fetched from
    ``feed_port`` on 127.0.0.1, under ``feeds``; only the pull benchmark fetches them)."""
    sources = "".join(
        f'[[sources]]\nname = "{name}"\nurl = "http://127.0.0.1:{feed_port}/{feeds}{name}.xml"\nkind = "feed"\n'
        for name in SOURCES
    )
    return (
        f'[site]\nbase_url = "http://127.0.0.1:{web_port}"\n[database]\npath = "{database}"\n'
        f'[outbox]\npath = "outbox"\n[web]\nhost = "127.0.0.1"\nport = {web_port}\n{sources}'
    )


def built_path(size: int, per_day: int, group_every: int, kept: bool) -> Path:
    """Where the database is built: a name of its own for one run, so that one never
    touches those kept for ``--reuse``."""
    schema = hashlib.sha256((REPO / "digest" / "store" / "schema.py").read_bytes()).hexdigest()[:10]
    every = "" if group_every == 1 else f"-grouped-every-{group_every}"
    once = "" if kept else f"-once-{os.getpid()}"
    return SCRATCH / f"articles-{size}-{per_day}a-day{every}-{schema}{once}.db"


@contextmanager
def connection(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection, one transaction, closed at the end. Closed for certain: one left open
    in this process would keep the file's WAL index under its old name after a rename,
    and this process's writes would then go unseen by digest's."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def build(size: int, per_day: int, group_every: int, writer: Writer, path: Path) -> dict[str, float]:
    """Fill a new database at ``path`` with ``size`` articles, ``per_day`` a day up to now,
    grouped after every ``group_every`` days; the seconds spent making, saving and grouping."""
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    settings = parse_settings(config_text(str(path)), origin="scale_db", base_dir=path.parent, env={})
    days = max(1, math.ceil(size / per_day))
    end = utcnow().replace(minute=0, second=0, microsecond=0)
    spent = {"make": 0.0, "save": 0.0, "group": 0.0}
    done = 0
    began = time.perf_counter()
    with open_store(path) as store:
        sync_sources(store, settings)
        for day in range(days):
            count = min(per_day, size - done)
            start = end - timedelta(days=days - day)
            for k, source in enumerate(SOURCES):  # neighbours by number, from different sources
                when = start + timedelta(seconds=k * 86400 / len(SOURCES))
                t0 = time.perf_counter()
                batch = [writer.article(n, source, when) for n in range(done + k, done + count, len(SOURCES))]
                t1 = time.perf_counter()
                store.save_articles(source, batch, now=when)
                spent["make"] += t1 - t0
                spent["save"] += time.perf_counter() - t1
            done += count
            if (day + 1) % group_every == 0 or day + 1 == days:
                t0 = time.perf_counter()
                group_pending(store, settings)
                spent["group"] += time.perf_counter() - t0
            if (day + 1) % 10 == 0 or day + 1 == days:
                took = time.perf_counter() - began
                print(f"  built {done:,}/{size:,} articles, {took:.0f} s", file=sys.stderr, flush=True)
    with connection(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return spent


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes of each table, its indexes included (the search index's shadow tables as one)."""
    with connection(path) as conn:
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master"))
        found: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            table = "articles_fts" if table.startswith("articles_fts") else table
            found[table] = found.get(table, 0) + int(size)
    return found


def shape(path: Path) -> str:
    """How the built database's articles are grouped into stories."""
    with connection(path) as conn:
        try:
            stories, largest = conn.execute(
                "SELECT count(*), max(n) FROM (SELECT count(*) AS n FROM articles"
                " WHERE story IS NOT NULL GROUP BY story)"
            ).fetchone()
            in_story = conn.execute("SELECT count(*) FROM articles WHERE story IS NOT NULL").fetchone()[0]
        except sqlite3.Error as exc:
            return f"(shape unknown: {exc})"
    return f"{stories:,} stories (largest {largest or 0}, {in_story:,} articles in them)"


def counts(path: Path) -> dict[str, int]:
    """How many articles the searches match (as digest searches: "laos" is the token "lao")
    and how many are about the regions asked for."""
    with connection(path) as conn:
        found = {
            f"articles matching {word}": conn.execute(
                "SELECT count(*) FROM articles_fts WHERE articles_fts MATCH ?", [fts5(query.parse(word))]
            ).fetchone()[0]
            for word in ("laos", "china")
        }
        for region in ("europe", "oceania"):
            found[f"articles about {region}"] = conn.execute(
                "SELECT count(*) FROM articles WHERE EXISTS"
                " (SELECT 1 FROM json_each(regions) WHERE value = ?)",
                [region],
            ).fetchone()[0]
    return found


def database(
    size: int, per_day: int, group_every: int, writer: Writer, reuse: bool
) -> tuple[Path, dict[str, float], bool]:
    """The built database of ``size`` articles, what its build took, and whether it was reused."""
    path = built_path(size, per_day, group_every, reuse)
    marker = path.with_suffix(".done")
    if reuse and marker.exists() and path.exists():
        return path, json.loads(marker.read_text()), True
    marker.unlink(missing_ok=True)
    began = time.perf_counter()
    spent = build(size, per_day, group_every, writer, path)
    spent["total"] = time.perf_counter() - began
    marker.write_text(json.dumps(spent))
    return path, spent, False


def copy_db(source: Path, target: Path) -> None:
    """A copy of a database no process has open (its WAL checkpointed into it), written
    out to the disk: otherwise the first commit's fsync pays for writing the whole copy."""
    for leftover in target.parent.glob(target.name + "*"):
        leftover.unlink()
    shutil.copyfile(source, target)
    with target.open("rb+") as copy:
        os.fsync(copy.fileno())


# --- measuring -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(command: list[str], cwd: Path) -> tuple[float, int, str]:
    """Wall seconds, peak memory (bytes) and output of one run of ``command``."""
    done = subprocess.run(
        [PYTHON, "-c", TIMED, *command], cwd=cwd, capture_output=True, text=True, check=True
    )
    took, peak, code, out, err = json.loads(done.stdout)
    if code:
        raise SystemExit(f"{' '.join(command)} failed ({code}): {err.strip()[-600:]}")
    return float(took), int(peak), out


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def feed_server(folder: Path) -> Iterator[int]:
    """Serve ``folder`` over HTTP on 127.0.0.1 from a thread; the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def digest_server(config: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``digest serve`` on 127.0.0.1:``port``, ready."""
    server = subprocess.Popen(
        [DIGEST, "--config", str(config), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=config.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(600):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5):
                    break
            except OSError:
                if server.poll() is not None:
                    assert server.stderr is not None
                    raise SystemExit(f"digest serve ended: {server.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.1)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)


def peak_rss(pid: int) -> int:
    """A live process's peak resident memory (bytes), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def bump(db: Path) -> None:
    """Move the change counter the page cache watches, as a pull's writes would."""
    with connection(db) as conn:
        conn.execute("UPDATE changes SET counter = counter + 1 WHERE id = 1")


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


Figures = dict[str, float]


@dataclass(frozen=True)
class Site:
    """One size under measurement: its folder and its working copy of the database."""

    size: int
    folder: Path
    db: Path


class Client:
    """Timed GET requests to one ``digest serve`` (http.client: the client that costs the
    least per request), each on a connection of its own unless ``kept``: on a kept-alive
    connection, an answer that fits in one segment waits for this end's delayed ACK (40 ms)
    when the server sends its headers and body with Nagle's algorithm on; that is measured
    as a figure of its own, not mixed into the others."""

    addresses = iter(range(1, 2**24))

    def __init__(self, port: int) -> None:
        self.port = port
        self.kept = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str, *, kept: bool = False) -> float:
        headers = {"Accept-Encoding": "gzip"}
        if path.startswith("/search"):  # a client of its own: the rate limit never answers
            n = next(self.addresses)
            headers["X-Forwarded-For"] = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        conn = self.kept if kept else http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            began = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            took = time.perf_counter() - began
        finally:
            if not kept:
                conn.close()
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
        return took


def measure_web(sites: list[Site], samples: int) -> dict[int, Figures]:
    """Every path uncached, at every size in turn within each round (so that the machine's
    mood weighs on every size alike); /feed.atom cached; / cached on a kept-alive connection."""
    times: dict[int, dict[str, list[float]]] = {site.size: {path: [] for path in PATHS} for site in sites}
    cached: dict[int, list[float]] = {site.size: [] for site in sites}
    kept: dict[int, list[float]] = {site.size: [] for site in sites}
    figures: dict[int, Figures] = {site.size: {} for site in sites}
    with ExitStack() as stack:
        servers: dict[int, subprocess.Popen[bytes]] = {}
        clients: dict[int, Client] = {}
        for site in sites:
            port = free_port()
            config = site.folder / "web.toml"
            config.write_text(config_text(site.db.name, port))
            servers[site.size] = stack.enter_context(digest_server(config, port))
            clients[site.size] = Client(port)
        for round_ in range(samples + 1):  # the first round warms up and is not counted
            for site in sites:
                bump(site.db)
            time.sleep(RECHECK + 0.15)  # each cache notices at its next check and empties
            order = PATHS[round_ % len(PATHS) :] + PATHS[: round_ % len(PATHS)]
            turn = sites if round_ % 2 else sites[::-1]
            for path in order:
                for site in turn:
                    took = clients[site.size].get(path)
                    if round_:
                        times[site.size][path].append(took)
            for site in turn:
                for _ in range(3):
                    took = clients[site.size].get("/feed.atom")
                    if round_:
                        cached[site.size].append(took)
                for n in range(3):  # the first after a pause is answered at once: not counted
                    took = clients[site.size].get("/", kept=True)
                    if round_ and n:
                        kept[site.size].append(took)
        for site in sites:
            clients[site.size].kept.close()
            figures[site.size]["serve peak MB"] = peak_rss(servers[site.size].pid) / 2**20
    for site in sites:
        found = figures[site.size]
        for path, values in times[site.size].items():
            found[f"GET {path} p50 ms"] = statistics.median(values) * 1000
            found[f"GET {path} p99 ms"] = percentile(values, 99) * 1000
        found["GET /feed.atom cached p50 ms"] = statistics.median(cached[site.size]) * 1000
        found["GET / cached, kept-alive connection p50 ms"] = statistics.median(kept[site.size]) * 1000
    return figures


def measure_cli(sites: list[Site], runs: int) -> dict[int, Figures]:
    """Each command, at every size in turn, ``runs`` times."""
    results: dict[tuple[int, str], list[tuple[float, int, str]]] = {}
    for site in sites:
        (site.folder / "cli.toml").write_text(config_text(site.db.name))
    for _ in range(runs):
        for label, args in CLI.items():
            for site in sites:
                command = [DIGEST, "--config", str(site.folder / "cli.toml"), *args]
                results.setdefault((site.size, label), []).append(timed(command, site.folder))
    figures: dict[int, Figures] = {site.size: {} for site in sites}
    for (size, label), found in results.items():
        figures[size][f"{label} s"] = statistics.median(r[0] for r in found)
        figures[size][f"{label} MB"] = max(r[1] for r in found) / 2**20
    return figures


def measure_pull(sites: list[Site], runs: int, writer: Writer) -> dict[int, Figures]:
    """``digest pull`` of the same 500 new items at every size in turn, each on a fresh copy:
    all from one source (``--source``), and 25 from each of the 20 (a whole ``digest pull``)."""
    feeds = SCRATCH / "feeds"
    (feeds / "one").mkdir(parents=True, exist_ok=True)
    (feeds / "all").mkdir(exist_ok=True)
    now = utcnow()
    (feeds / "one" / f"{PULLED}.xml").write_bytes(writer.rss(10**9, PULL_ITEMS, PULLED, now))
    share = PULL_ITEMS // len(SOURCES)
    for k, name in enumerate(SOURCES):
        (feeds / "all" / f"{name}.xml").write_bytes(writer.rss(10**9 + 10**6 * (k + 1), share, name, now))
    kinds = {
        f"pull {PULL_ITEMS} new items, one source": ("one", ["--source", PULLED]),
        f"pull {PULL_ITEMS} new items, 20 sources": ("all", []),
    }
    results: dict[tuple[int, str], list[tuple[float, int]]] = {}
    try:
        with feed_server(feeds) as feed_port:
            for run in range(runs):
                for label, (folder, names) in kinds.items():
                    for site in sites if run % 2 else sites[::-1]:
                        config = site.folder / "pull.toml"
                        config.write_text(config_text("pull.db", feed_port=feed_port, feeds=f"{folder}/"))
                        copy_db(site.db, site.folder / "pull.db")
                        took, peak, out = timed(
                            [DIGEST, "--config", str(config), "pull", *names], site.folder
                        )
                        stored = sum(int(n) for n in re.findall(r"(\d+) new", out))
                        if stored != PULL_ITEMS:
                            raise SystemExit(
                                f"the pull stored {stored} new items, not {PULL_ITEMS}: {out.strip()}"
                            )
                        results.setdefault((site.size, label), []).append((took, peak))
                        for leftover in site.folder.glob("pull.db*"):
                            leftover.unlink()
    finally:
        shutil.rmtree(feeds, ignore_errors=True)
    figures: dict[int, Figures] = {site.size: {} for site in sites}
    for (size, label), found in results.items():
        figures[size][f"{label} s"] = statistics.median(r[0] for r in found)
        figures[size][f"{label} MB"] = max(r[1] for r in found) / 2**20
    return figures


def measure_send(folder: Path, db: Path, runs: int, subscribers: int) -> Figures:
    copy = folder / "send.db"
    copy_db(db, copy)
    config = folder / "send.toml"
    config.write_text(config_text(copy.name))
    rng = random.Random(30)
    rows = []
    for n in range(subscribers):
        regions = " ".join(rng.sample(REGIONS, rng.choice([0, 0, 1, 1, 1, 2])))
        themes = " ".join(rng.sample(THEMES, rng.choice([0, 0, 0, 1])))
        rows.append(f"reader{n}@example.org,active,{regions},{themes}\n")
    (folder / "people.csv").write_text("email,status,regions,themes\n" + "".join(rows))
    began = time.perf_counter()
    timed([DIGEST, "--config", str(config), "subscribers", "import", "people.csv"], folder)
    imported = time.perf_counter() - began
    results = [timed([DIGEST, "--config", str(config), "send", "--dry-run"], folder) for _ in range(runs)]
    said = results[0][2].strip().splitlines()
    print(f"  send --dry-run said: {said[-1] if said else '(nothing)'}", file=sys.stderr)
    for leftover in folder.glob("send.db*"):
        leftover.unlink()
    return {
        f"subscribers import {subscribers:,} s": imported,
        f"send --dry-run {subscribers:,} subscribers s": statistics.median(r[0] for r in results),
        f"send --dry-run {subscribers:,} subscribers MB": max(r[1] for r in results) / 2**20,
    }


# --- report ----------------------------------------------------------------------------------


def report(sizes: list[int], figures: dict[int, Figures]) -> None:
    labels = list(dict.fromkeys(label for size in sizes for label in figures[size]))
    width = max(len(label) for label in labels) + 2
    head = f"{'':<{width}}" + "".join(f"{size:>12,}" for size in sizes) + f"{'growth':>9}"
    print(head)
    print("-" * len(head))
    for label in labels:
        row = f"{label:<{width}}"
        for size in sizes:
            value = figures[size].get(label)
            places = (
                0 if value is not None and value >= 1000 else 1 if value is not None and value >= 10 else 2
            )
            row += f"{'—':>12}" if value is None else f"{value:>12,.{places}f}"
        first, last = figures[sizes[0]].get(label), figures[sizes[-1]].get(label)
        if first and last is not None and len(sizes) > 1:
            row += f"{last / first:>8.2f}x"
        print(row)


def revision() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


def prepare(size: int, args: argparse.Namespace, writer: Writer) -> tuple[Site, Figures]:
    """The database of ``size`` articles, built or reused, with a working copy; its figures."""
    path, spent, reused = database(size, args.per_day, args.group_every, writer, args.reuse)
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in spent.items() if k != "total")
    took = f"{'reused, ' if reused else ''}built in {spent['total']:.0f} s ({parts})"
    print(f"{size:,} articles: {took}; {path.stat().st_size / 2**20:,.0f} MB; {shape(path)}", flush=True)
    found: Figures = {"build s": spent["total"]}
    found["database MB"] = path.stat().st_size / 2**20
    found["bytes per article"] = path.stat().st_size / size
    found |= counts(path)
    tables = table_bytes(path)
    for table, held in sorted(tables.items(), key=lambda item: -item[1]):
        if held >= 0.005 * sum(tables.values()):
            found[f"  bytes/article: {table}"] = held / size
    folder = SCRATCH / f"run-{size}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    if args.reuse:
        copy_db(path, folder / "digest.db")
    else:  # built for this run alone: measured in place of a copy
        path.rename(folder / "digest.db")
    return Site(size, folder, folder / "digest.db"), found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=None, help="articles, comma-separated (10000,100000)")
    parser.add_argument("--samples", type=int, default=None, help="uncached rounds per path (20)")
    parser.add_argument("--runs", type=int, default=None, help="runs of each command (3)")
    parser.add_argument("--subscribers", type=int, default=0, help="send --dry-run to this many")
    parser.add_argument("--per-day", type=int, default=1000, help="articles first seen a day")
    parser.add_argument("--group-every", type=int, default=1, help="days between groupings (1)")
    parser.add_argument("--reuse", action="store_true", help="keep built databases in /tmp/scaledb")
    parser.add_argument("--quick", action="store_true", help="2,000 and 10,000 articles, few samples")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("2000,10000" if args.quick else "10000,100000")).split(",")]
    samples = args.samples or (6 if args.quick else 20)
    runs = args.runs or (1 if args.quick else 3)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(SCRATCH).free
    print(
        f"scale_db: {os.cpu_count()} cores, Python {sys.version.split()[0]}, digest {revision()};"
        f" {free / 2**30:.0f} GB free in {SCRATCH}; {samples} uncached rounds a path, medians of {runs} runs",
        flush=True,
    )
    writer = Writer()
    figures: dict[int, Figures] = {}
    sites: list[Site] = []
    try:
        for size in sorted(sizes):
            site, figures[size] = prepare(size, args, writer)
            sites.append(site)
        print("measuring every size in turn...", flush=True)
        for measured in (
            measure_web(sites, samples),
            measure_cli(sites, runs),
            measure_pull(sites, runs, writer),
        ):
            for size, found in measured.items():
                figures[size] |= found
        if args.subscribers:
            figures[sites[0].size] |= measure_send(sites[0].folder, sites[0].db, runs, args.subscribers)
    finally:
        for size in sizes:
            shutil.rmtree(SCRATCH / f"run-{size}", ignore_errors=True)
            if not args.reuse:
                for built in SCRATCH.glob(
                    built_path(size, args.per_day, args.group_every, False).stem + ".*"
                ):
                    built.unlink()
    print()
    report(sorted(sizes), figures)


if __name__ == "__main__":
    main()
