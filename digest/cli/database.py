"""Database commands: ``digest backup`` (a consistent SQLite copy while digest runs) and
``digest db copy`` (the whole database between SQLite and PostgreSQL). Thin calls into
``digest.store``, imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli.base import App
from digest.common.errors import DigestError


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def backup(app: App, path: Path) -> None:
    """Copy the database to a new SQLite file PATH while digest keeps running."""
    if not path.parent.is_dir():
        raise DigestError(f"{path}: folder {path.parent} does not exist")
    with app.store() as store:
        store.backup(path)
    click.echo(f"backed up {app.settings.database.shown} to {path}")


@click.group()
def db() -> None:
    """Move the whole database between SQLite and PostgreSQL."""


@db.command(name="copy")
@click.option("--to", "to_url", metavar="URL", help="Copy the configured database into this (empty) one.")
@click.option("--from", "from_url", metavar="URL", help="Copy this database into the configured (empty) one.")
@click.pass_obj
def db_copy(app: App, to_url: str | None, from_url: str | None) -> None:
    """Copy every article, subscriber, digest and setting (the token secret too, so links in
    sent emails keep working) between the configured database and URL: sqlite:///PATH or
    postgresql://USER@HOST:PORT/DBNAME. The target must be empty. A password for the other
    database comes from PGPASSWORD or ~/.pgpass (or DIGEST_DATABASE_PASSWORD when the
    configured database is SQLite)."""
    from digest.config import database_at
    from digest.store import open_database
    from digest.store.copy import copy_database

    if (to_url is None) == (from_url is None):
        raise click.UsageError("give exactly one of --to URL or --from URL")
    here = app.settings.database
    option = "--to" if to_url else "--from"
    other = database_at(to_url or from_url or "", option, password="" if here.url else here.password)
    source, target = (here, other) if to_url else (other, here)
    if not source.url and not source.path.is_file():
        raise DigestError(f"{source.path}: no such database to copy from")
    with open_database(source) as reading, open_database(target) as writing:
        counts = copy_database(reading, writing)
    copied = ", ".join(
        f"{counts.get(t, 0)} {t}" for t in ("articles", "subscribers", "digests", "deliveries")
    )
    click.echo(f"copied {source.shown} to {target.shown}: {copied}")


def register(cli: click.Group) -> None:
    """Add this group's commands to the root command."""
    cli.add_command(backup)
    cli.add_command(db)
