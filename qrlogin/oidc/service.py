"""qrlogin as an OpenID Connect provider, put together: its parts, and the endpoints
with the loop that delivers back-channel logouts."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import Flask

from qrlogin.oidc.backchannel import Backchannel
from qrlogin.oidc.clients import Registry
from qrlogin.oidc.provider import Records
from qrlogin.oidc.signing import SigningKeys
from qrlogin.sessions import Sessions


@dataclass
class Oidc:
    registry: Registry
    keys: SigningKeys
    records: Records
    backchannel: Backchannel


def build(
    client: redis.Redis,
    sessions: Sessions,
    registry: Registry,
    rotate_s: int,
    secret_keys: tuple[str, ...],
) -> Oidc:
    keys = SigningKeys(client, rotate_s, secret_keys)
    backchannel = Backchannel(client, sessions, registry, keys)
    sessions.on_end = backchannel.session_ended
    return Oidc(registry, keys, Records(client), backchannel)


def init_app(app: Flask, oidc: Oidc) -> None:
    """The endpoints, Authlib's server, and (with a client that asks for back-channel
    logout) the loop that delivers it, started in each worker by its first request."""
    from qrlogin import security
    from qrlogin.oidc import provider, views

    provider.init_app(app, oidc.registry, oidc.keys, oidc.records, oidc.backchannel.signed_in)
    app.register_blueprint(views.bp)
    security.allow_cross_site(views.CROSS_SITE)
    if any(c.backchannel_logout_uri for c in oidc.registry):
        app.before_request(oidc.backchannel.start)
