"""Service commands: ``digest init`` (a starter config), ``digest run`` (the long-running
service, or with --check only a check of its configuration) and ``digest status`` (sources,
recent digests, the next digest). The scheduler and the runner are imported when a command
runs, never at start-up.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from digest.cli.base import App, cannot_write
from digest.common.errors import DigestError


@click.command()
@click.argument("path", default="digest.toml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, force: bool) -> None:
    """Write a commented starter config to PATH (default: digest.toml)."""
    import shutil

    from digest.common.resources import bundled

    if path.exists() and not force:
        raise DigestError(f"{path}: already exists (use --force to overwrite)")
    try:
        shutil.copyfile(bundled("config.example.toml"), path)
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    click.echo(f"wrote {path}")


@click.command(name="run")
@click.option("--check", is_flag=True, help="Validate the configuration and exit.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def run_command(app: App, check: bool, log_format: str) -> None:
    """The service: scheduled pulls, the weekly digest and the web server, until SIGTERM."""
    from digest.common.dates import utcnow
    from digest.mail.schedule import cron_trigger
    from digest.service.runner import run_service

    settings = app.settings
    trigger = cron_trigger(settings)
    with app.store():
        pass  # the database opens, or one line says why not
    if check:
        click.echo(f"{settings.origin}: ok; next digest {trigger.get_next_fire_time(None, utcnow())}")
        return
    sys.exit(run_service(settings, log_format=log_format))


@click.command()
@click.pass_obj
def status(app: App) -> None:
    """Sources (last fetch, status, next fetch, articles, last error), recent digests, next digest."""
    from digest.common import redact
    from digest.common.dates import human
    from digest.intake.sync import sync_sources
    from digest.mail.schedule import next_due

    with app.store() as store:
        sync_sources(store, app.settings)
        sources = store.source_summaries()
        digests = store.digests(limit=5)
        now = store.now()
        next_digest = next_due(store, app.settings, now)
    zone = app.settings.schedule.timezone
    click.echo("Sources")
    for source in sources:
        fetched = human(source.last_fetched, zone, now=now) if source.last_fetched else "never"
        line = f"  {source.name:<16} {source.articles:>6} articles  last {fetched:<22}"
        if source.removed:
            line += f" removed from the config on {source.removed:%Y-%m-%d} (its articles stay)"
        else:
            next_fetch = human(source.next_fetch, zone, now=now) if source.next_fetch else "now"
            line += f" status {source.last_status or '-':<4} next {next_fetch}"
        click.echo(line)
        if source.last_error:
            error = redact.text(source.last_error)
            click.echo(f"  {'':<16} error ({source.consecutive_failures}x): {error}")
    click.echo("Digests")
    for d in digests:
        counts = f"sent {d.sent}, failed {d.failed}, pending {d.pending}"
        click.echo(f"  {d.digest.id:<22} {d.digest.status:<8} {counts}")
    if not digests:
        click.echo("  none yet")
    shown = human(next_digest, zone, now=now) if next_digest else "never"
    click.echo(f"Next digest: {shown} ({app.settings.schedule.digest_cron}, {zone})")


def register(cli: click.Group) -> None:
    """Add this group's commands to the root command."""
    cli.add_command(init)
    cli.add_command(run_command)
    cli.add_command(status)
