"""``digest tokens``: the JSON API's bearer tokens. ``create`` prints a token once (only its
hash is kept: lost, it is revoked and made again); ``list`` shows them without their
secrets; ``revoke`` ends one at once, for every process serving the API."""

from __future__ import annotations

import click

from digest.cli.base import App


@click.group()
def tokens() -> None:
    """API tokens: create (printed once), list, revoke. The API answers once one exists."""


@tokens.command(name="create")
@click.argument("name")
@click.option(
    "--scope", type=click.Choice(["read", "write"]), required=True, help="read: GET only; write: all."
)
@click.pass_obj
def tokens_create(app: App, name: str, scope: str) -> None:
    """Make a token called NAME and print it (the only time it is shown)."""
    from digest.common.errors import DigestError
    from digest.web.api.framework import hashed, new_token

    if not name.strip() or len(name) > 64 or any(c.isspace() and c != " " for c in name):
        raise DigestError(f"{name!r}: a token's name is 1 to 64 characters on one line")
    secret = new_token()
    with app.store() as store:
        store.create_token(name.strip(), scope, hashed(secret))
    click.echo(f"token {name.strip()!r} ({scope}): keep it now, it is not shown again:", err=True)
    click.echo(secret)


@tokens.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of objects.")
@click.pass_obj
def tokens_list(app: App, as_json: bool) -> None:
    """Every token (revoked ones too): name, scope, made, last used."""
    import json

    from digest.common.dates import optional_iso as at

    with app.store() as store:
        found = [
            {"name": t.name, "scope": t.scope, "created": at(t.created), "last_used": at(t.last_used),
             "revoked": at(t.revoked)}
            for t in store.api_tokens()
        ]  # fmt: skip
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for token in found:
        state = (
            f"revoked {token['revoked']}"
            if token["revoked"]
            else f"last used {token['last_used'] or 'never'}"
        )
        click.echo(f"{token['name']}\t{token['scope']}\tmade {token['created']}\t{state}")


@tokens.command(name="revoke")
@click.argument("name")
@click.pass_obj
def tokens_revoke(app: App, name: str) -> None:
    """End the token called NAME: the API refuses it from now on."""
    with app.store() as store:
        store.revoke_token(name)
    click.echo(f"token {name!r}: revoked")


def register(cli: click.Group) -> None:
    cli.add_command(tokens)
