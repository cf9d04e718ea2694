"""Ingestion throughput, end to end: fetch from a local HTTP server, parse, normalise, store.

Prints articles/second (median of several runs) and peak memory for a 5,000-item RSS feed
and for the bundled seeds, with the fast feed path on and with feedparser only, and the
ratio between the two, all measured in the same run; then the same pulls followed by
grouping (as `digest pull` does). Each row runs in its own process so peak memory is its own.

    .venv/bin/python benchmarks/ingest.py [--runs 5] [--items 5000]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digest.config import parse_settings  # noqa: E402
from digest.intake.pull import pull  # noqa: E402
from digest.store import open_store  # noqa: E402

WORDS = [
    "ministers",
    "agreed",
    "cooperation",
    "summit",
    "trade",
    "railway",
    "energy",
    "delegation",
    "talks",
    "partnership",
    "security",
    "development",
    "investment",
    "friendship",
    "river",
    "commission",
    "border",
    "exchange",
]


def make_feed(items: int) -> bytes:
    """A WordPress-like RSS 2.0 feed: titles, links, GUIDs, dates, authors, HTML content."""
    parts = []
    for i in range(items):
        words = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(8))
        body = "".join(
            f"<p>Paragraph {p} of item {i}: {words} <a href='https://news.example.org/tag/{p}'>{p}</a>.</p>"
            for p in range(6)
        )
        day = 1 + i % 28
        parts.append(
            f"<item><title>Item {i}: {words}</title>"
            f"<link>https://news.example.org/2026/11/{day:02d}/item-{i}/</link>"
            f'<guid isPermaLink="false">https://news.example.org/?p={i}</guid>'
            f"<pubDate>Tue, {day:02d} Nov 2026 10:{i % 60:02d}:00 +0000</pubDate>"
            f"<dc:creator><![CDATA[Writer {i % 7}]]></dc:creator>"
            f"<category><![CDATA[News]]></category>"
            f"<description><![CDATA[<p>{words}</p>]]></description>"
            f"<content:encoded><![CDATA[{body}]]></content:encoded></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Bench</title>'
        "<link>https://news.example.org/</link><description>bench</description>"
        + "".join(parts)
        + "</channel></rss>"
    ).encode()


def serve(body: bytes) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/feed.xml"


def child(case: str, parser: str, group: bool, runs: int, items: int) -> None:
    """One process: ``runs`` pulls into fresh databases; prints JSON timings and peak RSS."""
    httpd = None
    if case == "rss":
        httpd, url = serve(make_feed(items))
        kind = "feed"
    else:
        url, kind = str(REPO / "seeds"), "text"
    timings, count = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            text = (
                f'[database]\npath = "run{run}.db"\n[fetch]\nfast_parser = {str(parser == "fast").lower()}\n'
                f'[[sources]]\nname = "bench"\nurl = "{url}"\nkind = "{kind}"\n'
            )
            settings = parse_settings(text, origin="bench", base_dir=Path(tmp), env={})
            with open_store(settings.database.path) as store:
                started = time.perf_counter()
                [report] = pull(settings, store, group=group)
                timings.append(time.perf_counter() - started)
                assert report.ok, report.error
                count = store.count_articles()
    if httpd:
        httpd.shutdown()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"timings": timings, "articles": count, "peak_mib": peak_kib / 1024}))


def measure(case: str, parser: str, group: bool, runs: int, items: int) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            case,
            parser,
            str(group),
            "--runs",
            str(runs),
            "--items",
            str(items),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    median = statistics.median(data["timings"])
    return {
        "articles": data["articles"],
        "median_s": median,
        "per_s": data["articles"] / median,
        "best_per_s": data["articles"] / min(data["timings"]),
        "peak_mib": data["peak_mib"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--child", nargs=3, metavar=("CASE", "PARSER", "GROUP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2] == "True", args.runs, args.items)
        return
    print(f"ingest benchmark: {args.runs} runs each, median shown (2-core machine: expect noise)")
    header = ("case", "parser", "articles", "median s", "art/s", "best art/s", "peak MiB")
    print("{:<22} {:<11} {:>8} {:>9} {:>9} {:>11} {:>9}".format(*header))
    results = {}
    plan = [("rss", "fast", False), ("rss", "feedparser", False), ("rss", "fast", True)]
    plan += [("seeds", "fast", False), ("seeds", "fast", True)]
    for case, mode, group in plan:
        r = measure(case, mode, group, args.runs, args.items)
        results[(case, mode, group)] = r
        label = (f"RSS {args.items} items" if case == "rss" else "seeds (2 dumps)") + (
            " +group" if group else ""
        )
        print(
            f"{label:<22} {mode:<11} {r['articles']:>8.0f} {r['median_s']:>9.3f} {r['per_s']:>9.0f}"
            f" {r['best_per_s']:>11.0f} {r['peak_mib']:>9.1f}"
        )
    ratio = results[("rss", "fast", False)]["per_s"] / results[("rss", "feedparser", False)]["per_s"]
    print(f"RSS fetch -> store, fast path vs feedparser only: {ratio:.2f}x")
    print("(+group: the same pull followed by grouping: regions, themes, stories)")


if __name__ == "__main__":
    main()
