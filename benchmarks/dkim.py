"""What DKIM signing costs the send path: `digest send` of personalised digests to N
subscribers (5,000 by default) through the same aiosmtpd sink (a process of its own on
127.0.0.1, as ``send.py`` runs it), unsigned, signed with RSA-2048 and signed with
Ed25519; medians of ``--runs`` runs, each on a fresh copy of one database, the three kinds
taking turns. Also the cost of one signature on one of those digests, alone.

    .venv/bin/python benchmarks/dkim.py [--subscribers 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import send  # noqa: E402  (the sink and the database of subscribers live there)

from digest.config import parse_settings  # noqa: E402
from digest.mail.dkim import Signed, Signer, keygen, load_signer  # noqa: E402
from digest.mail.send import send_all  # noqa: E402
from digest.mail.transport import SmtpPool, Transport  # noqa: E402
from digest.store import open_store  # noqa: E402


def _run(folder: Path, text: str, database: Path, signer: Signer | None) -> float:
    settings = parse_settings(text, origin="bench", base_dir=folder, env={})
    assert settings.smtp is not None
    copy = folder / "run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(database, copy)
    with open_store(copy) as store:
        pool = SmtpPool(settings.smtp, size=settings.smtp.pool)
        transport: Transport = pool if signer is None else Signed(pool, signer)
        started = time.perf_counter()
        [report] = asyncio.run(send_all(store, settings, transport=transport))
        took = time.perf_counter() - started
    return report.sent / took


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=5_000)
    parser.add_argument("--pool", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    port = send.free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", send.SINK, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            setup = [sys.executable, send.__file__, "--setup", str(folder), str(port)]
            subprocess.run(
                [*setup, "--subscribers", str(args.subscribers), "--pool", str(args.pool)], check=True
            )
            text = send.config_text(folder, port, args.pool)
            database = folder / "bench.db"
            signers: dict[str, Signer | None] = {"unsigned": None}
            for kind in ("rsa", "ed25519"):
                keygen(folder / f"{kind}.pem", kind, "news.example.org", "s1")
                signers[f"{kind} signed"] = load_signer("news.example.org", "s1", folder / f"{kind}.pem")
            rates: dict[str, list[float]] = {name: [] for name in signers}
            for _ in range(args.runs):
                for name, signer in signers.items():
                    rates[name].append(_run(folder, text, database, signer))
            base = statistics.median(rates["unsigned"])
            print(
                f"`digest send` to {args.subscribers:,} subscribers, pool {args.pool} (median of {args.runs}):"
            )
            for name, found in rates.items():
                rate = statistics.median(found)
                print(f"  {name:15} {rate:8,.0f} msg/s   {rate / base:5.2f} x unsigned")
            message = (
                b"Subject: x\r\nFrom: a@news.example.org\r\nTo: b@example.org\r\n\r\n"
                + b"line of text\r\n" * 4000
            )
            for name, signer in signers.items():
                if signer is None:
                    continue
                started = time.perf_counter()
                for _ in range(200):
                    signer.sign(message)
                each = (time.perf_counter() - started) / 200
                print(
                    f"  one {name.split()[0]} signature of a {len(message) // 1024} KB message: {each * 1e6:,.0f} µs"
                )
            # The baseline the issue names: dkimpy signing the same message with the same key.
            # (a test dependency; this script's own folder leaves the path first: it is dkim.py too)
            saved, here = list(sys.path), str(Path(__file__).resolve().parent)
            sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(here)]
            import dkim as dkimpy

            sys.path[:] = saved

            pem = (folder / "rsa.pem").read_bytes()
            heads = [b"from", b"to", b"subject"]
            started = time.perf_counter()
            for _ in range(50):
                dkimpy.sign(message, b"s1", b"news.example.org", pem, include_headers=heads)
            each = (time.perf_counter() - started) / 50
            print(f"  one rsa signature by dkimpy, same message:  {each * 1e6:,.0f} µs")
    finally:
        sink.kill()


if __name__ == "__main__":
    main()
