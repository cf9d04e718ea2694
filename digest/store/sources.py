"""Sources: what the configuration names, how each fetch went, where to fetch next. One
set of statements for both backends (see :mod:`digest.store.dialect`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from digest.common import redact
from digest.common.errors import StoreError
from digest.common.models import SourceState
from digest.store.base import Row, record_of
from digest.store.dialect import Area, Tx, no_source
from digest.store.records import AddedSource, SourceSpec, SourceSummary


class SourcesArea(Area):
    """Sources, in the statements both backends share."""

    def sync_sources(self, sources: Iterable[SourceSpec]) -> None:
        """Make the sources table match the configuration; a changed URL resets fetch state."""
        now = self.now()
        changed = 0
        with self._write() as tx:
            for source in sources:
                row = tx.execute(
                    "SELECT url, kind, options IS NOT NULL AS added FROM sources WHERE name = ?",
                    (source.name,),
                ).fetchone()
                if row is None:
                    changed += tx.execute(
                        "INSERT INTO sources (name, url, fetch_url, kind, created, id_name)"
                        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                        (source.name, source.url, source.url, source.kind, now, source.name),
                    ).rowcount
                elif row["url"] != source.url or row["kind"] != source.kind:
                    changed += 1
                    tx.execute(
                        "UPDATE sources SET url = ?, fetch_url = ?, kind = ?, enabled = TRUE, etag = NULL,"
                        " last_modified = NULL, consecutive_failures = 0, next_fetch = NULL,"
                        " last_error = NULL, options = NULL, paused = NULL WHERE name = ?",
                        (source.url, source.url, source.kind, source.name),
                    )
                elif row["added"]:  # the operator moved it into the file: the file's now
                    changed += 1
                    tx.execute(
                        "UPDATE sources SET options = NULL, paused = NULL WHERE name = ?", [source.name]
                    )
            if changed:  # (run before every pull: an unchanged source must not empty web caches)
                self._changed(tx)

    def retire_sources(self, configured: Iterable[str]) -> None:
        """Mark sources no longer in the configuration as removed (their articles stay), and
        those back in it as present."""
        names = list(configured)
        with self._write() as tx:
            changed = 0
            for outside, args in self.dialect.in_list("name", names, negate=True):
                changed += tx.execute(
                    "UPDATE sources SET removed = ?, next_fetch = NULL WHERE removed IS NULL"
                    f" AND options IS NULL AND {outside}",
                    [self.now(), *args],
                ).rowcount
            for inside, args in self.dialect.in_list("name", names):
                changed += tx.execute(
                    "UPDATE sources SET removed = NULL WHERE removed IS NOT NULL AND options IS NULL"
                    f" AND {inside}",
                    args,
                ).rowcount
            if changed:
                self._changed(tx)

    def rename_source(self, old: str, new: str) -> None:
        """Give a source a new name, keeping its articles and their ids. A source already
        called ``new`` may exist only if it has no articles yet (a config edited first)."""
        with self._write() as tx:
            self._source_id(tx, old)
            clash = tx.execute(
                "SELECT s.id, (SELECT count(*) FROM articles a WHERE a.source_id = s.id) AS n FROM sources s"
                " WHERE s.name = ? AND s.name != ?",
                [new, old],
            ).fetchone()
            if clash is not None and clash["n"]:
                raise StoreError(
                    f"a source called {new!r} already has {clash['n']} articles; choose another name"
                )
            if clash is not None:
                tx.execute("DELETE FROM sources WHERE id = ?", [clash["id"]])
            tx.execute("UPDATE sources SET name = ?, removed = NULL WHERE name = ?", (new, old))
            self._changed(tx)

    def add_sources(self, sources: Sequence[AddedSource]) -> None:
        """Add sources at run time, all or none. A removed source of the same name that was
        added so is taken up again (its articles and their ids kept)."""
        now = self.now()
        mark = self.dialect.json_mark
        with self._write() as tx:
            for source in sources:
                row = tx.execute(
                    "SELECT options IS NOT NULL AS added, removed FROM sources WHERE name = ?", [source.name]
                ).fetchone()
                options = json.dumps(source.options, sort_keys=True)
                if row is None:
                    tx.execute(
                        "INSERT INTO sources (name, url, fetch_url, kind, created, id_name, options)"
                        f" VALUES (?, ?, ?, ?, ?, ?, {mark})",
                        (source.name, source.url, source.url, source.kind, now, source.name, options),
                    )
                elif row["removed"] is not None:  # gone from the config or removed: taken up
                    tx.execute(
                        f"UPDATE sources SET url = ?, fetch_url = ?, kind = ?, options = {mark},"
                        " removed = NULL, paused = NULL, enabled = TRUE, etag = NULL, last_modified = NULL,"
                        " consecutive_failures = 0, next_fetch = NULL, last_error = NULL WHERE name = ?",
                        (source.url, source.url, source.kind, options, source.name),
                    )
                else:
                    raise StoreError(f"a source called {source.name!r} exists already; choose another name")
            self._changed(tx)

    def change_source(
        self, name: str, *, options: Mapping[str, Any] | None = None, paused: bool | None = None
    ) -> None:
        """Change a source added at run time: its options (and so its URL and kind, which
        they carry), or whether it is paused (since now, by the store's clock)."""
        with self._write() as tx:
            self._added_source(tx, name)
            if options is not None:
                url, kind = str(options["url"]), str(options.get("kind", "auto"))
                tx.execute(
                    f"UPDATE sources SET options = {self.dialect.json_mark},"
                    " url = ?, kind = ?, fetch_url = CASE WHEN url = ? THEN fetch_url ELSE ? END"
                    " WHERE name = ?",
                    (json.dumps(dict(options), sort_keys=True), url, kind, url, url, name),
                )
            if paused is not None:
                tx.execute(
                    "UPDATE sources SET paused = ? WHERE name = ? AND (paused IS NULL) = ?",
                    (self.now() if paused else None, name, paused),
                )
            self._changed(tx)

    def remove_source(self, name: str) -> None:
        """Remove a source added at run time: it is marked removed (by the store's clock) and
        no longer fetched; its articles stay."""
        with self._write() as tx:
            self._added_source(tx, name)
            tx.execute(
                "UPDATE sources SET removed = ?, next_fetch = NULL, paused = NULL WHERE name = ?",
                (self.now(), name),
            )
            self._changed(tx)

    def added_sources(self) -> list[AddedSource]:
        """The sources added at run time and not removed, paused ones too, by name (read
        before every pull and by every worker each few seconds: no article is counted)."""
        return [
            record_of(AddedSource, row)
            for row in self._rows(
                "SELECT name, url, kind, options, paused FROM sources WHERE options IS NOT NULL"
                f" AND removed IS NULL ORDER BY name{self.dialect.bytewise}"
            )
        ]

    def _added_source(self, tx: Tx, name: str) -> None:
        row = tx.execute(
            "SELECT options IS NOT NULL AS added, removed FROM sources WHERE name = ?", [name]
        ).fetchone()
        if row is None or row["removed"] is not None:
            raise no_source(name)
        if not row["added"]:
            raise StoreError(f"source {name!r} is from the config file; change it there")

    def source_state(self, name: str) -> SourceState:
        row = self._row("SELECT * FROM sources WHERE name = ?", (name,))
        if row is None:
            raise no_source(name)
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
        """Remember how a fetch went: validators for the next conditional GET, failures, when
        to retry; the source's claim ends with it. (Nothing a page or a feed shows changes:
        the web caches are left alone.)"""
        sets = ["last_status = ?", "last_error = ?", "last_fetched = ?", "next_fetch = ?"]
        # The error is shown by `digest status` and /healthz: redacted.
        args: list[Any] = [status, redact.text(error) if error else None, self.now(), next_fetch]
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
            sets.append("enabled = FALSE")
        elif not error:
            sets.append("enabled = TRUE")
        sets += ["claimed_by = NULL", "claimed_until = NULL"]  # the pull that claimed it is over
        with self._write() as tx:
            tx.execute(f"UPDATE sources SET {', '.join(sets)} WHERE name = ?", (*args, name))

    def claim_source(self, name: str, holder: str, seconds: float) -> bool:
        """Hold source ``name`` for ``seconds`` while ``holder`` pulls it; False when another
        holder's claim is still running. ``record_fetch`` ends the claim. One statement, so
        two workers cannot both win."""
        now, later = self.dialect.now, self.dialect.later
        won = self._returning(
            f"UPDATE sources SET claimed_by = ?, claimed_until = {later} WHERE name = ?"
            f" AND (claimed_by IS NULL OR claimed_by = ? OR claimed_until <= {now}) RETURNING id",
            (holder, seconds, name, holder),
        )
        return bool(won)

    def source_urls(self) -> dict[str, str]:
        """Source name → the URL it is fetched from now."""
        return {row["name"]: row["fetch_url"] for row in self._rows("SELECT name, fetch_url FROM sources")}

    def source_summaries(self) -> list[SourceSummary]:
        """Every source with its fetch state and article count, by name."""
        return [
            source_summary_of(row) for row in self._rows(f"{_SUMMARY} ORDER BY s.name{self.dialect.bytewise}")
        ]


_SUMMARY = (
    "SELECT s.*, (SELECT count(*) FROM articles a WHERE a.source_id = s.id) AS articles,"
    " (SELECT max(first_seen) FROM articles a WHERE a.source_id = s.id) AS newest,"
    " CASE WHEN s.options IS NULL THEN 'config' ELSE 'store' END AS origin FROM sources s"
)


def source_state_of(row: Row) -> SourceState:
    # ``url`` is where to fetch now; ids keep the first name through renames.
    return record_of(SourceState, row, url=row["fetch_url"], id_name=row["id_name"] or row["name"])


def source_summary_of(row: Row) -> SourceSummary:
    """A row of sources with its ``articles`` count and its ``newest`` article's time."""
    return record_of(SourceSummary, row)
