"""Work on hostile bytes in a child process with hard limits, so a runaway cannot stop the
service: reading a message that came back to a bounce address (flufl.bounce's detectors
include regular expressions that backtrack for minutes on a crafted line, and ``re`` holds
the GIL all that time: a thread would freeze the web server, the scheduler and SMTP).

``await run(name, data)`` starts ``python -m digest.common.confined NAME``, gives it ``data`` on
stdin and reads one JSON value from its stdout. The child limits itself before it reads
anything: ``CPU_SECONDS`` of CPU (the kernel stops it past that) and ``MEMORY_BYTES`` of
address space; the parent kills it after ``WALL_SECONDS``. Whatever goes wrong in there is
:class:`Overrun`, one line, and the service goes on.

Each job is a pure function of the bytes (``JOBS``): nothing in the child touches the
database, the network or a file, and it is not given digest's secrets (its environment
holds no ``DIGEST_*`` setting nor PostgreSQL's password).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

CPU_SECONDS = 5
WALL_SECONDS = 15.0
MEMORY_BYTES = 1024 * 1024 * 1024
# name → "module:function", a function of the bytes to a JSON value, imported in the child only.
JOBS = {
    "bounce": "digest.feedback.bounces:read_as_json",
    "newsletter": "digest.intake.newsletters:read_as_json",
}


class Overrun(Exception):
    """The child did not give an answer: out of time, CPU or memory, or it failed."""


async def run(name: str, data: bytes, *, wall: float = WALL_SECONDS) -> Any:
    """The JSON value job ``name`` makes of ``data``, computed in a confined child."""
    if name not in JOBS:
        raise ValueError(f"no confined job named {name!r}")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "digest.common.confined", name,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env=_without_secrets(os.environ),
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(child.communicate(data), wall)
    except TimeoutError:
        raise Overrun(f"{name}: still at work after {wall:g} s: stopped") from None
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode != 0:
        raise Overrun(f"{name}: {_ended(child.returncode)}")
    try:
        return json.loads(out)
    except ValueError:
        raise Overrun(f"{name}: no answer it could give") from None


def _without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """The service's environment without what a child reading hostile bytes has no use for:
    digest's settings and secrets, PostgreSQL's password."""
    return {k: v for k, v in env.items() if not k.startswith(("DIGEST_", "PGPASS"))}


def _ended(code: int | None) -> str:
    if code == -signal.SIGXCPU or code == -signal.SIGKILL:
        return f"out of its {CPU_SECONDS} s of CPU: stopped"
    if code is not None and code < 0:
        return f"stopped by signal {signal.Signals(-code).name}"
    return f"failed (exit status {code})"


def _confine() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS + 1))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in JOBS:
        print(f"usage: python -m digest.common.confined {{{','.join(JOBS)}}} < data", file=sys.stderr)
        return 2
    _confine()
    module, _, function = JOBS[argv[0]].partition(":")
    job = getattr(importlib.import_module(module), function)
    data = sys.stdin.buffer.read()
    sys.stdout.write(json.dumps(job(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
