"""``flask`` commands for operators and the main application's developers."""

from __future__ import annotations

from datetime import UTC, datetime

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
