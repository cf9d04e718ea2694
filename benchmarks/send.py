"""Sending speed: a personalised digest to 10,000 subscribers vs. the ceiling of the pipe.

An aiosmtpd sink runs in a second process on 127.0.0.1 and counts what it accepts. In the
same run this measures
1. the ceiling: identical pre-built messages of the same size pushed through the same
   connection pool (no rendering, no ledger);
2. the real thing: `digest send` logic for N confirmed subscribers with mixed preferences
   over a week of the seeds' 40 articles, every delivery recorded in the ledger;
and prints messages/second for both, their ratio, and peak memory of the sending process.

    .venv/bin/python benchmarks/send.py [--subscribers 10000] [--pool 2]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digest.common.dates import utcnow  # noqa: E402
from digest.config import parse_settings  # noqa: E402
from digest.intake.pull import pull  # noqa: E402
from digest.mail import compose  # noqa: E402
from digest.mail.compose import Outgoing  # noqa: E402
from digest.mail.contents import Selection  # noqa: E402
from digest.mail.send import Mailer, send_all  # noqa: E402
from digest.mail.transport import SmtpPool  # noqa: E402
from digest.store import SubscriberChange, open_store  # noqa: E402

SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller
class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += 1
        return "250 OK"
c = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_text(folder: Path, port: int, pool: int) -> str:
    return (
        f'[database]\npath = "bench.db"\n[site]\nbase_url = "https://news.example.org"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\npool = {pool}\n'
        f'[[sources]]\nname = "seeds"\nurl = "{REPO / "seeds"}"\n'
    )


def setup(folder: Path, port: int, count: int, pool: int) -> tuple[str, Path]:
    text = config_text(folder, port, pool)
    settings = parse_settings(text, origin="bench", base_dir=folder, env={})
    regions = [[], ["europe"], ["southeast-asia"], ["africa", "latin-america"], ["south-asia"]]
    themes = [[], [], ["party-relations"], ["trade-investment", "security-conflict"]]
    now = "2026-11-24T00:00:00.000000+00:00"
    with open_store(settings.database.path) as store:
        pull(settings, store)
        when = datetime.fromisoformat(now)
        rows = [
            SubscriberChange(
                f"reader{n}@example.org",
                status="active",
                regions=tuple(regions[n % len(regions)]),
                themes=tuple(themes[n % len(themes)]),
                created=when,
                confirmed=when,
            )
            for n in range(count)
        ]
        store.upsert_subscribers(rows)
    return text, settings.database.path


def trimmed(data: bytes, size: int) -> bytes:
    """The message cut to about ``size`` bytes at a line end, still well-formed MIME."""
    if len(data) <= size:
        return data
    body_end = data.rindex(b"\r\n--")  # the closing boundary
    closing = data[body_end:]
    cut = data.rindex(b"\r\n", 0, max(size - len(closing), 0) or 1)
    return data[:cut] + closing


async def ceiling(text: str, folder: Path, count: int, size: int | None = None) -> tuple[float, int]:
    settings = parse_settings(text, origin="bench", base_dir=folder, env={})
    with open_store(settings.database.path) as store:
        mailer = Mailer(store, settings)
        now = utcnow()
        content = mailer.planner.content(Selection(datetime(2000, 1, 1, tzinfo=UTC)), now)
        rendered = compose.render(content, settings, "ceiling", mailer.env)
        unsubscribe, preferences = mailer.links(store.subscribers()[0])
        message, _ = compose.personal_bytes(
            compose.prepare(rendered, settings),
            to="reader0@example.org",
            unsubscribe_url=unsubscribe,
            preferences_url=preferences,
            date=now,
            domain="news.example.org",
        )
    if size is not None:
        message = Outgoing(message.sender, message.recipients, trimmed(message.data, size))
    size = len(message.data)
    assert settings.smtp is not None
    async with SmtpPool(settings.smtp, size=settings.smtp.pool) as pool:
        queue = list(range(count))
        started = time.perf_counter()

        async def worker() -> None:
            while queue:
                queue.pop()
                await pool.send(message, "x")

        await asyncio.gather(*(worker() for _ in range(settings.smtp.pool)))
        return time.perf_counter() - started, size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--pool", type=int, default=2)
    parser.add_argument("--setup", nargs=2, metavar=("FOLDER", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:  # in its own process, so pulling and grouping do not count in peak memory
        setup(Path(args.setup[0]), int(args.setup[1]), args.subscribers, args.pool)
        return
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--setup",
                    str(folder),
                    str(port),
                    "--subscribers",
                    str(args.subscribers),
                    "--pool",
                    str(args.pool),
                ],
                check=True,
            )
            text, db = config_text(folder, port, args.pool), folder / "bench.db"
            settings = parse_settings(text, origin="bench", base_dir=folder, env={})
            assert settings.smtp is not None
            sizes: list[int] = []

            class Measured(SmtpPool):
                async def send(self, msg: Outgoing, key: str) -> str:
                    sizes.append(len(msg.data))
                    return await super().send(msg, key)

            with open_store(db) as store:
                started = time.perf_counter()
                transport = Measured(settings.smtp, size=settings.smtp.pool)
                [report] = asyncio.run(send_all(store, settings, transport=transport))
                took = time.perf_counter() - started
            rate = report.sent / took
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            average = sum(sizes) // len(sizes)
            # The ceiling: one message of the average size, sent as often, measured twice.
            tops = [
                args.subscribers
                / asyncio.run(ceiling(text, folder, report.sent, average))[0]
                * report.sent
                / args.subscribers
                for _ in range(2)
            ]
            top = max(tops)
            print(
                f"personalised send with ledger: {report.sent} sent, {report.failed} failed, average {average / 1024:.0f} KB, {rate:,.0f} msg/s"
            )
            print(
                f"ceiling, identical {average / 1024:.0f} KB messages through the same pool: {tops[0]:,.0f} / {tops[1]:,.0f} msg/s"
            )
            print(
                f"ratio: {rate / top:.0%} of the ceiling; peak memory of the sending process {peak:.0f} MiB"
            )
    finally:
        sink.stdin.close()  # type: ignore[union-attr]
        sink.wait(timeout=10)


if __name__ == "__main__":
    main()
