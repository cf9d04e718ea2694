"""Sources on PostgreSQL: as the SQLite area, plus claims, so that of several workers only
one pulls a source at a time, and a dead worker's claim expires."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from digest.common import redact
from digest.common.errors import StoreError
from digest.common.models import SourceState
from digest.store.postgres.base import PgBase
from digest.store.records import SourceSpec, SourceSummary
from digest.store.sources import source_state_of, source_summary_of


class PgSourcesArea(PgBase):
    def sync_sources(self, sources: Iterable[SourceSpec]) -> None:
        now = self.now()
        changed = 0
        with self._write() as conn:
            for source in sources:
                row = conn.execute("SELECT url, kind FROM sources WHERE name = %s", (source.name,)).fetchone()
                if row is None:
                    changed += conn.execute(
                        "INSERT INTO sources (name, url, fetch_url, kind, created, id_name)"
                        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
                        (source.name, source.url, source.url, source.kind, now, source.name),
                    ).rowcount
                elif row["url"] != source.url or row["kind"] != source.kind:
                    changed += 1
                    conn.execute(
                        "UPDATE sources SET url = %s, fetch_url = %s, kind = %s, enabled = TRUE, etag = NULL,"
                        " last_modified = NULL, consecutive_failures = 0, next_fetch = NULL,"
                        " last_error = NULL WHERE name = %s",
                        (source.url, source.url, source.kind, source.name),
                    )
            if changed:  # (run before every pull: an unchanged source must not empty web caches)
                self._changed(conn)

    def retire_sources(self, configured: Iterable[str]) -> None:
        names = list(configured)
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE sources SET removed = %s, next_fetch = NULL"
                " WHERE removed IS NULL AND NOT (name = ANY(%s))",
                [self.now(), names],
            ).rowcount
            changed += conn.execute(
                "UPDATE sources SET removed = NULL WHERE name = ANY(%s) AND removed IS NOT NULL", [names]
            ).rowcount
            if changed:
                self._changed(conn)

    def rename_source(self, old: str, new: str) -> None:
        with self._write() as conn:
            self._source_id(conn, old)
            clash = conn.execute(
                "SELECT s.id, (SELECT count(*) FROM articles a WHERE a.source_id = s.id) AS n FROM sources s"
                " WHERE s.name = %s",
                [new],
            ).fetchone()
            if clash is not None and clash["n"]:
                raise StoreError(
                    f"a source called {new!r} already has {clash['n']} articles; choose another name"
                )
            if clash is not None:
                conn.execute("DELETE FROM sources WHERE id = %s", [clash["id"]])
            conn.execute("UPDATE sources SET name = %s, removed = NULL WHERE name = %s", (new, old))
            self._changed(conn)

    def source_state(self, name: str) -> SourceState:
        row = self._row("SELECT * FROM sources WHERE name = %s", (name,))
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
        """Remember how a fetch went; the source's claim ends with it. (Nothing a page or a
        feed shows changes: the web caches are left alone.)"""
        sets = ["last_status = %s", "last_error = %s", "last_fetched = %s", "next_fetch = %s"]
        args: list[Any] = [status, redact.text(error) if error else None, self.now(), next_fetch]
        sets.append(
            "consecutive_failures = consecutive_failures + 1" if error else "consecutive_failures = 0"
        )
        if not keep_validators:
            sets += ["etag = %s", "last_modified = %s"]
            args += [etag, last_modified]
        if fetch_url:
            sets.append("fetch_url = %s")
            args.append(fetch_url)
        if disable:
            sets.append("enabled = FALSE")
        elif not error:
            sets.append("enabled = TRUE")
        sets += ["claimed_by = NULL", "claimed_until = NULL"]
        with self._write() as conn:
            conn.execute(f"UPDATE sources SET {', '.join(sets)} WHERE name = %s", (*args, name))

    def claim_source(self, name: str, holder: str, seconds: float) -> bool:
        """Hold source ``name`` for ``seconds`` (a pull); False when another holder has it.
        The row is locked while checked, so two workers cannot both win."""
        with self._write() as conn:
            row = conn.execute(
                "UPDATE sources SET claimed_by = %s, claimed_until = now() + make_interval(secs => %s)"
                " WHERE name = %s AND (claimed_by IS NULL OR claimed_by = %s OR claimed_until <= now())"
                " RETURNING id",
                (holder, seconds, name, holder),
            ).fetchone()
        return row is not None

    def source_urls(self) -> dict[str, str]:
        return {row["name"]: row["fetch_url"] for row in self._rows("SELECT name, fetch_url FROM sources")}

    def source_summaries(self) -> list[SourceSummary]:
        return [
            source_summary_of(row)
            for row in self._rows(
                "SELECT s.*, (SELECT count(*) FROM articles a WHERE a.source_id = s.id) AS articles,"
                " (SELECT max(first_seen) FROM articles a WHERE a.source_id = s.id) AS newest"
                ' FROM sources s ORDER BY s.name COLLATE "C"'
            )
        ]
