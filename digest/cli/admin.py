"""``digest admin``: accounts of the operators' console. Passwords come from a prompt (asked
twice) or, with ``--password-stdin``, from the first line of standard input (scripts), and
are kept as argon2id hashes only; the console answers once an account exists. A new
password ends every session of the account."""

from __future__ import annotations

import sys

import click

from digest.cli.base import App

MIN_PASSWORD = 12  # characters


@click.group()
def admin() -> None:
    """Console accounts: add, remove, list, password."""


def _password(from_stdin: bool) -> str:
    from digest.common.errors import DigestError

    if from_stdin:
        given = sys.stdin.readline().rstrip("\r\n")
    else:
        given = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(given) < MIN_PASSWORD:
        raise DigestError(f"a password has at least {MIN_PASSWORD} characters")
    return given


def _name(name: str) -> str:
    from digest.common.errors import DigestError

    cleaned = name.strip()
    if not cleaned or len(cleaned) > 64 or any(c.isspace() or ord(c) < 32 for c in cleaned):
        raise DigestError(f"{name!r}: an account's name is 1 to 64 characters, without spaces")
    return cleaned


@admin.command(name="add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input's first line.")
@click.pass_obj
def admin_add(app: App, name: str, password_stdin: bool) -> None:
    """Make a console account called NAME."""
    from digest.web.console.accounts import hashed_password

    chosen = _name(name)
    secret = _password(password_stdin)
    with app.store() as store:
        store.add_admin(chosen, hashed_password(secret))
    click.echo(f"{chosen}: added; the console is at {app.settings.site.base_url}/admin/")


@admin.command(name="password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input's first line.")
@click.pass_obj
def admin_password(app: App, name: str, password_stdin: bool) -> None:
    """Give NAME a new password (every session of the account ends)."""
    from digest.web.console.accounts import hashed_password

    secret = _password(password_stdin)
    with app.store() as store:
        store.set_admin_password(name, hashed_password(secret))
    click.echo(f"{name}: password changed; logged out everywhere")


@admin.command(name="remove")
@click.argument("name")
@click.pass_obj
def admin_remove(app: App, name: str) -> None:
    """Delete the account NAME and its sessions (the audit log keeps what it did)."""
    with app.store() as store:
        store.remove_admin(name)
    click.echo(f"{name}: removed")


@admin.command(name="list")
@click.pass_obj
def admin_list(app: App) -> None:
    """Every account: name, made, last login."""
    from digest.common.dates import to_iso

    with app.store() as store:
        found = store.admins()
    for account in found:
        last = to_iso(account.last_login) if account.last_login else "never"
        click.echo(f"{account.name}\tmade {to_iso(account.created)}\tlast login {last}")


def register(cli: click.Group) -> None:
    cli.add_command(admin)
