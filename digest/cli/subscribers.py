"""The ``digest subscribers`` commands: add, remove, reactivate, list, import, export. Each is
a thin call into ``digest.subscribers.lifecycle`` or the store; ``digest.publish.objects``
makes the ``list --json`` object (a contract).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from digest.cli.base import App, warn
from digest.common.errors import DigestError
from digest.common.models import CADENCES

if TYPE_CHECKING:
    pass


@click.group()
def subscribers() -> None:
    """Manage subscribers: add, remove, list, import, export."""


def _slugs(app: App) -> tuple[list[str], list[str]]:
    from digest.grouping.regions import regions
    from digest.grouping.themes import taxonomy_for

    return list(regions()), list(taxonomy_for(app.settings).titles())


@subscribers.command(name="add")
@click.argument("email")
@click.option("--region", "regions_", multiple=True, metavar="SLUG", help="Only these regions (repeatable).")
@click.option("--theme", "themes_", multiple=True, metavar="SLUG", help="Only these themes (repeatable).")
@click.option("--confirmed", is_flag=True, help="Active at once, without a confirmation email.")
@click.option("--cadence", type=click.Choice(CADENCES), help="Their own rhythm (default: [digest] cadence).")
@click.option(
    "--timezone", metavar="ZONE", help="IANA time zone of their hour (default: [schedule] timezone)."
)
@click.option("--hour", metavar="0-23", help="Local hour their digest is due (default: 8).")
@click.option("--weekday", metavar="DAY", help="For weekly: mon … sun (default: mon).")
@click.option(
    "--topic", "topics", multiple=True, metavar="QUERY", help="A search topic (repeatable, up to 5)."
)
@click.pass_obj
def subscribers_add(
    app: App,
    email: str,
    regions_: tuple[str, ...],
    themes_: tuple[str, ...],
    confirmed: bool,
    topics: tuple[str, ...],
    cadence: str | None,
    timezone: str | None,
    hour: str | None,
    weekday: str | None,
) -> None:
    """Add a subscriber (pending, with a confirmation email, unless --confirmed). Without
    --cadence (and no [digest] cadence) they follow the site's digest_cron."""
    import asyncio

    from digest.mail.send import send_confirmation
    from digest.subscribers.lifecycle import add as add_subscriber
    from digest.subscribers.lifecycle import check_slugs, defaults_for

    known_regions, known_themes = _slugs(app)
    chosen_regions = check_slugs(regions_, known_regions, "region")
    chosen_themes = check_slugs(themes_, known_themes, "theme")
    with app.store() as store:
        added = add_subscriber(
            store,
            email,
            regions=chosen_regions,
            themes=chosen_themes,
            confirmed=confirmed,
            rhythm={
                k: v
                for k, v in (
                    ("cadence", cadence),
                    ("timezone", timezone),
                    ("hour", hour),
                    ("weekday", weekday),
                )
                if v is not None
            },
            topics=topics or None,
            defaults=defaults_for(app.settings),
        )
        if added.status == "pending":
            where = asyncio.run(send_confirmation(store, app.settings, added))
            click.echo(f"{added.email}: pending; confirmation sent ({where})")
        else:
            click.echo(f"{added.email}: {added.status}")


@subscribers.command(name="remove")
@click.argument("email")
@click.pass_obj
def subscribers_remove(app: App, email: str) -> None:
    """Delete a subscriber and their delivery history."""
    from digest.common.addresses import normalise_email

    with app.store() as store:
        if not store.delete_subscriber(normalise_email(email)):
            raise DigestError(f"{email}: no such subscriber")
    click.echo(f"{email}: removed")


@subscribers.command(name="reactivate")
@click.argument("email")
@click.pass_obj
def subscribers_reactivate(app: App, email: str) -> None:
    """Mail a bounced subscriber again (the log records it)."""
    from digest.subscribers.lifecycle import reactivate

    with app.store() as store:
        found = reactivate(store, email)
    click.echo(f"{found.email}: {found.status} again")


@subscribers.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--status",
    type=click.Choice(["pending", "active", "unsubscribed", "bounced"]),
    help="Only these (bounced: the suppression list, never mailed).",
)
@click.pass_obj
def subscribers_list(app: App, as_json: bool, status: str | None) -> None:
    """List subscribers: email, status, regions, themes, times."""
    from digest.common.dates import human
    from digest.common.rhythms import described
    from digest.mail.schedule import next_due

    with app.store() as store:
        found = store.subscribers()
        now = store.now()
        site_due = next_due(store, app.settings, now)
    found = [s for s in found if status is None or s.status == status]
    if as_json:
        from digest.publish.objects import subscriber_json

        click.echo(json.dumps([subscriber_json(s) for s in found], indent=2))
        return
    schedule = app.settings.schedule
    for subscriber in found:
        rhythm = subscriber.rhythm
        if rhythm is None:
            when = f"with everyone ({schedule.digest_cron}, {schedule.timezone})"
            due, zone = site_due, schedule.timezone
        else:
            when, due, zone = described(rhythm), subscriber.next_due, rhythm.timezone
        if subscriber.status == "active" and due is not None:
            when += f", next {human(due, zone, now=now)}"
        prefs = " ".join(subscriber.regions + subscriber.themes) or "everything"
        topics = "".join(f' "{topic}"' for topic in subscriber.topics)
        reason = f"  ({subscriber.reason})" if subscriber.reason else ""
        click.echo(f"{subscriber.email:<32} {subscriber.status:<12} {when}; {prefs}{topics}{reason}")
    click.echo(f"{len(found)} subscriber{'s' if len(found) != 1 else ''}")


@subscribers.command(name="import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def subscribers_import(app: App, path: Path) -> None:
    """Import subscribers from CSV (header row; email, status, regions, themes, cadence,
    timezone, hour, weekday, topics)."""
    from digest.subscribers.lifecycle import defaults_for, import_csv

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DigestError(f"{path}: cannot read: {exc}") from exc
    known_regions, known_themes = _slugs(app)
    with app.store() as store:
        report = import_csv(
            text, store, known_regions, known_themes, origin=str(path), defaults=defaults_for(app.settings)
        )
    for warning in report.warnings:
        warn(warning)
    for error in report.errors:
        click.echo(error, err=True)
    click.echo(f"{path}: {report.added} added, {report.updated} updated, {len(report.errors)} rejected")
    if report.errors:
        sys.exit(1)


@subscribers.command(name="export")
@click.pass_obj
def subscribers_export(app: App) -> None:
    """Write every subscriber as CSV to stdout."""
    from digest.subscribers.lifecycle import export_csv

    with app.store() as store:
        click.echo(export_csv(store), nl=False)


def register(cli: click.Group) -> None:
    """Add this group's commands to the root command."""
    cli.add_command(subscribers)
