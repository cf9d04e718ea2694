"""Many small feeds (issue 30): the first pull of 1,000 feeds of 20 items each, and the second
(every feed answering 304), by `digest pull` and by lemon24/reader's `update --workers 16`,
each in a fresh process timed from outside, in turn, medians of ``--runs``, with peak memory.

The feeds are distinct RSS 2.0 files made from the seeds' titles and paragraphs, served on
127.0.0.1 by ``--servers`` (50) HTTP servers of one process, each on a port of its own and
answering If-Modified-Since: as many origins as a real list of feeds has hosts, so that the
politeness rule (at most ``[fetch] per_host`` requests at once to one host) holds as it
would. reader is installed, pinned, in a throwaway venv (kept in the temp folder between
runs of this script). digest pulls with its defaults, grouping included (reader does none).

    .venv/bin/python benchmarks/many_feeds.py [--feeds 1000] [--items 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import email.utils
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]

import e2e  # noqa: E402  (the timer, the seeds' text)

READER = "reader[cli]==3.26"
READER_VENV = Path(tempfile.gettempdir()) / "digest-bench-reader-venv"
# Serves a folder on many ports of 127.0.0.1 at once (one origin per port), with Last-Modified.
SERVERS = """
import functools, sys, threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
folder, count = sys.argv[1], int(sys.argv[2])
class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass
handler = functools.partial(Quiet, directory=folder)
servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(count)]
for server in servers:
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
print(" ".join(str(s.server_address[1]) for s in servers), flush=True)
sys.stdin.read()
"""
ADD_FEEDS = """
import sys
from reader import make_reader
reader = make_reader(sys.argv[1])
for url in sys.stdin.read().split():
    reader.add_feed(url)
reader.close()
"""


def make_feeds(folder: Path, feeds: int, items: int) -> None:
    """``feeds`` RSS files of ``items`` distinct items (~1.5 KB of seeds' paragraphs each)."""
    rng = random.Random(11)
    titles, paragraphs = e2e.seed_text()
    start = datetime(2026, 11, 20, 12, tzinfo=UTC)
    for f in range(feeds):
        out = []
        for n in range(items):
            summary = "".join(f"<p>{escape(p)}</p>" for p in rng.sample(paragraphs, 3))[:1500]
            when = email.utils.format_datetime(start - timedelta(minutes=37 * n + f))
            link = f"https://feed{f}.example.org/{n}"
            out.append(
                f"<item><title>{escape(rng.choice(titles))} ({f}.{n})</title><link>{link}</link>"
                f"<guid>{link}</guid><pubDate>{when}</pubDate><description>{escape(summary)}</description></item>"
            )
        (folder / f"f{f}.xml").write_text(
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>Feed {f}</title><link>https://feed{f}.example.org/</link><description>bench</description>"
            + "".join(out)
            + "</channel></rss>",
            encoding="utf-8",
        )


def reader_python() -> Path:
    python = READER_VENV / "bin" / "python"
    if not python.exists():
        venv.create(READER_VENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", READER, "sgmllib3k"], check=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--servers", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=16, help="reader's --workers")
    parser.add_argument("--no-reader", action="store_true", help="digest alone")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="many-feeds-"))
    folder = work / "feeds"
    folder.mkdir()
    make_feeds(folder, args.feeds, args.items)
    server = subprocess.Popen(
        [e2e.PYTHON, "-c", SERVERS, str(folder), str(args.servers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    ports = server.stdout.readline().split()
    urls = [f"http://127.0.0.1:{ports[f % len(ports)]}/f{f}.xml" for f in range(args.feeds)]
    python = None if args.no_reader else reader_python()
    figures: dict[str, list[tuple[float, int]]] = {}
    try:
        for run in range(args.runs):
            place = work / f"run{run}"
            place.mkdir()
            sources = "".join(f'[[sources]]\nname = "f{f}"\nurl = "{url}"\n' for f, url in enumerate(urls))
            config = e2e.config(place, f"[fetch]\nallow_private = true\n{sources}")
            command = [e2e.DIGEST, "--config", str(config), "pull"]
            for label in ("first", "second"):
                figures.setdefault(f"digest {label}", []).append(e2e.timed(command, place))
            if python is not None:
                db = str(place / "reader.sqlite")
                subprocess.run(
                    [str(python), "-c", ADD_FEEDS, db], input=" ".join(urls), text=True, check=True
                )
                update = [str(python), "-m", "reader", "--db", db, "update", "--workers", str(args.workers)]
                for label in ("first", "second"):
                    figures.setdefault(f"reader {label}", []).append(e2e.timed(update, place))
            shutil.rmtree(place)
    finally:
        server.terminate()
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.feeds} feeds of {args.items} items on {args.servers} origins, medians of {args.runs} runs")
    print(f"{'':16} {'wall s':>8} {'peak MB':>8}  runs (s)")
    for label, runs in figures.items():
        wall = statistics.median(r[0] for r in runs)
        peak = max(r[1] for r in runs) / 1e6
        print(f"{label:16} {wall:8.2f} {peak:8.0f}  {' '.join(f'{r[0]:.2f}' for r in runs)}")
    for label in ("first", "second"):
        ours, theirs = figures[f"digest {label}"], figures.get(f"reader {label}")
        if theirs:
            ratio = statistics.median(a[0] / b[0] for a, b in zip(ours, theirs, strict=True))
            print(f"{label} pull: digest / reader = {ratio:.2f} (median of the pairs' ratios)")


if __name__ == "__main__":
    main()
