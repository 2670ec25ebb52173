"""The per-app objects every blueprint uses, kept in ``app.extensions``."""

from __future__ import annotations

import resource
from dataclasses import dataclass

import redis
from flask import Flask, current_app

from qrlogin import engine
from qrlogin import sessions as sessions_module
from qrlogin.config import Settings
from qrlogin.geo import Locator
from qrlogin.holds import Holds, descriptor_budget
from qrlogin.hub import Hub
from qrlogin.lot import Lot
from qrlogin.lua import LIVE_SOURCE, SOURCE
from qrlogin.oidc.service import Oidc, build
from qrlogin.sessions import Sessions
from qrlogin.store import Store
from qrlogin.tokens import Tokens
from qrlogin.userjwt import UserJwt

EXTENSION = "qrlogin"


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    store: Store
    tokens: Tokens
    hub: Hub
    lot: Lot
    locator: Locator
    holds: Holds
    sessions: Sessions
    oidc: Oidc


def init_app(app: Flask, settings: Settings) -> Services:
    client = engine.connect(settings)
    store = Store(
        client,
        settings.qr_ttl_s,
        max_live_qrs=settings.max_live_qrs if settings.rate_limits else 0,
        source=engine.script_source(settings, SOURCE),
        live_source=engine.script_source(settings, LIVE_SOURCE),
        reveal_on_confirm=settings.reveal_scanner == "confirm",
    )
    hub = Hub(engine.topology(settings, client), store.versions)
    holds = _holds(settings)
    sessions = Sessions(
        client,
        settings.session_idle_s,
        settings.session_max_age_s,
        source=engine.script_source(settings, sessions_module.SOURCE),
    )
    services = Services(
        settings=settings,
        redis=client,
        store=store,
        tokens=Tokens(
            settings.secret_key,
            settings.user_token_max_age_s,
            settings.login_token_max_age_s,
            fallbacks=settings.secret_key_fallbacks,
            user_jwt=UserJwt(
                settings.user_jwt_key,
                settings.user_jwks_url,
                settings.user_jwt_issuer,
                settings.user_jwt_audience,
            ),
        ),
        hub=hub,
        lot=Lot(hub, holds, store.read, settings.sse_heartbeat_s),
        locator=Locator(settings.geoip_db),
        holds=holds,
        sessions=sessions,
        oidc=build(
            client,
            sessions,
            settings.oidc_clients,
            settings.oidc_key_rotation_s,
            (settings.secret_key, *settings.secret_key_fallbacks),
        ),
    )
    app.extensions[EXTENSION] = services
    return services


def _holds(settings: Settings) -> Holds:
    """The held-connection caps, none when the limits are off (load tests, benchmarks);
    and, always, the process's descriptor budget. (A gunicorn worker lifts its soft limit
    to the hard one before the app is built: gunicorn.conf.py.)"""
    descriptors, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    most = 0 if descriptors == resource.RLIM_INFINITY else descriptor_budget(descriptors)
    if not settings.rate_limits:
        return Holds(0, 0, 0, most=most)
    return Holds(
        settings.max_held_per_qr,
        settings.max_held_per_binding,
        settings.max_held_per_ip,
        per_session=settings.max_held_per_session,
        per_user=settings.max_held_per_user,
        most=most,
    )


def services(app: Flask | None = None) -> Services:
    """The services of ``app``, by default the app handling the current request."""
    found: Services = (current_app if app is None else app).extensions[EXTENSION]
    return found
