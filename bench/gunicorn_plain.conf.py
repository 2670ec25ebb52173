"""The restart benchmark's alternative: gevent workers with gunicorn's default shutdown
(no stream draining, 30 s graceful timeout). Not for deployment."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gevent"
worker_connections = 12000
control_socket_disable = True
