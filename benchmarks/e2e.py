"""Whole-process speed, as a user meets it: every figure is a fresh process, timed from the
outside, the median of several runs, with its peak memory. digest and what it is compared
with run in turn, and each ratio is the median of the ratios of those pairs.

1. `digest pull` of a 5,000-item RSS feed (distinct ~2 KB HTML summaries made from the
   seeds' paragraphs, items an hour apart) served over HTTP on 127.0.0.1, into an empty
   database: fetch, parse, sanitise, store, regions, themes, stories. Against feedparser
   alone parsing the same file in its own process. Also the pathological feed (5,000 items
   with the same paragraph), whose stories are all one.
2. Start-up: `digest --help`, `digest status`, `digest articles --limit 5`.
3. `digest send` of personalised digests to N subscribers through a pool of P connections,
   against the ceiling: the same number of identical messages of the same size blasted
   through P aiosmtplib connections. The sink (aiosmtpd, counting) runs in a process of its
   own.

    .venv/bin/python benchmarks/e2e.py [--runs 3] [--subscribers 10000] [--pool 8]
"""

from __future__ import annotations

import argparse
import email.utils
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DIGEST = str(Path(sys.executable).parent / "digest")

# Runs a command and prints its wall time and the peak memory of that child alone.
TIMED = """
import resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
took = time.perf_counter() - started
if done.returncode:
    sys.stderr.write(done.stderr.decode()[-2000:])
    sys.exit(done.returncode)
print(took, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""
FEEDPARSER = "import feedparser, sys; feedparser.parse(open(sys.argv[1], 'rb').read())"
SINK = """
import sys
from aiosmtpd.controller import Controller
class Count:
    n = size = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += 1
        Count.size += len(envelope.original_content)
        return "250 OK"
controller = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
for line in sys.stdin:  # each line asks for the count since the last one
    print(Count.n, Count.size, flush=True)
    Count.n = Count.size = 0
controller.stop()
"""
BLAST = """
import asyncio, sys, time
import aiosmtplib
port, count, pool, size = (int(a) for a in sys.argv[1:5])
head = b"From: digest@example.org\\r\\nTo: reader@example.org\\r\\nSubject: Ceiling\\r\\n\\r\\n"
line = b"x" * 76 + b"\\r\\n"  # SMTP lines stay under 1,000 bytes
body = head + line * max((size - len(head)) // len(line), 0)
async def connection(n):
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await client.connect()
    for _ in range(n):
        await client.sendmail("digest@example.org", ["reader@example.org"], body)
    await client.quit()
async def main():
    share = [count // pool + (1 if i < count % pool else 0) for i in range(pool)]
    await asyncio.gather(*(connection(n) for n in share))
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed_text() -> tuple[list[str], list[str]]:
    """The seeds' titles and paragraphs."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "seeds").glob("*.txt")))
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]
    paragraphs = [b for b in blocks if len(b) > 150]
    titles = [b for b in blocks if 20 < len(b) < 120 and not b.endswith(".")]
    return titles, paragraphs


def make_feed(items: int, *, same: bool = False) -> bytes:
    """RSS 2.0: ``items`` items an hour apart with ~2 KB HTML summaries from the seeds'
    paragraphs, distinct unless ``same``."""
    rng = random.Random(5)
    titles, paragraphs = seed_text()
    start = datetime(2026, 11, 20, 12, tzinfo=UTC)
    out = []
    for n in range(items):
        if same:
            chosen = [paragraphs[0]]
            title = titles[0]
        else:
            chosen = rng.sample(paragraphs, 4)
            title = f"{rng.choice(titles)} ({n})"
        summary = "".join(f"<p>{escape(p)}</p>" for p in chosen)[:2048]
        when = email.utils.format_datetime(start - timedelta(hours=n))
        out.append(
            f"<item><title>{escape(title)}</title><link>https://news.example.org/{n}</link>"
            f"<guid>https://news.example.org/{n}</guid><pubDate>{when}</pubDate>"
            f"<description>{escape(summary)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Bench</title>'
        "<link>https://news.example.org/</link><description>bench</description>"
        + "".join(out)
        + "</channel></rss>"
    ).encode()


def timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak memory (bytes) of one run of ``command`` in its own process."""
    done = subprocess.run(
        [PYTHON, "-c", TIMED, *command], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr}")
    took, peak = done.stdout.split()
    return float(took), int(peak)


Run = Callable[[], tuple[float, int]]


def median_of(runs: int, once: Run) -> tuple[float, int]:
    results = [once() for _ in range(runs)]
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


def paired(runs: int, ours: Run, theirs: Run) -> tuple[tuple[float, int], tuple[float, int], float]:
    """Both commands in turn, ``runs`` times, so that the machine's mood weighs on both alike:
    the median and peak of each, and the median of the ratios of each pair."""
    pairs = [(ours(), theirs()) for _ in range(runs)]
    first, second = [p[0] for p in pairs], [p[1] for p in pairs]
    ratio = statistics.median(a[0] / b[0] for a, b in pairs)
    return (
        (statistics.median(r[0] for r in first), max(r[1] for r in first)),
        (statistics.median(r[0] for r in second), max(r[1] for r in second)),
        ratio,
    )


def config(folder: Path, body: str) -> Path:
    path = folder / "digest.toml"
    path.write_text(f'[database]\npath = "digest.db"\n[outbox]\npath = "out"\n{body}')
    return path


def serve(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return server, port
        time.sleep(0.05)
    raise SystemExit("the feed server did not start")


def pulls(work: Path, runs: int) -> tuple[dict[str, tuple[float, int]], dict[str, float]]:
    feeds = work / "feeds"
    feeds.mkdir()
    (feeds / "feed.xml").write_bytes(make_feed(5000))
    (feeds / "same.xml").write_bytes(make_feed(5000, same=True))
    server, port = serve(feeds)
    figures, ratios = {}, {}
    try:
        for name in ("feed", "same"):
            url = f"http://127.0.0.1:{port}/{name}.xml"

            def pull_once(name: str = name, url: str = url) -> tuple[float, int]:
                folder = Path(tempfile.mkdtemp(dir=work))
                path = config(folder, f'[[sources]]\nname = "{name}"\nurl = "{url}"\n')
                return timed([DIGEST, "--config", str(path), "pull"], folder)

            def parse_once(name: str = name) -> tuple[float, int]:
                return timed([PYTHON, "-c", FEEDPARSER, str(feeds / f"{name}.xml")], work)

            ours, theirs, ratios[f"pull:{name}"] = paired(runs, pull_once, parse_once)
            figures[f"pull:{name}"], figures[f"feedparser:{name}"] = ours, theirs
    finally:
        server.terminate()
    return figures, ratios


def starts(work: Path, runs: int) -> dict[str, tuple[float, int]]:
    folder = work / "start"
    folder.mkdir()
    path = config(folder, f'[[sources]]\nname = "seeds"\nurl = "{REPO / "seeds"}"\n')
    subprocess.run([DIGEST, "--config", str(path), "pull"], cwd=folder, capture_output=True, check=True)
    figures = {}
    for label, args in (
        ("--help", ["--help"]),
        ("status", ["--config", str(path), "status"]),
        ("articles --limit 5", ["--config", str(path), "articles", "--limit", "5"]),
    ):
        figures[f"start:{label}"] = median_of(runs, lambda args=args: timed([DIGEST, *args], folder))
    return figures


def sends(
    work: Path, runs: int, subscribers: int, pool: int
) -> tuple[dict[str, tuple[float, int]], dict[str, float]]:
    port = free_port()
    sink = subprocess.Popen(
        [PYTHON, "-c", SINK, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert sink.stdin is not None and sink.stdout is not None
    assert sink.stdout.readline().strip() == "ready"
    base = work / "send-base"
    base.mkdir()
    body = (
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\npool = {pool}\ntimeout = "60s"\n'
        f'[[sources]]\nname = "seeds"\nurl = "{REPO / "seeds"}"\n'
    )
    path = config(base, body)
    regions = ["", "europe", "southeast-asia", "africa", "east-asia"]
    rows = "".join(f"reader{n}@example.org,,{regions[n % len(regions)]},\n" for n in range(subscribers))
    (base / "people.csv").write_text("email,status,regions,themes\n" + rows)
    subprocess.run([DIGEST, "--config", str(path), "pull"], cwd=base, capture_output=True, check=True)
    subprocess.run(
        [DIGEST, "--config", str(path), "subscribers", "import", "people.csv"],
        cwd=base,
        capture_output=True,
        check=True,
    )
    figures: dict[str, tuple[float, int]] = {}
    size = 0
    try:

        def received() -> tuple[int, int]:
            assert sink.stdin is not None and sink.stdout is not None
            sink.stdin.write("\n")
            sink.stdin.flush()
            count, total = (int(n) for n in sink.stdout.readline().split())
            return count, total

        def send_once() -> tuple[float, int]:
            nonlocal size
            folder = Path(tempfile.mkdtemp(dir=work))
            shutil.copy(base / "digest.db", folder / "digest.db")
            figure = timed([DIGEST, "--config", str(config(folder, body)), "send"], folder)
            count, total = received()
            if count != subscribers:
                raise SystemExit(f"the sink received {count} messages of {subscribers}")
            size = total // count  # the blast sends messages of this mean size
            return figure

        def blast_once() -> tuple[float, int]:
            figure = timed([PYTHON, "-c", BLAST, str(port), str(subscribers), str(pool), str(size)], work)
            received()
            return figure

        received()
        figures["send"], figures["blast"], ratio = paired(runs, send_once, blast_once)
    finally:
        sink.stdin.close()
        sink.wait(timeout=10)
    # A rate is the inverse of a time: digest's share of the ceiling is blast time / send time.
    return figures, {"send": 1 / ratio}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--only", choices=("pull", "start", "send"), default=None)
    args = parser.parse_args()
    # Byte-compiled first, as an installed package is (this machine's environment may set
    # PYTHONDONTWRITEBYTECODE, which would make every start compile digest afresh).
    where = subprocess.run(
        [PYTHON, "-c", "import digest; print(digest.__path__[0])"], capture_output=True, text=True, check=True
    )
    subprocess.run([PYTHON, "-m", "compileall", "-q", where.stdout.strip()], check=True)
    work = Path(tempfile.mkdtemp(prefix="digest-e2e-"))
    env_note = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    print(f"whole processes, median of {args.runs} runs each ({env_note})")
    try:
        figures: dict[str, tuple[float, int]] = {}
        ratios: dict[str, float] = {}
        if args.only in (None, "pull"):
            found, ratios_found = pulls(work, args.runs)
            figures, ratios = figures | found, ratios | ratios_found
        if args.only in (None, "start"):
            figures |= starts(work, args.runs)
        if args.only in (None, "send"):
            found, ratios_found = sends(work, args.runs, args.subscribers, args.pool)
            figures, ratios = figures | found, ratios | ratios_found
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, (took, peak) in figures.items():
        print(f"  {name:<28} {took:8.3f} s   peak {peak / 2**20:7.1f} MB")
    if "pull:feed" in figures:
        for name in ("feed", "same"):
            ratio = ratios[f"pull:{name}"]
            print(f"digest pull / feedparser alone ({name}): {ratio:.2f}  (goal: at most 1.0)")
    if "send" in figures:
        rate = args.subscribers / figures["send"][0]
        ceiling = args.subscribers / figures["blast"][0]
        print(
            f"digest send: {rate:.0f} msg/s; ceiling {ceiling:.0f} msg/s with {args.pool} connections;"
            f" ratio {ratios['send']:.2f} (goal: at least 0.8); peak {figures['send'][1] / 2**20:.0f} MB"
            " (goal: under 150 MB)"
        )
    for name, (took, _) in figures.items():
        if name.startswith("start:"):
            print(f"{name[6:]}: {took:.3f} s (goal: under 0.25 s)")


if __name__ == "__main__":
    main()
