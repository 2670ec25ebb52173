"""Rate limits (flask-limiter on the service's Redis): QR creation per IP, mobile steps
per user, polling per QR. Every breach is 429 ``SLOW_DOWN`` with ``Retry-After``.

The cap on live QR codes per browser is kept atomically by the store instead.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, g, request
from flask_limiter import Limiter, RequestLimit

from qrlogin.accounts import signed_in_user
from qrlogin.config import Settings
from qrlogin.envelope import error_response, json_body
from qrlogin.exceptions import QRLoginError, SlowDown

EXTENSION = "qrlogin.limiter"


def client_ip() -> str:
    return request.remote_addr or "-"


def user_key() -> str:
    """The signed-in user of a mobile step; the IP when the token does not verify."""
    try:
        return "user:" + signed_in_user().id
    except QRLoginError:
        return "ip:" + client_ip()


def qr_key() -> str:
    """The QR a browser polls; the IP when the body does not name one."""
    try:
        code = json_body().get("code")
    except QRLoginError:
        code = None
    return "qr:" + code if isinstance(code, str) else "ip:" + client_ip()


def _breach(limit: RequestLimit) -> Response:
    retry_after = max(1, math.ceil(limit.reset_at - time.time()))
    return error_response(SlowDown(retry_after, f"too many requests ({limit.limit}); slow down"))


def long_poll_was_not_held(response: Response) -> bool:
    """A held long poll does not count against the poll rate."""
    return not g.get("long_poll_held", False)


def init_app(app: Flask, settings: Settings) -> Limiter:
    limiter = Limiter(
        key_func=client_ip,
        app=app,
        storage_uri=settings.redis_url or "memory://",
        storage_options={"socket_connect_timeout": 2, "socket_timeout": 5},
        strategy="moving-window",
        key_prefix="qrlogin:limits",
        swallow_errors=True,  # Redis down: the request itself answers 503
        on_breach=_breach,
        enabled=settings.rate_limits,
    )
    views = app.view_functions
    for endpoint, value, key_func, deduct_when in (
        ("accounts.create_qrcode", settings.limit_create, client_ip, None),
        ("accounts.qrcode_fill", settings.limit_steps, user_key, None),
        ("passport.guest", settings.limit_poll, qr_key, long_poll_was_not_held),
    ):
        limited = limiter.limit(value, key_func=key_func, deduct_when=deduct_when)
        views[endpoint] = limited(views[endpoint])  # type: ignore[assignment]
    app.extensions[EXTENSION] = limiter
    return limiter
