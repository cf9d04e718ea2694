"""Serving speed: requests/second and latency for /feed.atom, and the time to build every feed.

Fills a database with N synthetic articles (default 10,000: the seeds' posts repeated with
new titles and dates), groups them, then
1. times building every feed (site, regions, themes × Atom, RSS, JSON) from the store;
2. starts `digest serve` in its own process on 127.0.0.1 and loads /feed.atom (50 entries)
   from a second process with wrk (Debian's `wrk`), fetching it in full with gzip, and
   conditionally with If-None-Match (a 304), printing requests/s and p50/p99 latency.

    .venv/bin/python benchmarks/serve.py [--articles 10000] [--seconds 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digest.common.dates import utcnow  # noqa: E402
from digest.common.models import ParsedItem  # noqa: E402
from digest.config import parse_settings  # noqa: E402
from digest.grouping.classify import group_pending  # noqa: E402
from digest.intake.kinds.text import parse_text  # noqa: E402
from digest.intake.pull import normalise  # noqa: E402
from digest.publish.site import Site  # noqa: E402
from digest.store import open_store  # noqa: E402


def fill(db: Path, settings_text: str, folder: Path, count: int) -> None:
    settings = parse_settings(settings_text, origin="bench", base_dir=folder, env={})
    posts = [
        item
        for path in sorted((REPO / "seeds").glob("*.txt"))
        for item in parse_text(path.read_bytes(), "text/plain", path.as_uri())
    ]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = utcnow()
    articles = []
    for index in range(count):
        post = posts[index % len(posts)]
        item = ParsedItem(
            title=f"{post.title} ({index})",
            url=f"https://news.example.org/{index}",
            content_html=post.content_html,
            published=start + timedelta(hours=index),
        )
        articles.append(normalise(item, "bench", "https://news.example.org/", now))
    with open_store(db) as store:
        store.sync_sources(settings.sources)
        store.save_articles("bench", articles, now=now)
        group_pending(store, settings)


def build_all(settings_text: str, folder: Path, db: Path) -> tuple[float, int]:
    settings = parse_settings(settings_text, origin="bench", base_dir=folder, env={})
    site = Site(settings)
    with open_store(db) as store:
        started = time.perf_counter()
        built = sum(1 for _ in site.feeds(store))
        return time.perf_counter() - started, built


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wrk(url: str, seconds: int, headers: dict[str, str], connections: int) -> dict[str, float]:
    args = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout

    def millis(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not match:
            raise RuntimeError(out)
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50": millis("50"), "p99": millis("99")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("benchmarks/serve.py needs wrk (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        port = free_port()
        text = (
            f'[database]\npath = "bench.db"\n[site]\nbase_url = "http://127.0.0.1:{port}"\n'
            f'[web]\nport = {port}\n[[sources]]\nname = "bench"\nurl = "https://news.example.org/feed"\n'
        )
        (folder / "digest.toml").write_text(text)
        db = folder / "bench.db"
        started = time.perf_counter()
        fill(db, text, folder, args.articles)
        took = time.perf_counter() - started
        print(f"serve benchmark: {args.articles} articles stored and grouped in {took:.1f} s")
        builds = [build_all(text, folder, db) for _ in range(args.runs)]
        print(
            f"build every feed ({builds[0][1]} feeds): median {statistics.median(b[0] for b in builds):.3f} s"
        )

        server = subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(folder / "digest.toml"), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ},
        )
        try:
            url = f"http://127.0.0.1:{port}/feed.atom"
            for _ in range(100):
                try:
                    first = httpx.get(url, headers={"Accept-Encoding": "gzip"})
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            etag = first.headers["etag"]
            with httpx.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as response:
                packed = len(b"".join(response.iter_raw()))
            print(f"/feed.atom: {len(first.content):,} bytes, {packed:,} gzipped")
            cases = {
                "full body, gzip": {"Accept-Encoding": "gzip"},
                "If-None-Match (304)": {"Accept-Encoding": "gzip", "If-None-Match": etag},
            }
            # Throughput with 16 connections; latency with 1, so it is not mostly queueing.
            for label, headers in cases.items():
                for connections in (16, 1):
                    runs = [wrk(url, args.seconds, headers, connections) for _ in range(args.runs)]
                    rps, p50, p99 = (statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99"))
                    print(
                        f"{label:<20} {connections:>2} conn: {rps:>8,.0f} req/s"
                        f"  p50 {p50:.2f} ms  p99 {p99:.2f} ms  (median of {args.runs} x {args.seconds} s)"
                    )
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
