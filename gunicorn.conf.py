"""gunicorn settings for the Procfile: gevent workers on $PORT, $WEB_CONCURRENCY of them."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
accesslog = "-"
