"""Who holds a lease or a claim in the database: a name for this process that tells it
apart from every other (on this machine or another, in a container or not), and whether a
holder named so was a process here that has died (its claims need not run out first)."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digest.store.contract import SettingsStore


def holder_name() -> str:
    """Who claims: this machine, this process (with its PID namespace, so processes in
    containers on one machine are told apart), and a random part (one process, many runs)."""
    try:
        namespace = str(Path("/proc/self/ns/pid").stat().st_ino)
    except OSError:
        namespace = "-"
    return f"{socket.gethostname()}:{os.getpid()}:{namespace}:{secrets.token_hex(4)}"


def died_here(holder: str) -> bool:
    """Whether ``holder`` was a process of this machine and PID namespace that no longer
    runs (then its claims need not run out before another takes them)."""
    host, pid, namespace, _ = [*holder.split(":"), "", "", "", ""][:4]
    ours = holder_name().split(":")
    if host != ours[0] or namespace != ours[2] or namespace == "-" or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def take_lease(store: SettingsStore, name: str, holder: str, seconds: float) -> bool:
    """``store.acquire_lease``, taking the lease over at once from a holder that died here
    (a killed `digest send` must not hold the next one up until its lease runs out)."""
    if store.acquire_lease(name, holder, seconds):
        return True
    other = store.lease_holder(name)
    if other is None or not died_here(other):
        return False
    store.release_lease(name, other)
    return store.acquire_lease(name, holder, seconds)
