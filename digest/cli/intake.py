"""Intake commands: ``digest pull`` (fetch the sources, store what is new) and ``digest
sources`` (add, remove, pause, resume, list, import, export, rename). Each handler is a
thin call into ``digest.intake`` or the store, imported when the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from digest.cli.base import App, one_shot, tell_webhooks, write_file
from digest.common.errors import DigestError


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
        tell_webhooks(app, store)
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
    """Sources: those of the config file, and those added at run time (kept in the database)."""


@sources.command(name="add")
@click.argument("url")
@click.option("--name", metavar="NAME", help="Its name (default: from the URL's host).")
@click.option(
    "--kind", type=click.Choice(["auto", "feed", "html", "text"]), default="auto", show_default=True
)
@click.option(
    "--every", metavar="DURATION", help="Pull it this often (like 15m, 1h; default: [schedule] pull_every)."
)
@click.option(
    "--region",
    "regions",
    multiple=True,
    metavar="SLUG",
    help="What it is about when an article names no place (repeatable).",
)
@click.option("--label", metavar="TEXT", help="A category (OPML exports group by it).")
@click.pass_obj
def sources_add(
    app: App,
    url: str,
    name: str | None,
    kind: str,
    every: str | None,
    regions: tuple[str, ...],
    label: str | None,
) -> None:
    """Add a source: its URL is fetched once to check it (a page that names a feed becomes
    that feed); a running `digest run` takes it up within a minute."""
    from digest.intake.sources import add_source

    with app.store() as store:
        summary, found = add_source(
            app.settings, store, url, name=name, kind=kind, every=every, regions=regions, label=label
        )
    if found.followed:
        click.echo(f"{summary.name}: following the feed the page names: {found.url}", err=True)
    first = found.titles[0] if found.titles else "-"
    click.echo(f"{summary.name}: added ({found.items} items found, first: {first})")


@sources.command(name="remove")
@click.argument("name")
@click.pass_obj
def sources_remove(app: App, name: str) -> None:
    """Remove a source added at run time (its articles stay)."""
    from digest.intake.sources import remove_source

    with app.store() as store:
        remove_source(app.settings, store, name)
    click.echo(f"{name}: removed")


@sources.command(name="pause")
@click.argument("name")
@click.pass_obj
def sources_pause(app: App, name: str) -> None:
    """Stop pulling a source added at run time, until `resume`."""
    from digest.intake.sources import change_source

    with app.store() as store:
        change_source(app.settings, store, name, paused=True)
    click.echo(f"{name}: paused")


@sources.command(name="resume")
@click.argument("name")
@click.pass_obj
def sources_resume(app: App, name: str) -> None:
    """Pull a paused source again."""
    from digest.intake.sources import change_source

    with app.store() as store:
        change_source(app.settings, store, name, paused=False)
    click.echo(f"{name}: resumed")


@sources.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of objects.")
@click.pass_obj
def sources_list(app: App, as_json: bool) -> None:
    """Every source: where it comes from, its state, its articles."""
    import json

    from digest.intake.sources import listed, settings_named
    from digest.publish.objects import source_json

    with app.store() as store:
        found = [source_json(s, settings_named(app.settings, s.name)) for s in listed(app.settings, store)]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for source in found:
        origin = "config file" if source["origin"] == "config" else "added"
        state = "paused" if source["paused"] else ("failing" if source["consecutive_failures"] else "ok")
        click.echo(
            f"{source['name']}\t{source['articles']} articles\t{state}\t{origin}\t{source['fetch_url']}"
        )


@sources.command(name="import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def sources_import(app: App, path: Path) -> None:
    """Add the feeds of an OPML file (duplicates skipped, a line each; a bad file adds nothing)."""
    from digest.intake.sources import import_opml

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DigestError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with app.store() as store:
        done = import_opml(app.settings, store, data, where=str(path))
    for line in done.skipped:
        click.echo(f"skipped: {line}", err=True)
    click.echo(f"{path}: {len(done.added)} sources added, {len(done.skipped)} skipped")


@sources.command(name="export")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not to stdout."
)
@click.pass_obj
def sources_export(app: App, output: Path | None) -> None:
    """Every http(s) source as OPML 2.0."""
    from digest.intake.sources import export_opml

    with app.store() as store:
        body = export_opml(app.settings, store)
    if output is None:
        click.echo(body.decode("utf-8"), nl=False)
    else:
        write_file(output, body)


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
