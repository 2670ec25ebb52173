"""Forwarded headers the service was told not to read.

With ``QRLOGIN_TRUSTED_PROXIES=0`` the service reads no forwarded header: a client could
write any. Behind a proxy that sends them (nginx with ``X-Forwarded-For``, a platform's
router), that setting makes every browser appear at the proxy's address: the phone's
relay warning cannot fire, and per-address limits and caps count every browser as one.
The first such request in a process says so in the log, and ``/readyz`` says it from
then on, on every worker (the notice is kept in Redis for a day).
"""

from __future__ import annotations

import contextlib
import logging

from flask import Flask, request

from qrlogin.browser import client_ip
from qrlogin.config import Settings
from qrlogin.engine import UNAVAILABLE_ERRORS
from qrlogin.keys import Keys
from qrlogin.services import services

log = logging.getLogger(__name__)

#: The headers a proxy adds.
FORWARDED_HEADERS = ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded")
#: How long ``/readyz`` keeps saying so after the last process noticed (seconds).
NOTICE_TTL_S = 24 * 3600
UNREAD = (
    "requests arrive with forwarded headers ({headers}) but QRLOGIN_TRUSTED_PROXIES=0 "
    "ignores them: every browser appears at the proxy's address ({ip}), so the phone's "
    "relay warning cannot fire and per-address limits count every browser as one. Set "
    "QRLOGIN_TRUSTED_PROXIES to the number of proxies in front (1 behind one nginx, 1 on "
    "Heroku)"
)


def init_app(app: Flask, settings: Settings) -> None:
    if settings.trusted_proxies:
        return
    noticed: list[str] = []

    @app.before_request
    def _look_for_forwarded_headers() -> None:
        if noticed:
            return
        sent = [name for name in FORWARDED_HEADERS if name in request.headers]
        if not sent:
            return
        notice = UNREAD.format(headers=", ".join(sent), ip=client_ip(request))
        noticed.append(notice)
        log.warning(notice)
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            services().redis.set(Keys.NOTICE_FORWARDED, notice, ex=NOTICE_TTL_S)


def notices() -> list[str]:
    """What ``/readyz`` tells the operator about proxies."""
    found = services().redis.get(Keys.NOTICE_FORWARDED)
    return [str(found)] if found else []
