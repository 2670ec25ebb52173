"""``flask`` commands for operators and the main application's developers."""

from __future__ import annotations

import click
from flask import Flask

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
