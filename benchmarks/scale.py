"""Scaling out on PostgreSQL: how the work divides between workers sharing one database.

1. Send: `digest send` of N personalised digests (20,000 by default, through a pool of 8
   connections each) to an aiosmtpd sink counting in a process of its own; with 1, 2 and 4
   `digest send` processes started together on one PostgreSQL database (one plans the
   digest, all send it, claiming deliveries in batches), and 1 process on SQLite. Each
   figure: the wall time from the start until the last process ends, messages per second,
   and the ratio to one worker on PostgreSQL. Twice: with the sink answering at once (on
   this machine the sink and the senders then share its cores: the ceiling is CPU), and
   with the sink taking ``--latency`` ms (100) per message, as a relay across a network
   does, for ``--slow-subscribers`` (4,000): the ceiling is then connections / latency,
   which workers multiply, until the sink's own CPU caps them again.
2. Pull: 200 local feeds (100 items each, served over HTTP on 127.0.0.1) pulled by 1 and
   2 `digest run` workers until every source has been fetched once.

The PostgreSQL server is a throwaway one in a temporary folder (``tests/pgcluster.py``),
durability off, as the tests use. Medians of ``--runs`` runs.

    .venv/bin/python benchmarks/scale.py [--runs 3] [--subscribers 20000] [--feeds 200]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import e2e  # noqa: E402  (the sink, the feed maker and the server live there)
import psycopg  # noqa: E402

from tests import pgcluster  # noqa: E402

DIGEST = e2e.DIGEST


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}


def _config(folder: Path, database: str, body: str) -> Path:
    path = folder / "digest.toml"
    key = f'url = "{database}"' if database.startswith("postgresql:") else f'path = "{database}"'
    path.write_text(f'[database]\n{key}\n[outbox]\npath = "out"\n{body}')
    return path


def _check(*command: str, cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)}: {done.stderr.strip()}")


def _together(commands: list[list[str]], cwd: Path) -> float:
    """Start every command at once; the wall time until the last one ends."""
    started = time.perf_counter()
    running = [subprocess.Popen(c, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for c in commands]  # fmt: skip
    for process in running:
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(err.decode()[-2000:])
    return time.perf_counter() - started


# e2e's counting sink, waiting ``argv[2]`` seconds before each answer.
SINK = e2e.SINK.replace(
    "    async def handle_DATA(self, server, session, envelope):\n",
    "    async def handle_DATA(self, server, session, envelope):\n        await asyncio.sleep(DELAY)\n",
).replace("import sys\n", "import asyncio, sys\nDELAY = float(sys.argv[2])\n", 1)


def sends(
    cluster: pgcluster.Cluster, work: Path, runs: int, subscribers: int, pool: int, latency: float
) -> None:
    port = e2e.free_port()
    sink = subprocess.Popen(
        [e2e.PYTHON, "-c", SINK, str(port), str(latency / 1000)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdin is not None and sink.stdout is not None
    assert sink.stdout.readline().strip() == "ready"

    def received() -> int:
        assert sink.stdin is not None and sink.stdout is not None
        sink.stdin.write("\n")
        sink.stdin.flush()
        return int(sink.stdout.readline().split()[0])

    body = (
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\npool = {pool}\ntimeout = "60s"\n'
        f'[[sources]]\nname = "seeds"\nurl = "{e2e.REPO / "seeds"}"\n'
    )
    base = work / f"send-base-{int(latency)}"
    base.mkdir()
    path = _config(base, "digest.db", body)
    regions = ["", "europe", "southeast-asia", "africa", "east-asia"]
    rows = "".join(f"reader{n}@example.org,,{regions[n % len(regions)]},\n" for n in range(subscribers))
    (base / "people.csv").write_text("email,status,regions,themes\n" + rows)
    _check(DIGEST, "--config", str(path), "pull", cwd=base)
    _check(DIGEST, "--config", str(path), "subscribers", "import", "people.csv", cwd=base)
    received()
    figures: dict[str, list[float]] = {}
    try:
        for run in range(runs):
            for label, count in (("sqlite", 1), ("pg", 1), ("pg", 2), ("pg", 4)):
                folder = Path(tempfile.mkdtemp(dir=work))
                if label == "sqlite":
                    (folder / "digest.db").write_bytes((base / "digest.db").read_bytes())
                    database = "digest.db"
                else:
                    database = cluster.create_database(f"send_{int(latency)}_{run}_{count}")
                    _check(DIGEST, "--config", str(path), "db", "copy", "--to", database, cwd=base)
                conf = str(_config(folder, database, body))
                took = _together([[DIGEST, "--config", conf, "send"] for _ in range(count)], folder)
                got = received()
                if got != subscribers:
                    raise SystemExit(f"{label} x{count}: the sink received {got} messages of {subscribers}")
                if label == "pg":
                    with psycopg.connect(database) as conn:
                        sent = conn.execute(
                            "SELECT count(*) FROM deliveries WHERE status = 'sent'"
                        ).fetchone()
                        assert sent == (subscribers,), sent
                figures.setdefault(f"{label} x{count}", []).append(took)
                print(f"  run {run + 1}: {label} x{count}: {took:.2f} s", file=sys.stderr, flush=True)
    finally:
        sink.stdin.close()
        sink.wait(timeout=10)
    one = statistics.median(figures["pg x1"])
    print(
        f"send of {subscribers:,} digests, pool {pool} per process, sink answering after {latency:g} ms"
        f" (median of {runs}):"
    )
    for label, times in figures.items():
        took = statistics.median(times)
        print(
            f"  {label:10} {took:7.2f} s  {subscribers / took:7.0f} msg/s  x{one / took:.2f} of one PostgreSQL worker"
        )


def pulls(cluster: pgcluster.Cluster, work: Path, runs: int, feeds: int) -> None:
    served = work / "feeds"
    served.mkdir()
    for n in range(feeds):
        (served / f"f{n}.xml").write_bytes(e2e.make_feed(100).replace(b"https://", f"https://f{n}.".encode()))
    server, port = e2e.serve(served)
    sources = "".join(
        f'[[sources]]\nname = "f{n}"\nurl = "http://127.0.0.1:{port}/f{n}.xml"\n' for n in range(feeds)
    )
    body = f'[schedule]\npull_every = "1h"\ndigest_cron = "0 0 1 1 *"\n[web]\nport = 0\n{sources}'
    figures: dict[int, list[float]] = {}
    try:
        for run in range(runs):
            for count in (1, 2):
                folder = Path(tempfile.mkdtemp(dir=work))
                database = cluster.create_database(f"pull_{run}_{count}")
                conf = str(_config(folder, database, body))
                _check(DIGEST, "--config", conf, "status", cwd=folder)  # the schema, before the clock starts
                started = time.perf_counter()
                workers = [subprocess.Popen([DIGEST, "--config", conf, "run"], cwd=folder, env=_env(),
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                           for _ in range(count)]  # fmt: skip
                with psycopg.connect(database, autocommit=True) as conn:
                    while True:
                        row = conn.execute(
                            "SELECT count(*) FILTER (WHERE last_fetched IS NOT NULL),"
                            " (SELECT count(*) FROM articles WHERE NOT grouped) FROM sources"
                        ).fetchone()
                        assert row is not None
                        if row[0] == feeds and row[1] == 0:
                            break
                        time.sleep(0.05)
                took = time.perf_counter() - started
                for worker in workers:
                    worker.send_signal(signal.SIGTERM)
                for worker in workers:
                    worker.wait(timeout=30)
                figures.setdefault(count, []).append(took)
                print(f"  run {run + 1}: pull x{count}: {took:.2f} s", file=sys.stderr, flush=True)
    finally:
        server.terminate()
    one = statistics.median(figures[1])
    print(f"pull of {feeds} feeds of 100 items by `digest run` workers on PostgreSQL (median of {runs}):")
    for count, times in figures.items():
        took = statistics.median(times)
        print(
            f"  {count} worker{'s' if count > 1 else ' '} {took:7.2f} s  {feeds / took:6.1f} feeds/s  x{one / took:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--latency", type=float, default=100.0, help="ms the slow sink takes per message")
    parser.add_argument("--slow-subscribers", type=int, default=4_000)
    parser.add_argument("--only", choices=("send", "pull"), default=None)
    args = parser.parse_args()
    subprocess.run([e2e.PYTHON, "-m", "compileall", "-q", str(e2e.REPO / "digest")], check=True)
    found = pgcluster.binaries()
    if found is None:
        raise SystemExit("PostgreSQL's server binaries were not found: run `make system-deps`")
    cluster = pgcluster.Cluster(found).start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            if args.only in (None, "send"):
                sends(cluster, work, args.runs, args.subscribers, args.pool, 0.0)
                sends(cluster, work, args.runs, args.slow_subscribers, args.pool, args.latency)
            if args.only in (None, "pull"):
                pulls(cluster, work, args.runs, args.feeds)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
