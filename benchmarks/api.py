"""The JSON API's latency at scale (issue 31): ``GET /api/v1/articles?limit=50`` and its
variations on a database of 100,000 articles (``--size``), through ``digest serve`` on
127.0.0.1, from outside.

The database is the one ``scale_db.py`` builds (realistic articles from 20 sources, grouped
as pulls group them; kept under /tmp/scaledb/ with ``--reuse``). A read token is made with
``digest tokens create``. Each request goes on a connection of its own with the token, the
requests taking turns round after round (so the machine's mood weighs on each alike); the
first round warms up and is not counted. Printed per request: p50, p90 and p99 (ms) over
``--samples`` rounds, and the answer's size; and the server's peak memory. ``/healthz`` is
the floor: what any request costs this server and client, whatever it asks.

    .venv/bin/python benchmarks/api.py [--size 100000] [--samples 200] [--reuse]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import scale_db
from scale_db import SCRATCH, Writer, config_text, digest_server, free_port, peak_rss, percentile

DIGEST = str(Path(sys.executable).with_name("digest"))
_ADDRESSES = iter(range(1, 2**24))


def token(config: Path) -> str:
    made = subprocess.run(
        [DIGEST, "--config", str(config), "tokens", "create", f"bench-{os.getpid()}", "--scope", "read"],
        cwd=config.parent, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return made.stdout.strip()


def get(port: int, path: str, secret: str) -> tuple[float, int, dict[str, object]]:
    """One request on a connection of its own: seconds, bytes, the decoded JSON body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {secret}"}
    if "q=" in path:  # a client of its own: the search rate limit (60 a minute) never answers
        n = next(_ADDRESSES)
        headers["X-Forwarded-For"] = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
    try:
        began = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        took = time.perf_counter() - began
    finally:
        conn.close()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
    return took, len(body), json.loads(body) if body.startswith(b"{") else {}


def deep_cursor(port: int, secret: str, pages: int) -> str:
    """The cursor of the page after ``pages`` pages of 50 (where page ``pages + 1`` starts)."""
    cursor = ""
    for _ in range(pages):
        _, _, body = get(port, f"/api/v1/articles?limit=50{cursor}", secret)
        cursor = f"&cursor={body['next']}"
    return cursor


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100_000, help="articles (100000)")
    parser.add_argument("--samples", type=int, default=200, help="counted rounds (200)")
    parser.add_argument("--per-day", type=int, default=1000, help="articles first seen a day")
    parser.add_argument("--group-every", type=int, default=1, help="days between groupings (1)")
    parser.add_argument("--reuse", action="store_true", help="keep the built database in /tmp/scaledb")
    args = parser.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    print(
        f"api: {os.cpu_count()} cores, Python {sys.version.split()[0]}, digest {scale_db.revision()}",
        flush=True,
    )
    site, _ = scale_db.prepare(args.size, args, Writer())
    try:
        port = free_port()
        config = site.folder / "web.toml"
        config.write_text(config_text(site.db.name, port))
        secret = token(config)
        with digest_server(config, port) as server:
            deep = deep_cursor(port, secret, 100)
            paths = {
                "/healthz (the floor)": "/healthz",
                "/api/v1/articles?limit=50": "/api/v1/articles?limit=50",
                "... page 101 (after 5,000, by cursor)": f"/api/v1/articles?limit=50{deep}",
                "... &region=europe": "/api/v1/articles?limit=50&region=europe",
                "... &region=oceania (a rare one)": "/api/v1/articles?limit=50&region=oceania",
                "... &source=wire-07": "/api/v1/articles?limit=50&source=wire-07",
                "... &q=laos": "/api/v1/articles?limit=50&q=laos",
                "/api/v1/articles/{id}": "",
            }
            _, _, first = get(port, "/api/v1/articles?limit=1", secret)
            paths["/api/v1/articles/{id}"] = f"/api/v1/articles/{first['items'][0]['id']}"  # type: ignore[index]
            times: dict[str, list[float]] = {name: [] for name in paths}
            sizes: dict[str, int] = {}
            names = list(paths)
            for round_ in range(args.samples + 1):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    took, size, _ = get(port, paths[name], secret)
                    sizes[name] = size
                    if round_:
                        times[name].append(took)
            peak = peak_rss(server.pid)
        print(f"\n{args.size:,} articles, {args.samples} rounds; server peak {peak / 2**20:.0f} MB")
        print(f"{'request':44} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'bytes':>9}")
        for name in names:
            values = times[name]
            print(
                f"{name:44} {statistics.median(values) * 1000:8.1f} {percentile(values, 90) * 1000:8.1f}"
                f" {percentile(values, 99) * 1000:8.1f} {sizes[name]:9,}"
            )
    finally:
        shutil.rmtree(site.folder, ignore_errors=True)
        if not args.reuse:
            for built in SCRATCH.glob(
                scale_db.built_path(args.size, args.per_day, args.group_every, False).stem + ".*"
            ):
                built.unlink()


if __name__ == "__main__":
    main()
