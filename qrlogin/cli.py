"""``flask`` commands for operators and the main application's developers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from flask import Flask
from flask.cli import with_appcontext

from qrlogin.exceptions import ConfigError
from qrlogin.oidc import clients
from qrlogin.services import services


def init_app(app: Flask) -> None:
    @app.cli.command("mint-user-token")
    @click.argument("user_id")
    @click.option("--name", required=True, help="Display name shown in the browser.")
    @click.option("--avatar", default=None, help="Avatar URL shown in the browser.")
    def mint_user_token(user_id: str, name: str, avatar: str | None) -> None:
        """Print a user token (the mobile app's Bearer token) for USER_ID."""
        if not 1 <= len(user_id) <= 128:
            raise click.BadParameter("must be 1 to 128 characters", param_hint="USER_ID")
        click.echo(services().tokens.mint_user(user_id, name, avatar))

    @app.cli.command("audit")
    @click.option("--qr", "qr_id", default=None, help="Only this QR's entries.")
    @click.option("--count", default=50, show_default=True, help="How many entries, newest last.")
    def audit(qr_id: str | None, count: int) -> None:
        """Print the audit trail: every transition with its time, IP and user agent."""
        for entry in services().store.audit_trail(qr_id, count):
            at = datetime.fromtimestamp(int(entry["at"]) / 1000, UTC).isoformat(
                timespec="milliseconds"
            )
            click.echo(
                f"{at}  {entry['event']:<13} qr={entry['qr']} v{entry['version']} "
                f"{entry['status']:<15} user={entry['user'] or '-'} ip={entry['ip'] or '-'} "
                f"ua={entry['user_agent'] or '-'!r}"
            )

    app.cli.add_command(keys_group)
    app.cli.add_command(clients_group)


@click.group("keys")
def keys_group() -> None:
    """The OpenID Connect provider's signing keys."""


@keys_group.command("rotate")
@with_appcontext
def rotate() -> None:
    """Replace the signing keys now (the old ones stay published until their tokens expire)."""
    made = services().oidc.keys.rotate()
    if not made:
        raise click.ClickException("another process is rotating the keys now; try again")
    click.echo(f"new signing keys: {', '.join(made)}")


@click.group("clients")
def clients_group() -> None:
    """Write the list of OpenID Connect clients (QRLOGIN_OIDC_CLIENTS)."""


def _listed(path: str | None) -> list[dict[str, Any]]:
    """The clients in the file at ``path``, or else the service's (QRLOGIN_OIDC_CLIENTS)."""
    try:
        found = (
            clients.parse(path)
            if path and Path(path).exists()
            else services().settings.oidc_clients
        )
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    return [c.to_json() for c in found]


@clients_group.command("add")
@with_appcontext
@click.argument("name")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    required=True,
    help="Where the code goes back to (repeat for more); matched exactly.",
)
@click.option("--public", is_flag=True, help="A single-page or native app: no secret, PKCE.")
@click.option("--backchannel-logout-uri", default=None, help="Where logout tokens are posted.")
@click.option(
    "--post-logout-redirect-uri",
    "post_logout",
    multiple=True,
    help="Where RP-initiated logout may send the browser afterwards.",
)
@click.option(
    "--alg",
    type=click.Choice(clients.ALGORITHMS),
    default="RS256",
    show_default=True,
    help="The ID token's signature.",
)
@click.option(
    "--file",
    "path",
    default=None,
    help="The JSON file to add it to (made when missing); else the list is printed.",
)
def add(  # noqa: PLR0917 (click passes each option as an argument)
    name: str,
    redirect_uris: tuple[str, ...],
    public: bool,
    backchannel_logout_uri: str | None,
    post_logout: tuple[str, ...],
    alg: str,
    path: str | None,
) -> None:
    """Register a client NAME with a new id (and secret): the list, with it, is written
    to --file, or printed, from QRLOGIN_OIDC_CLIENTS's."""
    listed = _listed(path)
    try:
        client = clients.new_client(name, redirect_uris, public=public, alg=alg,
                                    backchannel_logout_uri=backchannel_logout_uri,
                                    post_logout_redirect_uris=post_logout)  # fmt: skip
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    text = json.dumps([*listed, client.to_json()], indent=2)
    if path:
        Path(path).write_text(text + "\n", encoding="utf-8")
        click.echo(f"added {client.client_id} to {path}; set QRLOGIN_OIDC_CLIENTS={path}", err=True)
    else:
        click.echo(text)


@clients_group.command("list")
@with_appcontext
@click.option("--file", "path", default=None, help="The JSON file (default: QRLOGIN_OIDC_CLIENTS).")
def list_clients(path: str | None) -> None:
    """Each client's id, kind and redirect URIs (never its secret)."""
    for entry in _listed(path):
        kind = "confidential" if entry.get("client_secret") else "public"
        click.echo(f"{entry['client_id']}  {kind:<12} {' '.join(entry['redirect_uris'])}")
