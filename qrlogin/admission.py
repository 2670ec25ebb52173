"""Admission control: a bound on the requests one worker works on at once.

Past ``QRLOGIN_MAX_INFLIGHT`` requests in progress, a new one is answered at once with
503 ``OVERLOADED`` and ``Retry-After`` instead of joining an unbounded pile of greenlets
whose every member answers late. Streams are not counted and never shed (they have caps
of their own, ``qrlogin.holds``, and cost nothing while they wait), nor are a long
poll's seconds of waiting, nor the operator's probes and metrics.
"""

from __future__ import annotations

from flask import Flask, current_app, g, request

from qrlogin.exceptions import Overloaded
from qrlogin.metrics import INFLIGHT, SHED

#: What is never shed: the probes a load balancer and Prometheus call.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class Admission:
    """The requests in progress in this worker (gevent: one thread, no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0

    def admit(self) -> None:
        """Count this request in, or refuse it (before its view runs)."""
        if request.path in EXEMPT_PATHS or _is_stream():
            return
        if self.limit and self.inflight >= self.limit:
            SHED.inc()
            raise Overloaded()
        self.inflight += 1
        INFLIGHT.inc()
        g.qrlogin_admitted = True

    def release(self) -> None:
        """Count this request out: it ends, or it begins a long wait (a held long poll)."""
        if g.pop("qrlogin_admitted", False):
            self.inflight -= 1
            INFLIGHT.dec()


def _is_stream() -> bool:
    return request.method == "GET" and request.path.endswith("/events")


def waiting() -> None:
    """The request begins a long wait (a held long poll): it no longer counts."""
    found = current_app.extensions.get("qrlogin.admission")
    if isinstance(found, Admission):
        found.release()


def init_app(app: Flask, limit: int) -> Admission:
    admission = app.extensions["qrlogin.admission"] = Admission(limit)
    # First of the request hooks: a shed request costs as little as can be.
    app.before_request_funcs.setdefault(None, []).insert(0, admission.admit)
    app.teardown_request(lambda _error: admission.release())
    return admission
