"""Rate limits (flask-limiter on the service's Redis). The views carry their own limits
(``@limiter.limit(...)``); this module holds the limiter, its keys and the breach answer:
429 ``SLOW_DOWN`` with ``Retry-After``, in the envelope.

The cap on live QR codes per browser is kept atomically by the store instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request
from flask_limiter import Limiter, RequestLimit

from qrlogin import browser, engine
from qrlogin.auth import signed_in_user
from qrlogin.browser import bound_digest
from qrlogin.config import Settings
from qrlogin.envelope import error_response
from qrlogin.exceptions import QRLoginError, SlowDown
from qrlogin.inputs import json_body
from qrlogin.keys import Keys
from qrlogin.models import QR_ID_RE
from qrlogin.services import services


def client_ip() -> str:
    """The caller's address as limits count it: an IPv6 caller by its network."""
    return browser.client_group(request)


def user_key() -> str:
    """The signed-in user of a mobile step; the IP when the token does not verify."""
    try:
        return "user:" + signed_in_user().id
    except QRLoginError:
        return "ip:" + client_ip()


def polled_code() -> str | None:
    """The QR id a poll's body names; None when it names none that can exist (and no
    text Redis cannot take, such as a lone surrogate)."""
    try:
        code = json_body().get("code")
    except QRLoginError:
        return None
    return code if isinstance(code, str) and QR_ID_RE.match(code) else None


def poll_key() -> str:
    """The QR a browser polls and the browser's binding, so that only the owner's own
    polls spend the owner's budget; the IP when the body does not name a QR."""
    code = polled_code()
    if code is None:
        return "ip:" + client_ip()
    return f"qr:{code}:{bound_digest(request)}"


def refused_key() -> str:
    return "refused:" + client_ip()


def owner_or_limits_off() -> bool:
    """The refused-poll budget neither counts nor stops a caller whose binding owns the
    QR it polls: strangers at the same address (an office's NAT) cannot lock the owner
    out of its own redemption."""
    if limits_off():
        return True
    code = polled_code()
    bind, prev = browser.bindings(request)
    if code is None or bind == browser.NO_BINDING:
        return False
    try:
        return services().store.owned_by(code, bind, prev)
    except engine.UNAVAILABLE_ERRORS:
        return False  # the poll itself answers 503


def was_refused(response: Response) -> bool:
    """Polls of a QR that is not the caller's (no valid binding) or does not exist: they
    count per IP, and only they write a key, so random ids cannot fill Redis. On the
    shared stream, each id it answered ``gone`` counts (``refused_ids``)."""
    return response.status_code in (403, 404) or refused_ids() > 0


def refused_ids() -> int:
    """How many ids this request was refused (the shared stream's ``gone`` ones)."""
    found: int = g.get("refused_ids", 0)
    return found


def refused_cost() -> int:
    return max(1, refused_ids())


def refused_budget(exempt_when: Callable[[], bool]) -> Callable[..., Any]:
    """The refused-request budget of an address (``QRLOGIN_LIMIT_REFUSED``): one counter
    for the polls and the shared stream, spent by each refusal."""
    return limiter.shared_limit(
        refused_limit,
        scope="refused",
        key_func=refused_key,
        exempt_when=exempt_when,
        deduct_when=was_refused,
        cost=refused_cost,
    )


def create_limit() -> str:
    return services().settings.limit_create


def step_limit() -> str:
    return services().settings.limit_steps


def poll_limit() -> str:
    return services().settings.limit_poll


def refused_limit() -> str:
    return services().settings.limit_refused


def limits_off() -> bool:
    return not services().settings.rate_limits


def _breach(limit: RequestLimit) -> Response:
    retry_after = max(1, math.ceil(limit.reset_at - time.time()))
    return error_response(SlowDown(retry_after, f"too many requests ({limit.limit}); slow down"))


#: The process's limiter; each view names its limit, and the app's settings give the values.
limiter = Limiter(
    key_func=client_ip,
    strategy="moving-window",
    key_prefix=Keys.LIMITS,
    swallow_errors=True,  # Redis down: the request itself answers 503
    on_breach=_breach,
)


def storage_uri(settings: Settings) -> str:
    """Where the limiter counts, in each Redis mode: each limit is one key, so on a
    cluster each lands on its own slot (limits' cluster storage); with Sentinel, the
    same sentinels and the master's name; in memory with the embedded engine."""
    url = settings.redis_url
    if url is None:
        return "memory://"
    if settings.redis_mode == "cluster":
        return "redis+cluster://" + url.split("://", 1)[1]
    if settings.redis_mode == "sentinel":
        hosts = url.split("://", 1)[1].split("/", 1)[0]
        return f"redis+sentinel://{hosts}/{settings.sentinel_master}"
    return url


def storage_options(app: Flask) -> dict[str, Any]:
    """How the limiter connects. On a single Redis it borrows the command pool, so it
    opens no connection of its own and speaks TLS as the pool does; on a cluster or
    through sentinels (limits' own clients) it gets the same TLS settings, timeouts and
    bound as the pool."""
    found = services(app)
    settings = found.settings
    if settings.redis_url is None:
        return {}
    if settings.redis_mode == "single":
        return {"connection_pool": found.redis.connection_pool}
    tls = engine.tls_options(settings)
    timeouts = {
        "socket_connect_timeout": engine.CONNECT_TIMEOUT_S,
        "socket_timeout": engine.SOCKET_TIMEOUT_S,
    }
    options = {**tls, **timeouts, "max_connections": settings.redis_max_connections}
    if settings.redis_mode == "sentinel":
        # The sentinels are asked over TLS too (limits passes these to them alone).
        options["sentinel_kwargs"] = {**tls, **timeouts}
    elif tls:
        options["ssl"] = True  # limits names the cluster redis+cluster://, whatever the scheme
    return options


def init_app(app: Flask) -> None:
    """Count on the app's Redis (or in memory with the embedded engine)."""
    settings = services(app).settings
    app.config["RATELIMIT_STORAGE_URI"] = storage_uri(settings)
    # flask-limiter adds the app's options to those it holds; this process's limiter serves
    # one app at a time, so it starts from none rather than from the previous app's.
    limiter._storage_options = {}
    app.config["RATELIMIT_STORAGE_OPTIONS"] = storage_options(app)
    # Off means off: no per-request work at all (the limiter skips its hooks, and
    # ``bypass_views`` its views' wrappers).
    app.config["RATELIMIT_ENABLED"] = settings.rate_limits
    limiter.init_app(app)


def bypass_views(app: Flask) -> None:
    """With rate limits off, serve each view without its ``@limiter.limit`` wrappers.

    A disabled limiter's wrapper still identifies the request and asks the limiter, on
    every request of a load test. flask-limiter marks its wrappers with the limiter that
    made them (a proxy of it)."""
    if services(app).settings.rate_limits:
        return
    for endpoint, view in app.view_functions.items():
        inner: Any = view
        while getattr(inner, "__wrapper-limiter-instance", None) == limiter:
            inner = inner.__wrapped__
        app.view_functions[endpoint] = inner
