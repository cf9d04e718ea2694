"""Intake commands: ``digest pull`` (fetch the sources, store what is new) and
``digest sources rename``. Each handler is a thin call into ``digest.intake`` or the store,
imported when the command runs.
"""

from __future__ import annotations

import sys

import click

from digest.cli.base import App, one_shot


@click.command()
@click.option("--source", "names", multiple=True, metavar="NAME", help="Pull only this source (repeatable).")
@click.option("--force", is_flag=True, help="Fetch even when a server asked us to wait.")
@click.pass_obj
def pull(app: App, names: tuple[str, ...], force: bool) -> None:
    """Fetch sources and store new articles; a line per source, exit 1 if any failed."""
    from digest.intake.pull import pull as pull_sources

    one_shot()
    with app.store() as store:
        reports = pull_sources(app.settings, store, names, force=force)
    for report in reports:
        for warning in report.warnings:
            click.echo(f"{report.name}: warning: {warning}", err=True)
        click.echo(report.summary(), err=not report.ok)
    if any(report.new or report.updated for report in reports):
        from digest.intake import websub

        for problem in websub.ping(app.settings):  # the feeds changed: tell the hub, if any
            click.echo(f"warning: {problem}", err=True)
    if not all(report.ok for report in reports):
        sys.exit(1)


@click.group()
def sources() -> None:
    """Manage sources in the database (the config says which there are)."""


@sources.command(name="rename")
@click.argument("old")
@click.argument("new")
@click.pass_obj
def sources_rename(app: App, old: str, new: str) -> None:
    """Rename a source, keeping its articles and their ids; then rename it in the config too."""
    with app.store() as store:
        store.rename_source(old, new)
    click.echo(f"{old}: renamed {new}; use name = {new!r} in {app.settings.origin} too")


def register(cli: click.Group) -> None:
    """Add this group's commands to the root command."""
    cli.add_command(pull)
    cli.add_command(sources)
