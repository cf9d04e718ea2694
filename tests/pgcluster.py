"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` in a temporary folder,
``pg_ctl start`` on a Unix socket there and a free loopback port, stopped and deleted after.

PostgreSQL refuses to run as root (and CI runs as root): the server then runs as the
``postgres`` system user, which owns the folder. Local socket connections are trusted;
TCP connections on 127.0.0.1 need a password (scram-sha-256), so a wrong password can be
tested for real. Durability is off (fsync): this server's data is thrown away anyway.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

from tests.helpers import free_port, skip_or_fail

SUPERUSER = "postgres"


def binaries() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH, else Debian's versioned folder."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


class Cluster:
    """One running server. ``url(db)`` connects over the socket as the superuser."""

    def __init__(self, bin_dir: Path, env: dict[str, str] | None = None) -> None:
        self.bin = bin_dir
        self.env = env  # the server's environment (default: this process's)
        self.root = Path(tempfile.mkdtemp(prefix="digest-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._user: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._user = ["runuser", "-u", "postgres", "--"]
        self.root.chmod(0o755)

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self._user, *command], capture_output=True, text=True, check=False, cwd=self.root, env=self.env
        )
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr or done.stdout}")

    def start(self) -> Cluster:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-E", "UTF8",
            "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256",
        )  # fmt: skip
        options = (
            f"-k {self.root} -p {self.port} -h 127.0.0.1 -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=200"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l",
                  str(self.root / "log"), "start")  # fmt: skip
        return self

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        """A libpq URL over the Unix socket (trusted, no password)."""
        return f"postgresql://{user}@/{database}?host={quote(str(self.root), safe='/')}&port={self.port}"

    def tcp_url(self, database: str, user: str) -> str:
        """A libpq URL over TCP on 127.0.0.1 (a password is needed)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        """Run one statement as the superuser (outside a transaction: CREATE DATABASE)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement.encode())

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)


_SHARED: Cluster | None = None


def shared() -> Cluster:
    """The test session's one server, started on first use, stopped when the session ends.
    Without PostgreSQL's binaries: a skip saying so, or a failure in CI, where they must be."""
    global _SHARED
    if _SHARED is None:
        import atexit

        _SHARED = Cluster(required_binaries()).start()
        atexit.register(_SHARED.stop)
    return _SHARED


def required_binaries() -> Path:
    """``binaries()``, or a skip saying they are missing (a failure in CI, where they must be)."""
    found = binaries()
    if found is None:
        skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) not found: run `make system-deps`")
    return found


_databases: dict[str, str] = {}


def database_for(key: str) -> str:
    """The URL of a fresh database for ``key`` (a test's folder), the same one on every call."""
    if key not in _databases:
        name = f"t{len(_databases) + 1}_{os.getpid()}"
        _databases[key] = shared().create_database(name)
    return _databases[key]
