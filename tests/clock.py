"""Run a command with the wall clock moved to another moment: ``make test-dates WHEN=...``.

    python -m tests.clock '2028-03-26 00:30:00' -- .venv/bin/pytest

WHEN is an ISO 8601 moment, UTC unless it names an offset. The command and everything it
starts (each ``digest`` subprocess, the PostgreSQL server the tests start) see a wall clock
that starts at WHEN and keeps ticking; the monotonic clock, which sleeps and timeouts use,
stays real. The clock is moved by ``tests/shiftclock.c``, built here with the C compiler
and loaded with ``LD_PRELOAD``; ``TEST_CLOCK_OFFSET`` carries the offset in seconds.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

SOURCE = Path(__file__).with_name("shiftclock.c")


class ClockError(Exception):
    """The shim cannot be built here."""


def build(folder: Path) -> Path:
    """The shim compiled into ``folder``, readable by every user (PostgreSQL runs as
    ``postgres`` when the tests run as root)."""
    library = folder / "shiftclock.so"
    compiler = shutil.which("gcc")
    if compiler is None:
        raise ClockError("gcc not found: run `make system-deps` (it builds the shim that moves the clock)")
    flags = ["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror"]
    # glibc marks gettimeofday's argument non-null, yet the kernel takes NULL: keep the test.
    flags += ["-fno-delete-null-pointer-checks", "-Wno-nonnull-compare"]
    built = subprocess.run(
        [compiler, *flags, "-o", str(library), str(SOURCE)], capture_output=True, text=True
    )
    if built.returncode:
        raise ClockError(f"{SOURCE.name} did not build: {built.stderr.strip()}")
    folder.chmod(0o755)
    library.chmod(0o755)
    return library


def moved(library: Path, offset: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the clock moved ``offset`` seconds."""
    env = dict(os.environ if env is None else env)
    # A shim already there (under test-dates) would add its offset to this one's.
    others = [item for item in env.get("LD_PRELOAD", "").split() if not item.endswith("/shiftclock.so")]
    env["LD_PRELOAD"] = " ".join([str(library), *others])
    env["TEST_CLOCK_OFFSET"] = str(offset)
    return env


def moment(text: str) -> datetime:
    """WHEN as an aware datetime; naive means UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m tests.clock WHEN -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    try:
        when = moment(argv[0])
    except ValueError:
        print(f"WHEN: {argv[0]!r} is not an ISO 8601 moment (like 2028-03-26 00:30:00)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="digest-clock-") as folder:
        try:
            library = build(Path(folder))
        except ClockError as exc:
            print(f"make test-dates: {exc}", file=sys.stderr)
            return 1
        # From the real clock, even when this runs under a moved one already (its own test).
        real = time.time() - int(os.environ.get("TEST_CLOCK_OFFSET", "0"))
        offset = math.ceil(when.timestamp() - real)  # whole seconds, from WHEN on
        print(f"clock moved to {when.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({offset:+d} s)", flush=True)
        return subprocess.run(argv[2:], env=moved(library, offset), check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
