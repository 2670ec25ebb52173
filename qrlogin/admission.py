"""Admission control: what a worker takes on, decided before Flask sees the request.

A new request is answered at once with 503 ``OVERLOADED`` and ``Retry-After`` instead
of joining a pile whose every member answers late, when either

- the worker already works on ``QRLOGIN_MAX_INFLIGHT`` requests, or on a quarter as
  many when the request starts new work (the rest is kept for the steps of logins under
  way, so that a flood of new logins does not starve those it let in), or
- the request starts new work (a QR code: a new login, or an OpenID Connect sign-in
  page) while the worker's event loop runs late: a timer that should fire every 10 ms
  has fired, on average over the last few tenths of a second, more than
  ``QRLOGIN_MAX_LAG`` ms late. That is the wait every greenlet of the worker meets at
  each turn, whatever the queue it sits in (accepting connections, reading requests,
  running views) and whatever takes the CPU (this worker, others, another process on
  the box). The steps of logins already under way (the phone's, polls, redemptions)
  go on: the work a worker took on is finished first.

The refusal is a WSGI answer made before Flask: it costs a small share of a request.
Streams are not counted and never refused (they have caps of their own,
``qrlogin.holds``, and cost nothing while they wait), nor are a long poll's seconds of
waiting, nor the operator's probes and metrics.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import request
from gevent import monkey

from qrlogin.background import Background
from qrlogin.exceptions import Overloaded
from qrlogin.logs import _ACCEPTED, _MADE_UP_BYTES, HEADER
from qrlogin.metrics import INFLIGHT, LAG, REQUEST_SECONDS, SHED

#: What is never shed: the probes a load balancer and Prometheus call.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: The requests that start new work: shed first, when the loop runs late.
NEW_WORK_PATHS = frozenset({"/v1/accounts/qrcode/", "/v1/accounts/qrcode", "/oidc/authorize"})
#: New work may take a quarter of the room: the rest is for the logins under way.
NEW_WORK_SHARE = 4
#: The lag timer's period (s), and the weight of each new reading in the average.
TICK_S = 0.01
WEIGHT = 0.1
ENVIRON_KEY = "qrlogin.admission"
_ADMITTED = "qrlogin.admitted"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Lag:
    """How late this worker's event loop runs: a moving average of a timer's lateness."""

    def __init__(self, max_lag_s: float) -> None:
        self.max_lag_s = max_lag_s
        self.average_s = 0.0
        self._ticker = Background(self._tick, "qrlogin-lag")
        # Only under gevent (the app is built after its patching): elsewhere threads,
        # not one loop, serve requests.
        self._timed = bool(max_lag_s) and monkey.is_module_patched("threading")

    def observe(self, late_s: float) -> None:
        """One reading; each counts for at most twice the bound, so that one stall (a
        full collection, a key made once) does not refuse work: only lateness that
        lasts does."""
        reading = min(max(0.0, late_s), 2 * self.max_lag_s)
        self.average_s += WEIGHT * (reading - self.average_s)

    @property
    def over(self) -> bool:
        return bool(self.max_lag_s) and self.average_s > self.max_lag_s

    def start(self) -> None:
        """Time the loop from this process on."""
        if self._timed:
            self._ticker.start()

    def _tick(self) -> None:
        while True:
            before = time.monotonic()
            time.sleep(TICK_S)
            self.observe(time.monotonic() - before - TICK_S)
            LAG.set(self.average_s)


class Admission:
    """The requests in progress in this worker (gevent: one thread, no lock), and the
    WSGI middleware that admits or refuses them."""

    def __init__(self, app: WsgiApp, limit: int, lag: Lag) -> None:
        self.app = app
        self.limit = limit
        self.new_work_limit = max(1, limit // NEW_WORK_SHARE)
        self.lag = lag
        self.inflight = 0
        body = Overloaded()
        self._body = b'{"code":"%s","data":null,"msg":"%s"}' % (
            body.code.encode(),
            body.msg.encode(),
        )
        self._retry_after = str(body.retry_after_s)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in EXEMPT_PATHS or (
            environ.get("REQUEST_METHOD") == "GET" and path.endswith("/events")
        ):
            return self.app(environ, start_response)
        self.lag.start()
        new_work = path in NEW_WORK_PATHS
        if (self.limit and self.inflight >= (self.new_work_limit if new_work else self.limit)) or (
            new_work and self.lag.over
        ):
            SHED.inc()
            return self._shed(environ, start_response)
        self.inflight += 1
        INFLIGHT.inc()
        environ[_ADMITTED] = time.perf_counter()
        environ[ENVIRON_KEY] = self
        try:
            return self.app(environ, start_response)
        finally:
            self.release(environ)

    def release(self, environ: dict[str, Any]) -> None:
        """Count this request out: it ends, or it begins a long wait (a held long poll)."""
        admitted = environ.pop(_ADMITTED, None)
        if admitted is not None:
            self.inflight -= 1
            INFLIGHT.dec()
            REQUEST_SECONDS.observe(time.perf_counter() - admitted)

    def _shed(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        sent = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = sent if _ACCEPTED.match(sent) else secrets.token_hex(_MADE_UP_BYTES)
        start_response("503 Service Unavailable", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(self._body))),
            ("Retry-After", self._retry_after), ("Cache-Control", "no-store"), (HEADER, request_id),
        ])  # fmt: skip
        return [self._body]


def waiting() -> None:
    """The request begins a long wait (a held long poll): it no longer counts."""
    found = request.environ.get(ENVIRON_KEY)
    if isinstance(found, Admission):
        found.release(request.environ)


def wsgi(app: WsgiApp, limit: int, max_lag_ms: int) -> Admission:
    return Admission(app, limit, Lag(max_lag_ms / 1000))
