"""The ``digest`` command line: the root command (``--config``, ``--version``) with every
command group's commands on it, and the console-script entry point `main`. Each command is
a thin layer over a library function; the groups live one a module beside this one
(service, intake, reading, publish, subscribers, mail, database), what they share in
`digest.cli.base`.

Exit status: 0 on success, 1 on a handled error (one line on stderr, no traceback), 2 on a
usage error.
"""

from __future__ import annotations

import click

from digest import __version__
from digest.cli import admin, database, intake, mail, publish, reading, service, subscribers, tokens
from digest.cli.base import App, DigestGroup

# Named here too for the callers that knew them when every command lived in this module.
from digest.cli.publish import FORMATS

__all__ = ["FORMATS", "cli", "main"]


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Config file (default: $DIGEST_CONFIG, else ./digest.toml, else the embedded default).",
)
@click.version_option(__version__, prog_name="digest")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """digest: news sources in, feeds and weekly email digests out."""
    ctx.obj = App(config_path)


# Each group module imports only click and digest.cli.base at start-up, so registering them
# all costs `digest --help` nothing it did not pay before.
for register in (
    service.register,
    intake.register,
    reading.register,
    publish.register,
    subscribers.register,
    mail.register,
    database.register,
    tokens.register,
    admin.register,
):
    register(cli)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="digest")
