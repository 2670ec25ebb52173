"""The OpenAPI 3.1 document of the HTTP API, served at /openapi.json.

Tests check every route against it and validate live answers with its schemas,
so it cannot drift from what the service does.
"""

from __future__ import annotations

from typing import Any

from qrlogin.config import MAX_WAIT_S
from qrlogin.store import STATUSES, STEPS

ERROR_CODES = [
    "BAD_REQUEST",
    "UNAUTHORIZED",
    "QRCODE_FORBIDDEN",
    "ORIGIN_FORBIDDEN",
    "QRCODE_VERIFY_FAILED",
    "QRCODE_NOT_FOUND",
    "QRCODE_CONFLICT",
    "QRCODE_EXPIRE",
    "SLOW_DOWN",
    "UNAVAILABLE",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["code", "msg", "data"],
        "properties": {"code": {"const": "OK"}, "msg": {"type": "string"}, "data": data},
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/Error{s}"} for s in statuses}


def _body(schema_name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema_name)}}}


_ERROR_TEXT = {
    400: "Malformed request (BAD_REQUEST)",
    401: "Missing, malformed, badly signed or expired token (UNAUTHORIZED)",
    403: "Not bound to this browser (QRCODE_FORBIDDEN), wrong code (QRCODE_VERIFY_FAILED), "
    "or a foreign Origin (ORIGIN_FORBIDDEN)",
    404: "Unknown QR id (QRCODE_NOT_FOUND)",
    409: "Step not allowed in the current status (QRCODE_CONFLICT); data.status tells it",
    410: "The QR code has expired (QRCODE_EXPIRE)",
    413: "Request body larger than 16 KiB (BAD_REQUEST)",
    429: "Too many requests, or too many live QR codes in one browser (SLOW_DOWN); see Retry-After",
    503: "Redis is unreachable (UNAVAILABLE)",
}

_CREATE = {
    "summary": "Create a QR code (browser)",
    "description": "Creates a QR session and sets the qrlogin_bind cookie when missing. "
    "With `code`, a live QR of this browser is first marked QRCODE_ERROR (replaced).",
    "requestBody": _body("CreateRequest"),
    "responses": {
        "201": _json(_envelope(_ref("QRCode")), "The new QR code"),
        **_errors(400, 403, 413, 429, 503),
    },
}

_QR_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$"}

_STREAM_TEXT = (
    "Server-Sent Events. Opens with `retry: 3000` and the current state; then one "
    "`event: status` (id = state version, data = StatusEvent) per transition, "
    "`: ping` comments as heartbeat; ends after a terminal status or QRCODE_SUCCESS."
)

PATHS: dict[str, dict[str, Any]] = {
    "/v1/accounts/qrcode/": {"post": {**_CREATE, "operationId": "createQRCode"}},
    "/v1/accounts/qrcode": {"post": {**_CREATE, "operationId": "createQRCodeNoSlash"}},
    "/v1/accounts/qrcode_fill": {
        "post": {
            "operationId": "fillQRCode",
            "summary": "Scan, confirm or cancel a QR code (mobile app)",
            "security": [{"userToken": []}],
            "requestBody": _body("FillRequest"),
            "responses": {
                "200": _json(_envelope(_ref("FillResult")), "The step was applied (or repeated)"),
                **_errors(400, 401, 403, 404, 409, 410, 413, 429, 503),
            },
        }
    },
    "/v1/passport/guest": {
        "post": {
            "operationId": "guest",
            "summary": "Poll a QR's status; redeem the login token once (browser)",
            "requestBody": _body("GuestRequest"),
            "responses": {
                "200": _json(_envelope(_ref("GuestStatus")), "The current status"),
                **_errors(400, 403, 404, 413, 429, 503),
            },
        }
    },
    "/v1/accounts/qrcode/{qr_id}/events": {
        "get": {
            "operationId": "events",
            "summary": "Wait for status changes (browser, Server-Sent Events)",
            "description": _STREAM_TEXT,
            "parameters": [
                {"name": "qr_id", "in": "path", "required": True, "schema": _QR_ID},
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "The last version seen; its snapshot is not sent again",
                },
            ],
            "responses": {
                "200": {
                    "description": "The event stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "204": {"description": "Last-Event-ID is current and the QR is final: stop"},
                **_errors(403, 404, 503),
            },
        }
    },
    "/v1/passport/me": {
        "get": {
            "operationId": "me",
            "summary": "Who is logged in (login token or qrlogin_session cookie)",
            "security": [{"loginToken": []}, {"sessionCookie": []}],
            "responses": {"200": _json(_envelope(_ref("Me")), "The user"), **_errors(401)},
        }
    },
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "The process is alive",
            "responses": {"200": _json(_envelope({"type": "object"}), "Alive")},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "summary": "Redis answers",
            "responses": {"200": _json(_envelope({"type": "object"}), "Ready"), **_errors(503)},
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics, merged across the process's gunicorn workers",
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
}

_USER = {
    "type": "object",
    "required": ["id", "name", "avatar"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "avatar": {"type": ["string", "null"]},
    },
}
_STATUS = {"type": "string", "enum": list(STATUSES)}
_REASON = {"type": "string", "enum": ["replaced", "used", "verify_failed"]}

SCHEMAS: dict[str, Any] = {
    "Status": _STATUS,
    "User": _USER,
    "Error": {
        "type": "object",
        "required": ["code", "msg", "data"],
        "properties": {
            "code": {"type": "string", "enum": ERROR_CODES},
            "msg": {"type": "string"},
            "data": {"type": ["object", "null"]},
        },
    },
    "CreateRequest": {
        "type": "object",
        "required": ["platform"],
        "properties": {
            "platform": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,32}$"},
            "code": {"type": "string", "maxLength": 64},
        },
    },
    "QRCode": {
        "type": "object",
        "required": [
            "id",
            "png",
            "content",
            "expire",
            "expires_in",
            "prefix",
            "platform",
            "status",
            "interval",
            "events",
        ],
        "properties": {
            "id": _QR_ID,
            "png": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"},
            "content": {"type": "string"},
            "expire": {"type": "integer"},
            "expires_in": {"type": "integer"},
            "prefix": {"type": "string"},
            "platform": {"type": "string"},
            "status": {"const": "QRCODE_WAIT"},
            "interval": {"type": "integer"},
            "events": {"type": "string"},
        },
    },
    "FillRequest": {
        "type": "object",
        "required": ["id", "step"],
        "properties": {
            "id": {"type": "string"},
            "step": {"type": "string", "enum": list(STEPS)},
            "verify_code": {"type": "string", "maxLength": 8},
        },
    },
    "Client": {
        "type": "object",
        "required": ["platform", "ip", "user_agent", "browser", "os", "created_at"],
        "properties": {
            "platform": {"type": "string"},
            "ip": {"type": "string"},
            "user_agent": {"type": "string"},
            "browser": {"type": "string"},
            "os": {"type": "string"},
            "created_at": {"type": "integer"},
        },
    },
    "FillResult": {
        "type": "object",
        "required": ["id", "step", "card_id", "status", "expire", "client"],
        "properties": {
            "id": {"type": "string"},
            "step": {"type": "string", "enum": list(STEPS)},
            "card_id": {"type": "string"},
            "status": _STATUS,
            "expire": {"type": "integer"},
            "client": _ref("Client"),
        },
    },
    "GuestRequest": {
        "type": "object",
        "required": ["code"],
        "properties": {
            "code": {"type": "string"},
            "wait": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_S},
            "since": _STATUS,
        },
    },
    "GuestStatus": {
        "type": "object",
        "required": ["status", "expire", "interval"],
        "properties": {
            "status": _STATUS,
            "expire": {"type": "integer"},
            "interval": {"type": "integer"},
            "user": _USER,
            "verify_code": {"type": "string", "pattern": "^[0-9]{2}$"},
            "reason": _REASON,
            "token": {"type": "string", "description": "The login token, once, on redemption"},
        },
    },
    "StatusEvent": {
        "type": "object",
        "required": ["id", "status", "expire"],
        "properties": {
            "id": _QR_ID,
            "status": _STATUS,
            "expire": {"type": "integer"},
            "user": _USER,
            "verify_code": {"type": "string", "pattern": "^[0-9]{2}$"},
            "reason": _REASON,
        },
    },
    "Me": {
        "type": "object",
        "required": ["user", "qr_id", "platform", "issued_at"],
        "properties": {
            "user": _USER,
            "qr_id": {"type": "string"},
            "platform": {"type": "string"},
            "issued_at": {"type": "integer"},
        },
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "qrlogin",
            "version": "1.0.0",
            "description": "QR-code login: the browser shows a QR, the phone confirms, "
            "the browser is logged in. Every JSON answer uses the envelope "
            '{"code", "msg", "data"}.',
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                f"Error{status}": _json(_ref("Error"), text) for status, text in _ERROR_TEXT.items()
            },
            "securitySchemes": {
                "userToken": {"type": "http", "scheme": "bearer", "description": "user token"},
                "loginToken": {"type": "http", "scheme": "bearer", "description": "login token"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "qrlogin_session"},
            },
        },
    }
