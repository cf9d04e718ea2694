"""Console accounts (issue 32, first part): `digest admin add | password | remove | list`
through the real command line, passwords kept as argon2id hashes only, sessions that end
with a logout, their absolute and idle limits, a new password or the account's removal."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from digest.common.dates import utcnow
from digest.config import load_settings
from digest.store import open_store
from digest.web.console.accounts import check_password, live, start

from .helpers import SEEDS_SOURCE, digest_env, write_config

PASSWORD = "correct horse battery staple"


def _admin(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), "admin", *args],
        cwd=config.parent, input=stdin, capture_output=True, text=True, timeout=120, env=digest_env(),
    )  # fmt: skip


def test_accounts_are_made_changed_and_removed_and_keep_only_a_hash(tmp_path: Path) -> None:
    config = write_config(tmp_path, SEEDS_SOURCE)
    made = _admin(config, "add", "ann", "--password-stdin", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert "/admin/" in made.stdout
    settings = load_settings(config)
    with open_store(settings.database.path) as store:
        ann = store.admin("ann")
        assert ann is not None and ann.hash.startswith("$argon2id$") and PASSWORD not in ann.hash
        assert check_password(ann, PASSWORD) and not check_password(ann, PASSWORD + "!")
        assert not check_password(None, PASSWORD)  # an unknown account
    for args, stdin, said in (
        (("add", "ann", "--password-stdin"), PASSWORD + "\n", "'ann' exists already"),
        (("add", "bob", "--password-stdin"), "short\n", "at least 12 characters"),
        (("add", "bo b", "--password-stdin"), PASSWORD + "\n", "without spaces"),
        (("password", "cy", "--password-stdin"), PASSWORD + "\n", "no account named 'cy'"),
        (("remove", "cy"), "", "no account named 'cy'"),
    ):
        done = _admin(config, *args, stdin=stdin)
        assert done.returncode == 1 and said in done.stderr and done.stderr.count("\n") == 1, (
            args,
            done.stderr,
        )
    listed = _admin(config, "list")
    assert (
        listed.returncode == 0 and listed.stdout.startswith("ann\t") and "last login never" in listed.stdout
    )

    now = utcnow()
    with open_store(settings.database.path) as store:
        ann = store.admin("ann")
        assert ann is not None
        session = start(store, ann, now, timedelta(hours=12))
        found = live(store, session.secret, now + timedelta(minutes=5), timedelta(minutes=30))
        assert found is not None and found.admin == "ann" and found.csrf == session.csrf
        assert live(store, session.secret, now + timedelta(minutes=31), timedelta(minutes=30)) is None  # idle
        assert live(store, session.secret, now + timedelta(hours=13), timedelta(days=1)) is None  # too old
        assert live(store, "forged", now, timedelta(minutes=30)) is None
        assert store.admin("ann").last_login == now  # type: ignore[union-attr]
    changed = _admin(config, "password", "ann", "--password-stdin", stdin="another long password\n")
    assert changed.returncode == 0, changed.stderr
    with open_store(settings.database.path) as store:
        assert live(store, session.secret, now, timedelta(minutes=30)) is None  # logged out everywhere
        ann = store.admin("ann")
        assert (
            ann is not None
            and check_password(ann, "another long password")
            and not check_password(ann, PASSWORD)
        )
        again = start(store, ann, now, timedelta(hours=12))
    assert _admin(config, "remove", "ann").returncode == 0
    with open_store(settings.database.path) as store:
        assert store.admins() == [] and live(store, again.secret, now, timedelta(minutes=30)) is None
