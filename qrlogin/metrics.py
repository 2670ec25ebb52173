"""Prometheus metrics at /metrics, correct under gunicorn's many worker processes.

With PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets it), each process writes its
samples there and /metrics merges them; without it, the process's own registry is used.
"""

from __future__ import annotations

import gc
import os
import time

from flask import Flask, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

TRANSITIONS = Counter(
    "qrlogin_qr_transitions_total",
    "QR state transitions, by the event that caused them (created, scanned, verified, "
    "cancelled, expired, redeemed, replaced, verify_failed)",
    ["event"],
)
WAITING = Gauge(
    "qrlogin_waiting_browsers",
    "Browsers waiting on an SSE stream or a long poll",
    multiprocess_mode="livesum",
)
DELIVERY = Histogram(
    "qrlogin_event_delivery_seconds",
    "From the transition in Redis to the event written to the browser's stream",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
HELD = Gauge(
    "qrlogin_held_connections",
    "Open streams (QR, shared, session, notices) and held long polls",
    multiprocess_mode="livesum",
)
STREAMS_REFUSED = Counter(
    "qrlogin_streams_refused_total",
    "Streams and held long polls refused before they began: over a cap (429; qr, binding, "
    "ip, session, user) or past the process's descriptor budget (503; descriptors)",
    ["cap"],
)
INFLIGHT = Gauge(
    "qrlogin_requests_in_progress",
    "Requests a worker is working on, as admission control counts them (streams and held "
    "long polls not counted)",
    multiprocess_mode="livesum",
)
SHED = Counter(
    "qrlogin_requests_shed_total",
    "Requests answered 503 OVERLOADED at once: the worker had QRLOGIN_MAX_INFLIGHT in "
    "progress, new work came faster than its pace, or its event loop ran more than "
    "QRLOGIN_MAX_LAG late",
)
PACE = Gauge(
    "qrlogin_admission_pace",
    "New work (QR codes, OpenID Connect sign-in pages) a second the workers take on at most, "
    "as their answers' times set it (QRLOGIN_MAX_SLOWDOWN): the sum over workers",
    multiprocess_mode="livesum",
)
#: Fine over the few milliseconds a quick answer takes: there the overload benchmark reads
#: the workers' share of a login, and an operator sees answers slow down.
ANSWER_BUCKETS_S = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0)  # fmt: skip
REQUEST_SECONDS = Histogram(
    "qrlogin_request_seconds",
    "From a request's admission to its answer (streams, long polls' waiting and probes "
    "not counted)",
    buckets=ANSWER_BUCKETS_S,
)
LAG = Gauge(
    "qrlogin_event_loop_lag_seconds",
    "How late a worker's event loop runs: the moving average of a 10 ms timer's lateness "
    "(the worst worker)",
    multiprocess_mode="livemax",
)
PARKED_STREAMS = Gauge(
    "qrlogin_parked_streams",
    "QR streams served by the process's lot, with no greenlet of their own",
    multiprocess_mode="livesum",
)
REDIS_ERRORS = Counter(
    "qrlogin_redis_errors_total",
    "Times Redis could not be reached: by a request (503) or by the event hub (reconnect)",
    ["where"],
)

RESUBSCRIBES = Counter(
    "qrlogin_hub_resubscribes_total",
    "Times the event hub subscribed its channels again after losing a subscriber connection",
)
FAILOVERS = Counter(
    "qrlogin_redis_failovers_total",
    "Times the event hub found channels moved to another Redis node (a failover, a slot move)",
)


#: The media type of ``exposition()``, to be sent exactly as it is.
CONTENT_TYPE = CONTENT_TYPE_LATEST


GC_PAUSE = Histogram(
    "qrlogin_gc_pause_seconds",
    "Python's cyclic garbage collections, by generation: every greenlet and parked stream "
    "of the process waits while one runs",
    ["generation"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)


def time_gc() -> None:
    """Observe every collection of this process in ``qrlogin_gc_pause_seconds``."""
    started: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - started[0])

    gc.callbacks.append(callback)


def exposition() -> bytes:
    """Every metric of this process, or of all the server's processes, in text format."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


RESPONSES = Counter(
    "qrlogin_http_responses_total",
    "Answers by class of status (2xx, 3xx, 4xx, 5xx); a stream counts when it begins",
    ["code"],
)
HELD_LIMIT = Gauge(
    "qrlogin_held_connections_limit",
    "Connections the processes may hold open together: each worker's descriptor budget",
    multiprocess_mode="livesum",
)
#: The caps a stream may be refused by (qrlogin.holds), as qrlogin_streams_refused_total
#: labels them.
CAPS = ("qr", "binding", "ip", "session", "user", "descriptors")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


def init_app(app: Flask) -> None:
    """Count every answer by its class of status."""

    @app.after_request
    def _count(response: Response) -> Response:
        RESPONSES.labels(f"{min(max(response.status_code // 100, 2), 5)}xx").inc()
        return response


# Show the series at zero from the start, so a dashboard can tell "none" from "unknown".
for _where in ("request", "hub"):
    REDIS_ERRORS.labels(_where)
for _cap in CAPS:
    STREAMS_REFUSED.labels(_cap)
for _code in STATUS_CLASSES:
    RESPONSES.labels(_code)
for _generation in ("0", "1", "2"):
    GC_PAUSE.labels(_generation)
