"""gunicorn settings (the Procfile uses this file): gevent workers for many waiting browsers.

Environment: PORT (default 8000), WEB_CONCURRENCY (workers, default 2),
QRLOGIN_WORKER_CONNECTIONS (open connections per worker, default 12000),
QRLOGIN_GC_FREEZE (0 leaves out gc.freeze() after a worker starts; default 1),
QRLOGIN_REUSE_PORT (0: the workers share one listening socket; default 1, one each).
"""

from __future__ import annotations

import os
import resource
from typing import Any

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Each worker listens on its own socket (SO_REUSEPORT), and the kernel spreads new
# connections evenly over them. On one shared socket, whichever worker accepts first
# takes a burst of connections: 40 opened at once all went to one of 8 workers.
reuse_port = os.environ.get("QRLOGIN_REUSE_PORT", "1") != "0"
# gunicorn's gevent worker, which also lets a QR stream's connection be parked once its
# response has begun (qrlogin/parking.py): no greenlet per waiting browser.
worker_class = "qrlogin.worker.StreamWorker"
# Each waiting browser holds one connection: room for 10,000 of them per worker, and more.
worker_connections = int(os.environ.get("QRLOGIN_WORKER_CONNECTIONS", "12000"))
# Open streams are ended at once on SIGTERM (see post_worker_init), so this is a backstop.
graceful_timeout = 10
timeout = 30
# Also how long a request head may take to arrive: gunicorn reads each head under it.
keepalive = 2
accesslog = os.environ.get("QRLOGIN_ACCESS_LOG", "-") or None
# gunicorn's lines in the app's format (QRLOGIN_LOG_FORMAT), each access line with its
# request's id.
logger_class = "qrlogin.gunicorn_logs.Logger"
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({x-request-id}o)s'
)
control_socket_disable = True  # not used; several instances may share a machine
# gunicorn would itself trust X-Forwarded-Proto from 127.0.0.1; the app's ProxyFix
# reads forwarded headers instead, governed by QRLOGIN_TRUSTED_PROXIES alone.
forwarded_allow_ips = ""

# Prometheus metrics from every worker, merged at /metrics (prometheus-client multiprocess).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="qrlogin-metrics-")

# Every connection is a file descriptor: lift the soft limit to the hard one.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft != resource.RLIM_INFINITY and (_hard == resource.RLIM_INFINITY or _soft < _hard):
    resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (waiting browsers) from /metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def post_worker_init(worker: Any) -> None:
    """Start the app's event hub, and end every open stream as soon as the worker is told
    to stop. ``worker.wsgi`` is the app gunicorn loaded (``wsgi:app``)."""
    import gevent

    from qrlogin.services import services

    found = services(worker.wsgi)
    if found.settings.demo:
        from qrlogin.config import DEMO_WARNING

        worker.log.warning(DEMO_WARNING)
    hub = found.hub
    hub.start()
    found.lot.start()
    from qrlogin.metrics import time_gc

    time_gc()
    if os.environ.get("QRLOGIN_GC_FREEZE", "1") != "0":
        # What the worker built to start (the app, its rules and tables) stays: collections
        # of the oldest generation then walk only what came since.
        import gc

        gc.freeze()

    def end_streams_on_shutdown() -> None:
        while worker.alive:
            gevent.sleep(0.1)
        # Connections whose stream ends now are not kept alive for another request:
        # gunicorn reads the keep-alive time afresh for each wait on a connection.
        worker.cfg.set("keepalive", 0)
        worker.log.info("ending %d open streams with a reconnect hint", hub.waiting)
        hub.shutdown()

    gevent.spawn(end_streams_on_shutdown)
