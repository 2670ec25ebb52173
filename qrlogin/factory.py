"""The app factory: settings, services, blueprints and hooks put together."""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.middleware.proxy_fix import ProxyFix

from qrlogin import (
    accounts,
    admission,
    cli,
    devices,
    envelope,
    events,
    i18n,
    limits,
    logs,
    metrics,
    ops,
    pages,
    parking,
    passport,
    proxies,
    security,
    static_files,
)
from qrlogin import services as services_module
from qrlogin.browser import describe_user_agent
from qrlogin.config import MAX_BODY_BYTES, Settings
from qrlogin.oidc import service as oidc


class NoSession(SessionInterface):
    """qrlogin keeps no Flask session: its cookies (the browser binding, the login) are
    its own. Flask's signed-cookie session would build a signer for every request, for
    nothing; with this, ``flask.session`` is Flask's null session,
    which refuses writes."""

    def open_session(self, app: Flask, request: Request) -> None:
        return None

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    """Build the app from ``env`` (default: the process environment).

    Raises ``ConfigError`` when a setting is invalid.
    """
    settings = Settings.from_env(os.environ if env is None else env)
    logs.configure(settings.log_format)

    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=MAX_BODY_BYTES)
    app.session_interface = NoSession()
    if settings.trusted_proxies:
        # The last proxy (e.g. the Heroku router, nginx) sets X-Forwarded-Proto, -Host and
        # -Port; X-Forwarded-For gets one entry per hop. gunicorn.conf.py turns gunicorn's
        # own reading of these headers off, so this is the only one.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=1, x_host=1, x_port=1
        )
    services_module.init_app(app, settings)
    # Outermost: a parkable stream's response is written there, after every hook ran.
    app.wsgi_app = parking.wsgi(  # type: ignore[method-assign]
        app.wsgi_app, lambda: services_module.services(app).lot
    )
    # Admission control: a request the worker cannot take on now is refused before Flask.
    app.wsgi_app = app.extensions[admission.ENVIRON_KEY] = admission.wsgi(  # type: ignore[method-assign]
        app.wsgi_app, settings.max_inflight, settings.max_lag_ms, settings.max_slowdown
    )
    # Static files and the favicon, compressed and with validators, before Flask.
    app.wsgi_app = static_files.wsgi(app.wsgi_app)  # type: ignore[method-assign]
    logs.init_app(app)
    metrics.init_app(app)
    i18n.init_app(app)
    envelope.init_app(app)
    cli.init_app(app)
    limits.init_app(app)
    for blueprint in (accounts.bp, devices.bp, passport.bp, events.bp, ops.bp, pages.bp):
        app.register_blueprint(blueprint)
    oidc.init_app(app, services_module.services(app).oidc)
    limits.bypass_views(app)
    security.init_app(app, settings)
    proxies.init_app(app, settings)
    describe_user_agent("")  # load the user-agent rules now, not on the first request
    return app
