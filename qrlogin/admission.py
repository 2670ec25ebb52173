"""Admission control: what a worker takes on, decided before Flask sees the request.

A new request is answered at once with 503 ``OVERLOADED`` and ``Retry-After`` instead
of joining a pile whose every member answers late, when either

- the worker already works on ``QRLOGIN_MAX_INFLIGHT`` requests, or on a quarter as
  many when the request starts new work (the rest is kept for the steps of logins under
  way, so that a flood of new logins does not starve those it let in), or
- the request starts new work (a QR code: a new login, or an OpenID Connect sign-in
  page) faster than the worker's pace (``Pace``): under a flood (more new work asked
  than twice the pace), the rate of new work at which nine in ten of its answers
  (ninety-nine in a hundred while it refuses new work) stay within
  ``QRLOGIN_MAX_SLOWDOWN`` times the fastest it gave lately, found again every tenth of
  a second in which the worker was busy (its loop ran for at least a quarter of it);
  under a calm load, twice the new work asked, which only two slow tenths in a row
  bring down, or
- the request starts new work while the worker's event loop runs late: a timer that
  should fire every 10 ms has fired, on average over the last few tenths of a second,
  more than ``QRLOGIN_MAX_LAG`` ms late. That is the wait every greenlet of the worker meets at
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

import math
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import request
from gevent import monkey

from qrlogin.background import Background
from qrlogin.exceptions import Overloaded
from qrlogin.logs import _ACCEPTED, _MADE_UP_BYTES, HEADER
from qrlogin.metrics import INFLIGHT, LAG, PACE, REQUEST_SECONDS, SHED

#: What is never shed: the probes a load balancer and Prometheus call.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: The requests that start new work: shed first, when the loop runs late.
NEW_WORK_PATHS = frozenset({"/v1/accounts/qrcode/", "/v1/accounts/qrcode", "/oidc/authorize"})
#: New work may take a quarter of the room: the rest is for the logins under way.
NEW_WORK_SHARE = 4
#: The lag timer's period (s), and the weight of each new reading in the average.
TICK_S = 0.01
WEIGHT = 0.1
#: The pace: answers are judged, and the pace set, once a window (s), on the time within
#: which JUDGED_QUANTILE of them were answered (a tail: the mean hides the slow answers
#: that make a whole login slow), BUSY_QUANTILE while the worker refuses new work (within
#: CALM_S of a refusal): a login is six answers, and under a flood every slow answer
#: is some admitted login's. Calm, one stall in ten answers (a collection, a key made
#: once) does not cut the pace; refusing, the slowest answer in a hundred does (in a
#: window of fewer, the slowest of all). A window is judged on at least JUDGED_AT answers
#: (fewer tell nothing), and answers faster than NEVER_SLOW_S are never slow, whatever
#: the fastest seen. Nor are a window's answers slow when the worker's loop ran for less
#: than BUSY_SHARE of it (its CPU time): they waited for no one, and a window of a few
#: answers is slower than another by its mix alone (a QR code with its PNG against a
#: redemption), which would cut the pace of a worker that is all but idle.
WINDOW_S = 0.1
JUDGED_QUANTILE = 0.9
BUSY_QUANTILE = 0.99
JUDGED_AT = 8
NEVER_SLOW_S = 0.001
BUSY_SHARE = 0.25
#: How fast the fastest window seen is forgotten: a share of it a second.
FORGET_PER_S = 0.05
#: A flood asks for more new work than FLOOD_RATIO times the pace, in the window just
#: judged or on average (ASKED_WEIGHT: each window's weight in it); a calm load, less.
#: Under a flood every slow window cuts the pace; under a calm load, the pace climbs (by
#: CALM_FASTER a window at most) to HEADROOM times the new work asked, so that the random
#: bunches of a calm load are let in, and falls (by SLOWER) only when two windows in a
#: row were slow: a window of a few answers is slow now and then by its mix alone, and
#: the worker that cut its pace to what a calm load asked would refuse a share of it.
#: A flood starts at START_RATE (or lower), whatever pace a calm load had raised, once
#: both the window and the average ask for more than FLOOD_RATIO times the pace.
FLOOD_RATIO = 2.0
ASKED_WEIGHT = 0.2
HEADROOM = 2.0
CALM_FASTER = 1.25
#: New work a second at start and at least; how the pace falls and rises per window; and
#: how much new work is let in at once within it: BURST by a calm worker (none refused
#: for CALM_S), so that a few users arriving together are not refused; BUSY_BURST by one
#: that refuses, so that a flood comes in at the pace. A flood's first arrivals find the
#: worker calm: each it lets in at once makes the others' answers later.
START_RATE = 25.0
FLOOR_RATE = 5.0
SLOWER = 0.8
FASTER = 1.05
BURST = 4.0
BUSY_BURST = 2.0
CALM_S = 1.0
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


class Pace:
    """How much new work a second a worker takes on, so that its answers stay fast.

    Once a window (WINDOW_S), the answers given in it (admission to answer, every kind of
    request) are judged by the time within which nine in ten of them were given
    (ninety-nine in a hundred while the worker refuses new work), and that is compared
    with the fastest such time seen, slowly forgotten. Over ``slowdown`` times it, in a
    window in which the worker was busy (``cpu``, the CPU time of the thread that runs
    its loop, grew by BUSY_SHARE of the window or more), the window is slow. Under a
    flood (FLOOD_RATIO), a slow window cuts the pace to SLOWER times the new work
    finished in it (what the worker did get through); under a calm load, two slow windows
    in a row cut it by SLOWER, and fast ones let it climb to HEADROOM times the new work
    asked; a flood that both its window and the average show takes it back to START_RATE.
    Under a flood, fast enough while new work was refused, it rises by FASTER.
    In between, new work is let in at that pace, BURST at once while the worker is calm and
    BUSY_BURST while it refuses. It starts at START_RATE, so that a sudden flood is let in
    as fast as the answers stay quick rather than all at once; it never falls below
    FLOOR_RATE. A core without I/O: the caller gives the clocks (seconds)."""

    def __init__(
        self, slowdown: float, now: float = 0.0, cpu: Callable[[], float] = time.thread_time
    ) -> None:
        self.slowdown = slowdown
        self._cpu = cpu
        self._cpu_began = cpu()
        self.rate = START_RATE
        self.fastest_s = math.inf
        self._tokens = BURST
        self._refused_at = -math.inf
        self._filled = now
        self._began = now
        self._times: list[float] = []
        self._finished = self._refused = self._asked = 0
        self.asked_per_s = 0.0
        self._was_slow = self._flooded = False

    @property
    def window_answers(self) -> int:
        """The answers kept for the window under way."""
        return len(self._times)

    def admit(self, now: float) -> bool:
        """Whether new work may start now (0 ``slowdown``: always)."""
        if not self.slowdown:
            return True
        self._judge_if_past(now)
        self._asked += 1
        burst = BURST if self._calm(now) else BUSY_BURST
        self._tokens = min(burst, self._tokens + (now - self._filled) * self.rate)
        self._filled = now
        if self._tokens < 1:
            self._refused += 1
            self._refused_at = now
            return False
        self._tokens -= 1
        return True

    def answered(self, took_s: float, new_work: bool, now: float) -> None:
        """An answer given ``took_s`` after its admission, at ``now``. A window is judged
        when it has passed, here or at the next request for new work: only one window's
        answers are kept, however long new work stays away."""
        if not self.slowdown:
            return
        self._judge_if_past(now)
        self._times.append(took_s)
        self._finished += new_work

    def _calm(self, now: float) -> bool:
        """Whether no new work was refused for CALM_S before ``now``."""
        return now - self._refused_at >= CALM_S

    def _judge_if_past(self, now: float) -> None:
        """Judge the window under way if it has ended by ``now``."""
        if now - self._began >= WINDOW_S:
            self._judge(now)

    def _judge(self, now: float) -> None:
        elapsed = now - self._began
        cpu = self._cpu()
        slow = False
        self.fastest_s *= 1 + FORGET_PER_S * elapsed  # judged or not, time passed
        if len(self._times) >= JUDGED_AT:
            self._times.sort()
            quantile = JUDGED_QUANTILE if self._calm(now) else BUSY_QUANTILE
            tail_s = self._times[math.ceil(quantile * len(self._times)) - 1]  # nearest rank
            self.fastest_s = min(self.fastest_s, tail_s)
            busy = cpu - self._cpu_began >= BUSY_SHARE * elapsed
            slow = busy and tail_s > max(NEVER_SLOW_S, self.slowdown * self.fastest_s)
        asked = self._asked / elapsed
        self.asked_per_s += ASKED_WEIGHT * (asked - self.asked_per_s)
        flood = max(asked, self.asked_per_s) > FLOOD_RATIO * self.rate
        # Both say so: not a bunch of a calm load's random arrivals.
        onset = min(asked, self.asked_per_s) > FLOOD_RATIO * self.rate and not self._flooded
        self._flooded = flood and (self._flooded or onset)
        if flood:
            if onset:  # a flood starts at the start pace, whatever a calm load had raised
                self.rate = min(self.rate, START_RATE)
            if slow:
                self.rate = max(FLOOR_RATE, min(self.rate, self._finished / elapsed) * SLOWER)
            elif self._refused:
                self.rate = min(self.rate * FASTER, 1e6)
        elif slow and self._was_slow:
            self.rate = max(FLOOR_RATE, self.rate * SLOWER)
        elif not slow:
            # The lower of the two: the average still remembers a flood that has ended.
            wanted = HEADROOM * min(asked, self.asked_per_s)
            self.rate = max(self.rate, min(wanted, self.rate * CALM_FASTER))
        PACE.set(self.rate)
        self._was_slow = slow
        self._began, self._times, self._cpu_began = now, [], cpu
        self._finished = self._refused = self._asked = 0


class Admission:
    """The requests in progress in this worker (gevent: one thread, no lock), and the
    WSGI middleware that admits or refuses them."""

    def __init__(self, app: WsgiApp, limit: int, lag: Lag, pace: Pace) -> None:
        self.app = app
        self.limit = limit
        self.new_work_limit = max(1, limit // NEW_WORK_SHARE)
        self.lag = lag
        self.pace = pace
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
        now = time.perf_counter()
        if (self.limit and self.inflight >= (self.new_work_limit if new_work else self.limit)) or (
            new_work and (self.lag.over or not self.pace.admit(now))
        ):
            SHED.inc()
            return self._shed(environ, start_response)
        self.inflight += 1
        INFLIGHT.inc()
        environ[_ADMITTED] = (now, new_work)
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
            now = time.perf_counter()
            took_s = now - admitted[0]
            REQUEST_SECONDS.observe(took_s)
            self.pace.answered(took_s, admitted[1], now)

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


def wsgi(app: WsgiApp, limit: int, max_lag_ms: int, max_slowdown: int) -> Admission:
    # The pace, like the lag, only under gevent: there one loop serves every request, so
    # the answers' times tell how busy the worker is; elsewhere (threads, a test client)
    # they do not.
    paced = max_slowdown if monkey.is_module_patched("threading") else 0
    return Admission(app, limit, Lag(max_lag_ms / 1000), Pace(paced, time.perf_counter()))
