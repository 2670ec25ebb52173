"""The JSON envelope: ``{"code", "msg", "data"}`` for every answer.

``init_app`` maps every error (ours, werkzeug's, Redis being unreachable) to the
envelope in this one place.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from qrlogin.engine import UNAVAILABLE_ERRORS, cause_of
from qrlogin.exceptions import Overloaded, PayloadTooLarge, QRLoginError, SlowDown, Unavailable
from qrlogin.metrics import REDIS_ERRORS

log = logging.getLogger(__name__)

#: Envelope codes for HTTP errors raised by routing rather than by the service.
HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
#: The envelope code of any other HTTP error werkzeug raises (4xx; 5xx never reach clients).
OTHER_HTTP_CODE = "BAD_REQUEST"


def ok(data: dict[str, Any] | None, status: int = 200) -> Response:
    response = jsonify({"code": "OK", "msg": "ok", "data": data})
    response.status_code = status
    return response


def error_response(error: QRLoginError) -> Response:
    response = jsonify({"code": error.code, "msg": error.msg, "data": error.data})
    response.status_code = error.status
    if isinstance(error, SlowDown | Unavailable | Overloaded):
        response.headers["Retry-After"] = str(error.retry_after_s)
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(QRLoginError)
    def _ours(error: QRLoginError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        if error.response is not None:  # already an envelope (e.g. a rate limit's 429)
            return error.response  # type: ignore[return-value]
        status = error.code or 400
        if status == 413:
            return error_response(PayloadTooLarge())
        code = HTTP_CODES.get(status, OTHER_HTTP_CODE if status < 500 else "INTERNAL_ERROR")
        response = jsonify({"code": code, "msg": error.description, "data": None})
        response.status_code = status
        for key, value in error.get_headers():
            if key.lower() == "allow":
                response.headers[key] = value
        return response

    for exc in UNAVAILABLE_ERRORS:

        @app.errorhandler(exc)
        def _redis_down(error: Exception) -> Response:
            return error_response(unavailable(error))


def unavailable(error: Exception) -> Unavailable:
    """Redis did not answer: logged and counted once, and the 503 to answer with."""
    log.warning("redis unavailable: %s", cause_of(error))
    REDIS_ERRORS.labels("request").inc()
    return Unavailable()
