"""The JSON envelope: ``{"code", "msg", "data"}`` for every answer, and reading request bodies.

``init_app`` maps every error (ours, werkzeug's, Redis being unreachable) to the
envelope in this one place.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from qrlogin.engine import UNAVAILABLE_ERRORS
from qrlogin.exceptions import BadRequest, PayloadTooLarge, QRLoginError, SlowDown, Unavailable
from qrlogin.metrics import REDIS_ERRORS

log = logging.getLogger(__name__)

#: Envelope codes for HTTP errors raised by routing rather than by the service.
_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


def ok(data: dict[str, Any] | None, status: int = 200) -> Response:
    response = jsonify({"code": "OK", "msg": "ok", "data": data})
    response.status_code = status
    return response


def error_response(error: QRLoginError) -> Response:
    response = jsonify({"code": error.code, "msg": error.msg, "data": error.data})
    response.status_code = error.status
    if isinstance(error, SlowDown):
        response.headers["Retry-After"] = str(error.retry_after_s)
    return response


def json_body() -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``.

    Parsed once per request (the poll limit's key and the view both read it).
    """
    cached: dict[str, Any] | None = g.get("qrlogin_body")
    if cached is not None:
        return cached
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise PayloadTooLarge() from None
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    g.qrlogin_body = body
    return body


def string_field(
    body: dict[str, Any], name: str, *, required: bool = True, max_chars: int = 256
) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    if len(value) > max_chars:
        raise BadRequest(f"{name} must be at most {max_chars} characters")
    return value


def int_field(body: dict[str, Any], name: str, minimum: int, maximum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be a whole number")
    if not minimum <= value <= maximum:
        raise BadRequest(f"{name} must be between {minimum} and {maximum}")
    return value


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
        code = _HTTP_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
        response = jsonify({"code": code, "msg": error.description, "data": None})
        response.status_code = status
        for key, value in error.get_headers():
            if key.lower() == "allow":
                response.headers[key] = value
        return response

    for exc in UNAVAILABLE_ERRORS:

        @app.errorhandler(exc)
        def _redis_down(error: Exception) -> Response:
            log.warning("redis unavailable: %s", error.__class__.__name__)
            REDIS_ERRORS.labels("request").inc()
            return error_response(Unavailable())
