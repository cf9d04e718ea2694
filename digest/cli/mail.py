"""Mail commands: ``digest preview`` (render a digest, send nothing), ``digest send`` (resume
unfinished deliveries, then send to whoever is due) and ``digest dkim keygen``. The mail
stack is imported when a command runs, never at start-up.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from digest.cli.base import App, moment_option, one_shot, tell_webhooks, write_file
from digest.common.errors import DigestError

if TYPE_CHECKING:
    from digest.store import SubscribersStore


@click.command()
@click.option("--for", "for_email", metavar="EMAIL", help="As this subscriber would get it.")
@moment_option("--since", "Articles first seen since (default: a week ago).")
@moment_option("--at", "As if it were this moment (default: now).")
@click.option("--format", "fmt", type=click.Choice(["html", "text"]), default="html", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def preview(
    app: App,
    for_email: str | None,
    since: datetime | None,
    at: datetime | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Render a digest and send nothing (with --for: that subscriber's next digest so far)."""
    from digest.mail.send import preview_body

    with app.store() as store:
        body = preview_body(store, app.settings, email=for_email, since=since, part=fmt, now=at)
    if output is None:
        click.echo(body, nl=False)
    else:
        write_file(output, body.encode())


@click.command()
@click.option(
    "--to",
    "to_email",
    metavar="EMAIL",
    help="Send one copy to this address, outside the ledger (template tests).",
)
@moment_option("--since", "Every digest starts here instead of at each subscriber's last one.")
@moment_option("--at", "Act as if it were this moment: send to whoever is due then (catching up, tests).")
@click.option(
    "--everyone",
    is_flag=True,
    help="Every active subscriber gets their digest now, whatever their rhythm (which goes on"
    " as it was, its next digest starting where this one ends).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send nothing, record nothing.")
@click.pass_obj
def send(
    app: App, to_email: str | None, dry_run: bool, since: datetime | None, at: datetime | None, everyone: bool
) -> None:
    """Resume unfinished deliveries, then send a digest to every subscriber due now: those on
    a rhythm of their own whose due time has passed, and those on the site's schedule (with
    --everyone: every active subscriber)."""
    import asyncio

    from digest.common.addresses import normalise_email
    from digest.mail.send import dry_run_lines, send_all, send_test_copy

    one_shot()
    with app.store() as store:
        if to_email:
            where = asyncio.run(send_test_copy(store, app.settings, normalise_email(to_email), since))
            click.echo(f"sent a test copy to {to_email} ({where})")
            return
        following = None if everyone else _who_is_next(store, at or store.now())
        if dry_run:
            for line in dry_run_lines(store, app.settings, since, at, everyone=everyone):
                click.echo(line)
            if following:
                click.echo(following)
            return
        progress = _Progress() if sys.stderr.isatty() else None
        try:
            reports = asyncio.run(
                send_all(
                    store,
                    app.settings,
                    now=at,
                    progress=progress.step if progress else None,
                    since=since,
                    everyone=everyone,
                )
            )
        finally:
            if progress:
                progress.done()
        tell_webhooks(app, store)
    if not reports:
        click.echo("nothing to send: no subscriber due has anything new")
        if following:
            click.echo(following)
    for report in reports:
        click.echo(report.summary(), err=bool(report.failed or report.deferred))
    if app.settings.smtp is None and any(r.sent for r in reports):
        # "sent" would mislead: with no [smtp] server, nothing left this machine.
        click.echo(f"no [smtp] server is set: the messages were written to {app.settings.outbox.path}/")
    if any(r.failed or r.deferred for r in reports):
        sys.exit(1)


def _who_is_next(store: SubscribersStore, now: datetime) -> str | None:
    """The line that says when the next readers on a rhythm of their own are due, and how
    to send them theirs now; None when nobody has a rhythm of their own."""
    from digest.common.dates import human

    found = store.next_due_after(now)
    if found is None:
        return None
    when, count = found
    return (
        f"next: {count} subscriber{'s' if count != 1 else ''} due {human(when, now=now)};"
        " `digest send --everyone` sends every subscriber their digest now"
    )


class _Progress:
    """A running count on the terminal while a digest goes out."""

    def __init__(self) -> None:
        self.count = 0

    def step(self, n: int) -> None:
        self.count += n
        click.echo(f"\rsending: {self.count}", nl=False, err=True)

    def done(self) -> None:
        if self.count:
            click.echo("", err=True)


@click.group()
def dkim() -> None:
    """DKIM signing keys ([dkim] domain, selector, key_file)."""


@dkim.command(name="keygen")
@click.option("--algorithm", type=click.Choice(["rsa", "ed25519"]), default="rsa", show_default=True)
@click.pass_obj
def dkim_keygen(app: App, algorithm: str) -> None:
    """Write a new private key to [dkim] key_file (mode 0600, never over an existing file)
    and print the DNS TXT record to publish."""
    from digest.mail.dkim import keygen

    config = app.settings.dkim
    if config is None:
        raise DigestError(f"{app.settings.origin}: no [dkim] section: set domain, selector and key_file")
    record = keygen(config.key_file, algorithm, config.domain, config.selector)
    click.echo(f"wrote {config.key_file} (keep it secret); publish this DNS record:", err=True)
    click.echo(record)


def register(cli: click.Group) -> None:
    """Add this group's commands to the root command."""
    cli.add_command(preview)
    cli.add_command(send)
    cli.add_command(dkim)
