"""Reading requests: the JSON body, its fields, and ids from paths and bodies.

Every check answers 4xx in the envelope (``BadRequest``, ``NotFound``,
``PayloadTooLarge``); the views call these before anything reaches the store.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import gevent
from flask import g, request

from qrlogin.config import BODY_READ_S, MAX_BODY_BYTES
from qrlogin.exceptions import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    QRLoginError,
    RequestTimeout,
)
from qrlogin.models import QR_ID_RE


def json_body() -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``.

    Parsed once per request (a rate limit's key and the view may both read it).
    """
    cached: dict[str, Any] | None = g.get("qrlogin_body")
    if cached is not None:
        return cached
    refused: QRLoginError | None = g.get("qrlogin_body_refused")
    if refused is not None:
        raise refused  # the body is read once: its fault is the same for every reader
    try:
        body = _parsed_body()
    except QRLoginError as error:
        g.qrlogin_body_refused = error
        raise
    g.qrlogin_body = body
    return body


def _parsed_body() -> dict[str, Any]:
    raw = _raw_body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _broken_framing() -> tuple[type[Exception], ...]:
    """What the server raises when a chunked body's framing is broken: gunicorn's parse
    errors (a bad chunk size, a missing terminator) and the body ending early; gevent's
    pywsgi (``./dev run``) raises ValueError."""
    found: list[type[Exception]] = [ValueError, OSError]
    try:
        from gunicorn.http.errors import ParseException
    except ImportError:  # pragma: no cover (gunicorn is a requirement)
        return tuple(found)
    return (ParseException, *found)


BROKEN_FRAMING = _broken_framing()


def _raw_body() -> bytes:
    """The body's bytes: 413 when there are more than MAX_BODY_BYTES of them, 408 when they
    take longer than BODY_READ_S to arrive (a body sent a byte at a time holds a worker's
    connection, and the request's greenlet, for as long as it lasts)."""
    with gevent.Timeout(BODY_READ_S, RequestTimeout()):
        try:
            return _read_body()
        except BROKEN_FRAMING:
            raise BadRequest("the request body's chunked framing is broken") from None


def _read_body() -> bytes:
    """Read from the raw WSGI input (werkzeug's ``input_stream``), with the checks done
    here. werkzeug's own reader wraps the input in a limited stream for every request,
    a cost out of proportion to a body of some 20 bytes."""
    length = request.content_length
    if length is None:
        if not request.environ.get("wsgi.input_terminated"):
            return b""  # no body
        # A chunked body has no length to check up front: read one byte more than the
        # limit to tell a whole body from a cut one.
        data: bytes = request.input_stream.read(MAX_BODY_BYTES + 1)
        if len(data) > MAX_BODY_BYTES:
            raise PayloadTooLarge()
        return data
    if length > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    data = request.input_stream.read(length) if length else b""
    if len(data) < length:
        raise BadRequest("the request body ended before its Content-Length")
    return data


def form_or_json_field(name: str, max_chars: int = 4096) -> str:
    """A required string field from a form body or a JSON one (RFC 7662 sends a form)."""
    if request.mimetype == "application/x-www-form-urlencoded":
        # The same reading as a JSON body's: its limits on size and time, chunked or not.
        try:
            form = urllib.parse.parse_qs(_raw_body().decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            raise BadRequest("request body is not valid form data") from None
        value = form[name][0] if name in form else None
        return string_field({name: value}, name, max_chars=max_chars) or ""
    return string_field(json_body(), name, max_chars=max_chars) or ""


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
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: legal JSON, but not text
            raise BadRequest(f"{name} must be Unicode text") from None
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


def check_qr_id(value: object) -> str:
    """A QR id from a request: 400 when not a string, 404 when it cannot exist."""
    if not isinstance(value, str):
        raise BadRequest("QR id must be a string")
    if not QR_ID_RE.match(value):
        raise NotFound()
    return value
