"""The alternative: flask-sse's stock stream blueprint, as its documentation mounts it.

``gunicorn -k gevent bench.flask_sse_app:app``; each browser streams
``/stream?channel=<name>`` and holds its own Redis pub/sub connection.
"""

import os

from flask import Flask
from flask_sse import sse

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]
app.register_blueprint(sse, url_prefix="/stream")
