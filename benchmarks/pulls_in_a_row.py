"""Pulls in a row (issue 30): ``--pulls`` (12) `digest pull` runs into one database, each of
``--items`` (5,000) new items of realistic text (scale_db's writer: the seeds' and the
corpora's sentences, a third of the articles sharing an event with their neighbours), all
first seen within the story window. Each pull is a fresh process, timed from outside with
its peak memory; what should stay flat is the last against the first. With ``--postgres``,
into a database of a throwaway PostgreSQL server (``tests/pgcluster.py``) instead of SQLite.

    .venv/bin/python benchmarks/pulls_in_a_row.py [--pulls 12] [--items 5000] [--postgres]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import scale_db  # noqa: E402  (the writer, the timer, the feed server)

from tests import pgcluster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pulls", type=int, default=12)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--postgres", action="store_true", help="into PostgreSQL, not SQLite")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pulls-in-a-row-"))
    feeds = work / "feeds"
    feeds.mkdir()
    writer = scale_db.Writer()
    now = datetime.now(UTC)
    cluster = None
    try:
        database = 'path = "digest.db"'
        if args.postgres:
            found = pgcluster.binaries()
            if found is None:
                raise SystemExit("PostgreSQL's server binaries were not found: run `make system-deps`")
            cluster = pgcluster.Cluster(found).start()
            database = f'url = "{cluster.create_database("pulls")}"'
        kind = "PostgreSQL" if args.postgres else "SQLite"
        print(
            f"{args.pulls} pulls of {args.items} new items into one {kind} database ({scale_db.revision()})"
        )
        print(f"{'pull':>4} {'wall s':>8} {'peak MB':>8} {'articles':>9}")
        with scale_db.feed_server(feeds) as port:
            config = work / "digest.toml"
            config.write_text(
                f"[database]\n{database}\n"
                f'[outbox]\npath = "out"\n[fetch]\nallow_private = true\nmax_bytes = 209715200\n'
                f'[[sources]]\nname = "wire"\nurl = "http://127.0.0.1:{port}/wire.xml"\nkind = "feed"\n',
                encoding="utf-8",
            )
            figures = []
            for n in range(args.pulls):
                (feeds / "wire.xml").write_bytes(writer.rss(n * args.items, args.items, "wire", now))
                took, peak, _ = scale_db.timed([scale_db.DIGEST, "--config", str(config), "pull"], work)
                figures.append((took, peak))
                print(f"{n + 1:>4} {took:8.2f} {peak / 1e6:8.0f} {(n + 1) * args.items:>9}", flush=True)
        first, last = figures[0], figures[-1]
        print(f"last / first: {last[0] / first[0]:.2f}x time, {last[1] / first[1]:.2f}x peak memory")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
