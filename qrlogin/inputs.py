"""Reading requests: the JSON body, its fields, and ids from paths and bodies.

Every check answers 4xx in the envelope (``BadRequest``, ``NotFound``,
``PayloadTooLarge``); the views call these before anything reaches the store.
"""

from __future__ import annotations

import json
from typing import Any

from flask import g, request
from werkzeug.exceptions import RequestEntityTooLarge

from qrlogin.exceptions import BadRequest, NotFound, PayloadTooLarge
from qrlogin.models import QR_ID_RE


def json_body() -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``.

    Parsed once per request (a rate limit's key and the view may both read it).
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


def check_qr_id(value: object) -> str:
    """A QR id from a request: 400 when not a string, 404 when it cannot exist."""
    if not isinstance(value, str):
        raise BadRequest("QR id must be a string")
    if not QR_ID_RE.match(value):
        raise NotFound()
    return value
