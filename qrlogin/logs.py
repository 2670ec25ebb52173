"""Log lines: each names the request it belongs to, for people or as JSON for log drains.

Every request has an id: the ``X-Request-Id`` its router or proxy sent (the Heroku
router sends one), or one made up here when it sent none or one that is not a plain
token. The answer echoes it, and every log line written while the request runs carries
it, the gunicorn access line included (``qrlogin.gunicorn_logs``). ``QRLOGIN_LOG_FORMAT``
chooses ``text`` lines or one ``json`` object a line.
"""

from __future__ import annotations

import logging
import re
import secrets

from flask import Flask, Response, g, has_request_context, request

from qrlogin import engine
from qrlogin.logformat import ENVIRON_KEY, JsonFormatter

HEADER = "X-Request-Id"
#: An id taken as it came: a plain token, as routers make them (no spaces, quotes or line
#: breaks that could forge a log line or break a JSON one).
_ACCEPTED = re.compile(r"[A-Za-z0-9._:+/=-]{1,200}\Z")
#: Bytes of randomness in an id made up here.
_MADE_UP_BYTES = 16
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def request_id() -> str:
    """The current request's id; "-" outside a request."""
    if not has_request_context():
        return "-"
    found: str | None = g.get("request_id")
    return found or "-"


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` on every record: the running request's, or the one the record
    already carries (the access log's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id()
        return True


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(log_format: str) -> None:
    """Write the process's log lines to stderr in ``log_format``, each with its request's
    id. A handler the host set up already (a test runner's, say) keeps its own format and
    gets the request id."""
    root = logging.getLogger()
    if not root.handlers:
        stderr = logging.StreamHandler()
        stderr.setFormatter(formatter(log_format))
        root.addHandler(stderr)
        root.setLevel(logging.INFO)
    for handler in root.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
    limiter_log = logging.getLogger("flask-limiter")
    if not any(isinstance(f, StorageFailure) for f in limiter_log.filters):
        limiter_log.addFilter(StorageFailure())


class StorageFailure(logging.Filter):
    """The rate limiter's "Swallowing error" lines: a Redis failure is the request's own
    503 and needs no traceback a request; the line says what failed, and why when the
    cause has a fix (a certificate, the client limit)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, engine.UNAVAILABLE_ERRORS):
            record.msg = f"rate limits skipped, Redis failed: {engine.cause_of(error)}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def init_app(app: Flask) -> None:
    @app.before_request
    def _take_id() -> None:
        sent = request.headers.get(HEADER, "")
        g.request_id = sent if _ACCEPTED.match(sent) else secrets.token_hex(_MADE_UP_BYTES)
        request.environ[ENVIRON_KEY] = g.request_id

    @app.after_request
    def _echo_id(response: Response) -> Response:
        response.headers[HEADER] = request_id()
        return response
