"""gunicorn settings (the Procfile uses this file): gevent workers for many waiting browsers.

Its environment variables (PORT, WEB_CONCURRENCY, QRLOGIN_WORKER_CONNECTIONS,
QRLOGIN_REUSE_PORT, QRLOGIN_ACCESS_LOG, QRLOGIN_GC_FREEZE) are in the settings table
(``qrlogin.settings``), read by ``qrlogin.config.ServerSettings``.
"""

from __future__ import annotations

import os
import resource
from typing import Any

from qrlogin.config import ServerSettings

server = ServerSettings.from_env(os.environ)
bind = f"0.0.0.0:{server.port}"
workers = server.workers
# Each worker listens on its own socket (SO_REUSEPORT), and the kernel spreads new
# connections evenly over them. On one shared socket, whichever worker accepts first
# takes a whole burst of connections.
reuse_port = server.reuse_port
# gunicorn's gevent worker, which also lets a QR stream's connection be parked once its
# response has begun (qrlogin/parking.py): no greenlet per waiting browser.
worker_class = "qrlogin.worker.StreamWorker"
# Each waiting browser holds one connection: room for 10,000 of them per worker, and more.
worker_connections = server.worker_connections
# Open streams are ended at once on SIGTERM (see post_worker_init), so this is a backstop.
graceful_timeout = 10
timeout = 30
# Also how long a request head may take to arrive: gunicorn reads each head under it.
keepalive = 2
accesslog = server.access_log or None
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
        from qrlogin.keycheck import DEMO_WARNING

        worker.log.warning(DEMO_WARNING)
    hub = found.hub
    hub.start()
    found.lot.start()
    from qrlogin.metrics import time_gc

    time_gc()
    if server.gc_freeze:
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
