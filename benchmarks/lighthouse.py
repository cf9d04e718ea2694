"""Lighthouse (mobile preset) on the pages a reader meets, on a throwaway digest on 127.0.0.1.

1. Installs npm's `lighthouse` (12) into ``.lighthouse/`` of the checkout (git-ignored) if it
   is not there: the only thing that leaves 127.0.0.1.
2. Builds an instance in a temporary folder: a config, `digest pull` of the bundled seeds,
   one confirmed subscriber (so there is a preferences page), `digest serve` on a free port.
3. Runs Lighthouse with Debian's chromium (``CHROME_PATH``, default /usr/bin/chromium,
   headless, nothing fetched in the background) on `/`, `/subscribe`, a region page, an
   article page and the preferences page, one after the other. On the preferences page
   the audit "is-crawlable" is not run: robots.txt keeps crawlers out of subscribers'
   token pages on purpose, and no page can both pass it and stay out of search engines.
   The table says so under it, every time. (Lighthouse reads /robots.txt from inside the
   page, so under the page's Content-Security-Policy: without ``connect-src 'self'`` its
   audit "robots-txt" fails with "unable to download", whatever the file says.)
4. Prints a table (page, performance, accessibility, best practices, SEO) and, below it,
   each audit that cost a page points. Exit status 1 if any score is below 100, or if
   something needed (npm, chromium) is missing.

    .venv/bin/python benchmarks/lighthouse.py [--reports DIR]   # or: make lighthouse
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import httpx

from digest.store import open_store
from digest.subscribers.lifecycle import token

REPO = Path(__file__).resolve().parent.parent
DIGEST = str(Path(sys.executable).parent / "digest")
INSTALL = REPO / ".lighthouse"
LIGHTHOUSE = INSTALL / "node_modules" / ".bin" / "lighthouse"
PACKAGE = "lighthouse@12"
CHROME_FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-background-networking"
    " --disable-component-update --disable-sync --no-first-run"
)
CATEGORIES = (
    ("performance", "performance"),
    ("accessibility", "accessibility"),
    ("best-practices", "best practices"),
    ("seo", "SEO"),
)
SUBSCRIBER = "reader@example.org"
NOT_RUN = {"preferences": ("is-crawlable", "robots.txt keeps crawlers out of token pages on purpose")}


def fail(message: str) -> NoReturn:
    print(f"lighthouse: {message}", file=sys.stderr)
    raise SystemExit(1)


def install() -> None:
    """npm's lighthouse in .lighthouse/, unless it is there already."""
    if LIGHTHOUSE.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        fail("npm is not installed (Debian package npm); it installs lighthouse into .lighthouse/")
    print(f"installing {PACKAGE} into {INSTALL.relative_to(REPO)}/", file=sys.stderr)
    subprocess.run(
        [npm, "install", "--prefix", str(INSTALL), "--no-audit", "--no-fund", "--loglevel=error", PACKAGE],
        check=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def digest(config: Path, *args: str, env: dict[str, str]) -> str:
    """`digest ARGS` with this config; its standard output (exit 1 with its error otherwise)."""
    done = subprocess.run(
        [DIGEST, "--config", str(config), *args], capture_output=True, text=True, env=env, timeout=300
    )
    if done.returncode:
        fail(f"digest {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def instance(folder: Path, port: int, secret: str) -> tuple[Path, dict[str, str], list[tuple[str, str]]]:
    """A pulled instance in ``folder``: its config, the environment to run it with, and the
    pages to measure (name, path)."""
    config = folder / "digest.toml"
    config.write_text(
        f'[site]\ntitle = "China Watch"\nbase_url = "http://127.0.0.1:{port}"\n'
        f'[database]\npath = "{folder / "digest.db"}"\n'
        f'[outbox]\npath = "{folder / "outbox"}"\n'
        f'[[sources]]\nname = "seeds"\nurl = "{REPO / "seeds"}"\n'
    )
    # This instance's own secret, so the preferences link made here is the one it accepts;
    # nothing of the caller's DIGEST_* settings leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["DIGEST_SECRET"] = secret
    digest(config, "pull", env=env)
    digest(config, "subscribers", "add", SUBSCRIBER, "--confirmed", env=env)
    [article] = json.loads(digest(config, "articles", "--json", "--limit", "1", env=env))
    region = (article["regions"] or ["global"])[0]
    with open_store(folder / "digest.db") as store:
        reader = store.subscriber(email=SUBSCRIBER)
        assert reader is not None
        preferences = f"/preferences/{token(secret.encode(), 'preferences', reader)}"
    pages = [
        ("home", "/"),
        ("subscribe", "/subscribe"),
        ("region", f"/regions/{region}/"),
        ("article", f"/articles/{article['id']}"),
        ("preferences", preferences),
    ]
    return config, env, pages


def serve(config: Path, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        server = subprocess.Popen(
            [DIGEST, "--config", str(config), "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail(f"digest serve stopped: {log.read_text()[-500:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.terminate()
    fail("digest serve did not answer within 30 s")


def measure(url: str, chrome: str, report: Path, skip: str | None = None) -> dict[str, Any]:
    """Lighthouse's JSON report for ``url`` (mobile, its default), without audit ``skip``."""
    subprocess.run(
        [
            str(LIGHTHOUSE),
            url,
            *([f"--skip-audits={skip}"] if skip else []),
            "--quiet",
            "--no-enable-error-reporting",
            "--form-factor=mobile",
            "--output=json",
            f"--output-path={report}",
            f"--chrome-flags={CHROME_FLAGS}",
        ],
        env={**os.environ, "CHROME_PATH": chrome},
        check=True,
        timeout=300,
    )
    found: dict[str, Any] = json.loads(report.read_text())
    return found


def scores(found: dict[str, Any]) -> list[int]:
    return [round((found["categories"][key]["score"] or 0) * 100) for key, _ in CATEGORIES]


def losses(found: dict[str, Any]) -> list[str]:
    """The audits that cost points: category, audit id, and what Lighthouse said."""
    lost = []
    for key, name in CATEGORIES:
        for ref in found["categories"][key]["auditRefs"]:
            audit = found["audits"][ref["id"]]
            if ref["weight"] and audit["score"] is not None and audit["score"] < 1:
                said = audit.get("explanation") or audit.get("displayValue") or audit["title"]
                lost.append(f"{name}: {audit['id']} ({said})")
    return lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=Path, help="keep each page's JSON report in this folder")
    options = parser.parse_args()
    chrome = os.environ.get("CHROME_PATH", "/usr/bin/chromium")
    if not Path(chrome).exists():
        fail(f"no chromium at {chrome} (Debian package chromium, or set CHROME_PATH)")
    install()
    with tempfile.TemporaryDirectory(prefix="digest-lighthouse-") as work:
        folder = Path(work)
        reports = options.reports or folder / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config, env, pages = instance(folder, port, secrets.token_urlsafe(32))
        server = serve(config, port, env, folder / "serve.log")
        try:
            rows = []
            for name, path in pages:
                skip = NOT_RUN[name][0] if name in NOT_RUN else None
                found = measure(f"http://127.0.0.1:{port}{path}", chrome, reports / f"{name}.json", skip)
                rows.append((name + ("*" if skip else ""), scores(found), losses(found)))
        finally:
            server.terminate()
            server.wait(timeout=10)
    width = max(len(name) for name, _, _ in rows)
    print(f"{'page':<{width}}  " + "  ".join(f"{title:>14}" for _, title in CATEGORIES))
    for name, figures, _ in rows:
        print(f"{name:<{width}}  " + "  ".join(f"{figure:>14}" for figure in figures))
    for name, (audit, why) in NOT_RUN.items():
        print(f"* {name}: {audit} not run ({why})")
    for name, figures, lost in rows:
        if min(figures) < 100:
            print(f"\n{name}:", *lost, sep="\n  ")
    if any(min(figures) < 100 for _, figures, _ in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
