"""The operators' console in the database: accounts (by the hash of each password), the
sessions logged in (by the hash of each cookie's secret) and the audit log of what was
changed there. One set of statements for both backends (see :mod:`digest.store.dialect`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from digest.common.errors import StoreError
from digest.store.base import record_of
from digest.store.dialect import Area
from digest.store.records import AdminRecord, AuditEntry, SessionRecord


class ConsoleArea(Area):
    """Accounts, sessions and the audit log, in the statements both backends share."""

    def add_admin(self, name: str, hashed: str) -> AdminRecord:
        now = self.now()
        with self._write() as tx:
            if tx.execute("SELECT 1 FROM admins WHERE name = ?", [name]).fetchone() is not None:
                raise StoreError(f"an account called {name!r} exists already")
            row = tx.execute(
                "INSERT INTO admins (name, hash, created, changed) VALUES (?, ?, ?, ?) RETURNING *",
                (name, hashed, now, now),
            ).fetchone()
        return record_of(AdminRecord, row)

    def admins(self) -> list[AdminRecord]:
        return [
            record_of(AdminRecord, row)
            for row in self._rows(f"SELECT * FROM admins ORDER BY name{self.dialect.bytewise}")
        ]

    def admin(self, name: str) -> AdminRecord | None:
        row = self._row("SELECT * FROM admins WHERE name = ?", [name])
        return None if row is None else record_of(AdminRecord, row)

    def has_admins(self) -> bool:
        return self._row("SELECT 1 FROM admins LIMIT 1") is not None

    def set_admin_password(self, name: str, hashed: str) -> None:
        with self._write() as tx:
            found = tx.execute("SELECT id FROM admins WHERE name = ?", [name]).fetchone()
            if found is None:
                raise StoreError(f"no account named {name!r}")
            tx.execute(
                "UPDATE admins SET hash = ?, changed = ? WHERE id = ?", (hashed, self.now(), found["id"])
            )
            tx.execute("DELETE FROM sessions WHERE admin_id = ?", [found["id"]])

    def remove_admin(self, name: str) -> None:
        with self._write() as tx:
            found = tx.execute("SELECT id FROM admins WHERE name = ?", [name]).fetchone()
            if found is None:
                raise StoreError(f"no account named {name!r}")
            tx.execute("DELETE FROM sessions WHERE admin_id = ?", [found["id"]])
            tx.execute("DELETE FROM admins WHERE id = ?", [found["id"]])

    def start_session(
        self, hashed: str, admin_id: int, csrf: str, *, now: datetime, expires: datetime
    ) -> None:
        with self._write() as tx:
            tx.execute(
                "INSERT INTO sessions (id, admin_id, csrf, created, seen, expires) VALUES (?, ?, ?, ?, ?, ?)",
                (hashed, admin_id, csrf, now, now, expires),
            )
            tx.execute("UPDATE admins SET last_login = ? WHERE id = ?", (now, admin_id))

    def session(self, hashed: str) -> SessionRecord | None:
        row = self._row(
            "SELECT s.*, a.name AS admin FROM sessions s JOIN admins a ON a.id = s.admin_id WHERE s.id = ?",
            [hashed],
        )
        return None if row is None else record_of(SessionRecord, row)

    def session_seen(self, hashed: str, now: datetime) -> None:
        with self._write() as tx:
            tx.execute("UPDATE sessions SET seen = ? WHERE id = ? AND seen < ?", (now, hashed, now))

    def end_session(self, hashed: str) -> None:
        with self._write() as tx:
            tx.execute("DELETE FROM sessions WHERE id = ?", [hashed])

    def prune_sessions(self, *, now: datetime, idle_before: datetime) -> int:
        with self._write() as tx:
            return int(
                tx.execute("DELETE FROM sessions WHERE expires <= ? OR seen < ?", (now, idle_before)).rowcount
            )

    def record_audit(
        self, actor: str, action: str, target: str | None = None, detail: Mapping[str, Any] | None = None
    ) -> None:
        with self._write() as tx:
            tx.execute(
                "INSERT INTO audit (at, actor, action, target, detail)"
                f" VALUES (?, ?, ?, ?, {self.dialect.json_mark})",
                (
                    self.now(),
                    actor,
                    action,
                    target,
                    None if detail is None else json.dumps(dict(detail), sort_keys=True),
                ),
            )

    def audit_log(self, *, limit: int = 50, before: int | None = None) -> list[AuditEntry]:
        where, args = ("WHERE id < ?", [before]) if before is not None else ("", [])
        return [
            record_of(AuditEntry, row)
            for row in self._rows(f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", [*args, limit])
        ]
