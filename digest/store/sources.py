"""Sources: what the configuration names, how each fetch went, where to fetch next."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from digest.common import redact
from digest.common.dates import to_iso
from digest.common.errors import StoreError
from digest.common.models import SourceState
from digest.store.base import Row, SqliteBase, dt
from digest.store.records import SourceSpec, SourceSummary


class SourcesArea(SqliteBase):
    def sync_sources(self, sources: Iterable[SourceSpec]) -> None:
        """Make the sources table match the configuration; a changed URL resets fetch state."""
        now = to_iso(self.now())
        with self._write() as conn:
            for source in sources:
                row = conn.execute("SELECT url, kind FROM sources WHERE name = ?", (source.name,)).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO sources (name, url, fetch_url, kind, created, id_name)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (source.name, source.url, source.url, source.kind, now, source.name),
                    )
                elif row[0] != source.url or row[1] != source.kind:
                    conn.execute(
                        "UPDATE sources SET url = ?, fetch_url = ?, kind = ?, enabled = 1, etag = NULL,"
                        " last_modified = NULL, consecutive_failures = 0, next_fetch = NULL,"
                        " last_error = NULL WHERE name = ?",
                        (source.url, source.url, source.kind, source.name),
                    )

    def retire_sources(self, configured: Iterable[str]) -> None:
        """Mark sources no longer in the configuration as removed (their articles stay), and
        those back in it as present."""
        names = list(configured)
        marks = ",".join("?" * len(names)) or "''"
        with self._write() as conn:
            conn.execute(
                "UPDATE sources SET removed = ?, next_fetch = NULL"
                f" WHERE removed IS NULL AND name NOT IN ({marks})",
                [to_iso(self.now()), *names],
            )
            conn.execute(f"UPDATE sources SET removed = NULL WHERE name IN ({marks})", names)

    def rename_source(self, old: str, new: str) -> None:
        """Give a source a new name, keeping its articles and their ids. A source already
        called ``new`` may exist only if it has no articles yet (a config edited first)."""
        with self._write() as conn:
            self._source_id(conn, old)
            clash = conn.execute(
                "SELECT s.id, (SELECT count(*) FROM articles a WHERE a.source_id = s.id) FROM sources s"
                " WHERE s.name = ?",
                [new],
            ).fetchone()
            if clash is not None and clash[1]:
                raise StoreError(
                    f"a source called {new!r} already has {clash[1]} articles; choose another name"
                )
            if clash is not None:
                conn.execute("DELETE FROM sources WHERE id = ?", [clash[0]])
            conn.execute("UPDATE sources SET name = ?, removed = NULL WHERE name = ?", (new, old))

    def source_state(self, name: str) -> SourceState:
        row = self._row("SELECT * FROM sources WHERE name = ?", (name,))
        if row is None:
            raise StoreError(f"no source named {name!r} in the database")
        return source_state_of(row)

    def record_fetch(
        self,
        name: str,
        *,
        status: int | None,
        error: str | None,
        etag: str | None = None,
        last_modified: str | None = None,
        fetch_url: str | None = None,
        next_fetch: datetime | None = None,
        disable: bool = False,
        keep_validators: bool = False,
    ) -> None:
        """Remember how a fetch went: validators for the next conditional GET, failures, when to retry."""
        sets = ["last_status = ?", "last_error = ?", "last_fetched = ?", "next_fetch = ?"]
        args: list[Any] = [
            status,
            redact.text(error) if error else None,  # shown by `digest status` and /healthz
            to_iso(self.now()),
            to_iso(next_fetch) if next_fetch else None,
        ]
        sets.append(
            "consecutive_failures = consecutive_failures + 1" if error else "consecutive_failures = 0"
        )
        if not keep_validators:
            sets += ["etag = ?", "last_modified = ?"]
            args += [etag, last_modified]
        if fetch_url:
            sets.append("fetch_url = ?")
            args.append(fetch_url)
        if disable:
            sets.append("enabled = 0")
        elif not error:
            sets.append("enabled = 1")
        sets += ["claimed_by = NULL", "claimed_until = NULL"]  # the pull that claimed it is over
        with self._write() as conn:
            conn.execute(f"UPDATE sources SET {', '.join(sets)} WHERE name = ?", (*args, name))

    def claim_source(self, name: str, holder: str, seconds: float) -> bool:
        """Hold source ``name`` for ``seconds`` while ``holder`` pulls it; False when another
        holder's claim is still running. ``record_fetch`` ends the claim."""
        now = self.now()
        with self._write() as conn:
            done = conn.execute(
                "UPDATE sources SET claimed_by = ?, claimed_until = ? WHERE name = ?"
                " AND (claimed_by IS NULL OR claimed_by = ? OR claimed_until <= ?)",
                (holder, to_iso(now + timedelta(seconds=seconds)), name, holder, to_iso(now)),
            )
            return done.rowcount > 0

    def source_urls(self) -> dict[str, str]:
        """Source name → the URL it is fetched from now."""
        return {row[0]: row[1] for row in self._rows("SELECT name, fetch_url FROM sources")}

    def source_summaries(self) -> list[SourceSummary]:
        """Every source with its fetch state and article count, by name."""
        return [
            source_summary_of(row)
            for row in self._rows(
                "SELECT s.*, (SELECT count(*) FROM articles a WHERE a.source_id = s.id) AS articles,"
                " (SELECT max(first_seen) FROM articles a WHERE a.source_id = s.id) AS newest"
                " FROM sources s ORDER BY s.name"
            )
        ]


def source_state_of(row: Row) -> SourceState:
    return SourceState(
        name=row["name"],
        id_name=row["id_name"] or row["name"],
        url=row["fetch_url"],
        kind=row["kind"],
        enabled=bool(row["enabled"]),
        etag=row["etag"],
        last_modified=row["last_modified"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        last_fetched=dt(row["last_fetched"]),
        consecutive_failures=row["consecutive_failures"],
        next_fetch=dt(row["next_fetch"]),
    )


def source_summary_of(row: Row) -> SourceSummary:
    """A row of sources with its ``articles`` count."""
    return SourceSummary(
        name=row["name"],
        articles=row["articles"],
        last_fetched=dt(row["last_fetched"]),
        last_status=row["last_status"],
        last_error=row["last_error"],
        consecutive_failures=row["consecutive_failures"],
        next_fetch=dt(row["next_fetch"]),
        removed=dt(row["removed"]),
        created=dt(row["created"]),
        newest=dt(row["newest"]),
    )
