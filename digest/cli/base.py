"""What every command group shares: the root group class (the one place an expected error
becomes one ``digest: error: ...`` line on stderr and exit status 1), the settings and the
store (`App`), the option checks several groups use, and writing a file.

This module imports only click and the small shared modules: the command groups import it
at start-up, so anything heavier would slow ``digest --help``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from digest.common.errors import DigestError

if TYPE_CHECKING:
    from digest.config import Settings
    from digest.store import Store


class DigestGroup(click.Group):
    """Turns expected failures (DigestError) into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            click.echo(f"digest: error: {exc}", err=True)
            ctx.exit(1)


def warn(message: str) -> None:
    """Say on stderr something the user should know that does not stop the command."""
    click.echo(f"digest: warning: {message}", err=True)


def one_shot() -> None:
    """For a command that makes a big batch and exits: collect cycles rarely. A pull of 5,000
    items makes millions of objects and few cycles; the default thresholds spent about half
    a second of it scanning the same live objects again and again."""
    import gc

    gc.freeze()  # what start-up loaded lives as long as the process
    gc.set_threshold(10_000, 50, 50)


class App:
    """What commands share: the settings (loaded on first use) and the store."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The settings from ``--config`` (or its defaults); their warnings said once."""
        if self._settings is None:
            from digest.config import load_settings

            self._settings = load_settings(self.config_path)
            for warning in self._settings.warnings:
                warn(warning)
        return self._settings

    def store(self) -> Store:
        """The configured database, opened (a context manager: close it after use)."""
        from digest.store import open_database

        return open_database(self.settings.database)


def tell_webhooks(app: App, store: Store) -> None:
    """After a one-off command: queue what happened for the outgoing webhooks and send
    what is due (once; `digest run` retries what fails). Nothing without an endpoint."""
    from digest.common.dates import utcnow
    from digest.publish.events import endpoints
    from digest.service.webhooks import run_once
    from digest.store.holders import holder_name

    if not endpoints(app.settings, store):
        return
    done = run_once(store, app.settings, holder_name(), utcnow())
    if done.retrying or done.failed:
        warn(f"webhooks: {done.delivered} delivered, {done.retrying} to retry (digest run retries them)")


F = TypeVar("F", bound=Callable[..., Any])


def moment_option(name: str, help: str) -> Callable[[F], F]:
    """An option that takes an ISO 8601 moment (:func:`iso_moment`)."""
    return click.option(name, callback=iso_moment, metavar="ISO", help=help)


def iso_moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """Option callback: an ISO 8601 date or time, read as UTC when it names no zone."""
    if value is None:
        return None
    from digest.common.dates import given_moment

    try:
        return given_moment(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time (such as 2026-11-01)") from None


def known_region(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Option callback: a region slug, one of the regions the classifier knows."""
    if value is None:
        return None
    from digest.grouping.regions import regions

    if value not in regions():
        raise click.BadParameter(f"{value!r} is not one of {', '.join(regions())}")
    return value


def cannot_write(path: Path, exc: OSError) -> DigestError:
    """The error for a file or folder that could not be written: its path and the reason."""
    return DigestError(f"{path}: cannot write: {exc.strerror or exc}")


def write_file(path: Path, body: bytes) -> None:
    """Write ``body`` to ``path``, and say where on stderr (stdout stays the command's
    output); a failure is one line naming the path."""
    try:
        path.write_bytes(body)
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    click.echo(f"{path}: written ({len(body):,} bytes)", err=True)
