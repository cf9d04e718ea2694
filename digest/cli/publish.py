"""Publishing commands: ``digest feed`` (one feed to stdout or a file), ``digest publish``
(the whole site as static files) and ``digest serve`` (the same over HTTP). The feed writers
and the web app are imported when a command runs, never at start-up.
"""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli.base import App, cannot_write, known_region, write_file

# publish.OUTPUTS, named here so that --help need not load the writers (a test holds the two
# to the same list)
FORMATS = ("atom", "rss", "json")


@click.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="atom", show_default=True)
@click.option("--region", callback=known_region, metavar="SLUG", help="The feed of one region.")
@click.option("--theme", metavar="SLUG", help="The feed of one theme.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not to stdout."
)
@click.pass_obj
def feed(app: App, fmt: str, region: str | None, theme: str | None, output: Path | None) -> None:
    """Write a feed: the whole site, or one region or theme."""
    from digest.publish.site import Site

    if region and theme:
        raise click.UsageError("give --region or --theme, not both")
    site = Site(app.settings)
    kind, slug = ("region", region) if region else ("theme", theme) if theme else ("site", None)
    spec = site.spec(kind, slug)
    if spec is None:
        raise click.BadParameter(
            f"{slug!r} is not one of {', '.join(site.names['themes'])}", param_hint="'--theme'"
        )
    with app.store() as store:
        body, _ = site.feed(store, spec, fmt)
    if output is None:
        click.echo(body.decode(), nl=False)
        return
    write_file(output, body)


@click.command(name="publish")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def publish_command(app: App, folder: Path) -> None:
    """Write the whole public site (pages, feeds, OPML) to FOLDER as static files."""
    from digest.publish.site import publish_site

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with app.store() as store:
            written = publish_site(app.settings, store, folder)
    except OSError as exc:
        raise cannot_write(folder, exc) from exc
    click.echo(f"wrote {written} files to {folder}")


@click.command()
@click.option("--host", help="Address to listen on (default: [web] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: [web] port, 8080).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def serve(app: App, host: str | None, port: int | None, log_format: str) -> None:
    """Serve the feeds and pages over HTTP."""
    import logging

    import uvicorn

    from digest.mail.channels import destination
    from digest.service.logs import configure_logging
    from digest.web.app import create_app
    from digest.web.listen import listening_socket

    settings = app.settings
    with app.store():
        pass  # fail here, with one line, if the database cannot be opened
    host, port = host or settings.web.host, settings.web.port if port is None else port
    sock = listening_socket(host, port)  # a port in use: one line, not uvicorn's traceback
    configure_logging(log_format)
    log = logging.getLogger("digest")
    log.info("feeds and pages: http://%s:%d/", host, sock.getsockname()[1], extra={"event": "web"})
    log.info("confirmations of sign-ups: %s", destination(settings), extra={"event": "web"})
    config = uvicorn.Config(create_app(settings), log_config=None, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def register(cli: click.Group) -> None:
    """Add this group's commands to the root command."""
    cli.add_command(feed)
    cli.add_command(publish_command)
    cli.add_command(serve)
