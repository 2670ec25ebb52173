"""The OpenAPI 3.1 document of the HTTP API, served at /openapi.json.

Tests check every route against it and validate live answers with its schemas,
so it cannot drift from what the service does.
"""

from __future__ import annotations

from typing import Any

from qrlogin.browser import BIND_COOKIE, HOST_PREFIX
from qrlogin.config import MAX_BODY_TEXT, MAX_WAIT_S, SSE_RETRY_MS
from qrlogin.envelope import HTTP_CODES, OTHER_HTTP_CODE
from qrlogin.exceptions import (
    BadRequest,
    Conflict,
    Expired,
    Forbidden,
    NotFound,
    OriginForbidden,
    Overloaded,
    PayloadTooLarge,
    QRLoginError,
    RequestTimeout,
    SessionEnded,
    SessionNotFound,
    SlowDown,
    Unauthorized,
    Unavailable,
    VerifyFailed,
)
from qrlogin.models import (
    CODE_DIGITS,
    CODE_PATTERN,
    FINAL,
    MAX_WATCHED,
    PLATFORM_PATTERN,
    QR_ID_PATTERN,
    REASONS,
    STATUSES,
    STEPS,
    VERIFY_CODE_PATTERN,
    WAIT,
)
from qrlogin.oidc import openapi as oidc_openapi


def _error_codes() -> list[str]:
    """Every envelope code an error answer can carry, from the error types themselves."""
    codes: list[str] = []
    pending: list[type[QRLoginError]] = [QRLoginError]
    while pending:
        cls = pending.pop(0)
        if cls.code not in codes:
            codes.append(cls.code)
        pending.extend(cls.__subclasses__())
    return [*codes, *(c for c in (*HTTP_CODES.values(), OTHER_HTTP_CODE) if c not in codes)]


ERROR_CODES = _error_codes()


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["code", "msg", "data"],
        "properties": {"code": {"const": "OK"}, "msg": {"type": "string"}, "data": data},
    }


def _sse(
    description: str, item: dict[str, Any], events: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A 200 that is an event stream, with the schema of each event's data, and, where
    the events differ, each event's name with its data's schema."""
    media: dict[str, Any] = {"schema": {"type": "string"}, "x-itemSchema": item}
    if events:
        media["x-events"] = events
    return {"description": description, "content": {"text/event-stream": media}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/Error{s}"} for s in statuses}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": sorted(properties), "properties": properties}


def _body(schema_name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema_name)}}}


_ERROR_TEXT = {
    400: f"Malformed request ({BadRequest.code})",
    401: f"Missing, malformed, badly signed or expired token ({Unauthorized.code}), or "
    f"the login's session has ended ({SessionEnded.code})",
    403: f"Not bound to this browser ({Forbidden.code}), wrong code ({VerifyFailed.code}), "
    f"or a foreign Origin ({OriginForbidden.code})",
    404: f"Unknown QR id ({NotFound.code}), or no such session of this user "
    f"({SessionNotFound.code})",
    409: f"Step not allowed in the current status ({Conflict.code}); data.status tells it",
    410: f"The QR code has expired ({Expired.code})",
    408: f"The request body came too slowly ({RequestTimeout.code})",
    413: f"Request body larger than {MAX_BODY_TEXT} ({PayloadTooLarge.code})",
    429: f"Too many requests, or too many live QR codes in one browser ({SlowDown.code}); "
    "see Retry-After",
    503: f"Redis is unreachable ({Unavailable.code}), or the worker has as many requests in "
    f"progress as it takes ({Overloaded.code}); see Retry-After",
}

_QR_ID = {"type": "string", "pattern": QR_ID_PATTERN}
#: The binding cookie, as security schemes rather than parameters: it is the HTTP client's
#: cookie jar that keeps it and sends it (a generated client that also took it as a
#: parameter would send it twice). Its name depends on the scheme the browser uses.
_BIND_SCHEMES = {
    "bindCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": BIND_COOKIE,
        "description": "The browser binding over plain HTTP: set by the create call "
        "(Set-Cookie) and sent back by the cookie jar. Without it the QR's stream, poll and "
        "redemption answer 403",
    },
    "bindCookieHttps": {
        "type": "apiKey",
        "in": "cookie",
        "name": HOST_PREFIX + BIND_COOKIE,
        "description": "The browser binding over HTTPS (Secure, Path=/, no Domain): the same "
        "cookie under the name browsers let no other host or path set",
    },
}
#: Calls that need the binding: either name, as the scheme gives it.
_BOUND: list[dict[str, list[str]]] = [{name: []} for name in _BIND_SCHEMES]

_CREATE = {
    "summary": "Create a QR code (browser)",
    "description": "Creates a QR session and sets the binding cookie when missing "
    f"(`{BIND_COOKIE}`, over HTTPS `{HOST_PREFIX}{BIND_COOKIE}`). "
    "With `code`, a live QR of this browser is first marked QRCODE_ERROR (replaced).",
    "security": [{}, *_BOUND],
    "requestBody": _body("CreateRequest"),
    "responses": {
        "201": {
            **_json(_envelope(_ref("QRCode")), "The new QR code"),
            "headers": {
                "Set-Cookie": {
                    "description": f"`{BIND_COOKIE}=...; HttpOnly; SameSite=Lax; Path=/` "
                    f"(over HTTPS `{HOST_PREFIX}{BIND_COOKIE}=...; Secure; ...`), "
                    "when the request carried no valid binding cookie",
                    "schema": {"type": "string"},
                }
            },
        },
        **_errors(400, 403, 408, 413, 429, 503),
    },
}

_READY = {
    "type": "object",
    "required": ["status", "redis", "demo", "warnings"],
    "properties": {
        "status": {"type": "string", "enum": ["ready"]},
        "warnings": {
            "type": "array",
            "items": {"type": "string"},
            "description": "What the operator should change though the service is ready: "
            "forwarded headers arriving while QRLOGIN_TRUSTED_PROXIES=0 ignores them",
        },
        "redis": {"type": "string", "enum": ["ok", "embedded", "cluster", "sentinel"]},
        "demo": {"type": "boolean"},
        "cluster": {
            "type": "object",
            "description": "Only on a Redis Cluster: CLUSTER INFO as one node sees it, and "
            "the masters this process sends commands to.",
            "required": ["state", "slots_ok", "slots_failing", "known_nodes", "masters"],
            "properties": {
                "state": {"type": "string"},
                "slots_ok": {"type": "integer"},
                "slots_failing": {"type": "integer"},
                "known_nodes": {"type": "integer"},
                "masters": {"type": "array", "items": {"type": "string"}},
            },
        },
    },
}

_STREAM_TEXT = (
    f"Server-Sent Events. Opens with `retry: {SSE_RETRY_MS}` and the current state; then one "
    "`event: status` (id = state version, data = StatusEvent) per transition, "
    "`: ping` comments as heartbeat; ends after a final status "
    f"({', '.join(s for s in STATUSES if s in FINAL)})."
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
                **_errors(400, 401, 403, 404, 408, 409, 410, 413, 429, 503),
            },
        }
    },
    "/v1/passport/guest": {
        "post": {
            "operationId": "guest",
            "summary": "Poll a QR's status; redeem the login token once (browser)",
            "security": _BOUND,
            "requestBody": _body("GuestRequest"),
            "responses": {
                "200": _json(_envelope(_ref("GuestStatus")), "The current status"),
                **_errors(400, 403, 404, 408, 413, 429, 503),
            },
        }
    },
    "/v1/accounts/qrcode/{qr_id}/events": {
        "get": {
            "operationId": "events",
            "security": _BOUND,
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
                "200": _sse(
                    "The event stream; the data of each `status` event is a StatusEvent",
                    _ref("StatusEvent"),
                ),
                "204": {"description": "Last-Event-ID names a final state (or a later one): stop"},
                **_errors(403, 404, 429, 503),
            },
        }
    },
    "/v1/accounts/qrcode/events": {
        "get": {
            "operationId": "sharedEvents",
            "security": _BOUND,
            "summary": "Wait for status changes of several QR codes of this browser on one stream",
            "description": "Server-Sent Events for the tabs of one browser, which share one "
            f"connection. Opens with `retry: {SSE_RETRY_MS}` and each QR's current state; then "
            "one `event: status` per transition (data = SharedStatusEvent: the StatusEvent and "
            "the state's `version`; no `id:` lines), `event: gone` (data = GoneEvent) for a QR "
            "not found or not bound to this browser, `: ping` heartbeats, and the same "
            "shutdown `retry:` as the per-QR stream. Ends when every QR is final or gone.",
            "parameters": [
                {
                    "name": "ids",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": f"1 to {MAX_WATCHED} QR ids, comma-separated",
                },
            ],
            "responses": {
                "200": _sse(
                    "The event stream", {"oneOf": [_ref("SharedStatusEvent"), _ref("GoneEvent")]}
                ),
                **_errors(400, 429, 503),
            },
        }
    },
    "/v1/passport/me": {
        "get": {
            "operationId": "me",
            "summary": "Who is logged in (login token or qrlogin_session cookie)",
            "security": [{"loginToken": []}, {"sessionCookie": []}, {"sessionCookieHttps": []}],
            "responses": {"200": _json(_envelope(_ref("Me")), "The user"), **_errors(401)},
        }
    },
    "/v1/passport/logout": {
        "post": {
            "operationId": "logout",
            "summary": "End the caller's session and clear its cookie; safe to repeat",
            "security": [{"loginToken": []}, {"sessionCookie": []}, {"sessionCookieHttps": []}],
            "responses": {
                "200": _json(
                    _envelope(_object({"session": _ref("Session")})), "The session, ended"
                ),
                **_errors(401, 503),
            },
        }
    },
    "/v1/passport/session/events": {
        "get": {
            "operationId": "sessionEvents",
            "summary": "The caller's session as Server-Sent Events (browser)",
            "description": f"Opens with `retry: {SSE_RETRY_MS}` and the session as an "
            "`event: session` (id = the session's version); one more `session` event when "
            "it ends (status `ended`, with `reason`), then the stream closes. `: ping` "
            "heartbeats. 204 when the session has already ended.",
            "security": [{"loginToken": []}, {"sessionCookie": []}, {"sessionCookieHttps": []}],
            "responses": {
                "200": _sse("The event stream; each event's data is a Session", _ref("Session")),
                "204": {"description": "The session has ended: stop"},
                **_errors(401, 429, 503),
            },
        }
    },
    "/v1/passport/introspect": {
        "post": {
            "operationId": "introspect",
            "summary": "Is this login token's session active? (main application, RFC 7662)",
            "description": "Send the service credential (QRLOGIN_INTROSPECT_KEY) as a "
            "Bearer header and the token as a form field or in JSON. `data` is the RFC 7662 "
            'answer: `{"active": false}` for any token that is not live.',
            "security": [{"introspectKey": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("IntrospectRequest")},
                    "application/x-www-form-urlencoded": {"schema": _ref("IntrospectRequest")},
                },
            },
            "responses": {
                "200": _json(_envelope(_ref("Introspection")), "The token's state"),
                **_errors(400, 401, 408, 413, 503),
            },
        }
    },
    "/v1/accounts/sessions": {
        "get": {
            "operationId": "listSessions",
            "summary": "The signed-in user's live sessions (mobile app)",
            "security": [{"userToken": []}],
            "responses": {
                "200": _json(
                    _envelope(_object({"sessions": {"type": "array", "items": _ref("Session")}})),
                    "Newest first",
                ),
                **_errors(401, 503),
            },
        }
    },
    "/v1/accounts/sessions/{sid}": {
        "delete": {
            "operationId": "endSession",
            "summary": "End one of the user's sessions (mobile app); another user's is 404",
            "security": [{"userToken": []}],
            "parameters": [
                {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": _json(
                    _envelope(_object({"session": _ref("Session")})), "The session, ended"
                ),
                **_errors(401, 404, 429, 503),
            },
        }
    },
    "/v1/accounts/sessions/end_all": {
        "post": {
            "operationId": "endAllSessions",
            "summary": "End every session of the user (mobile app)",
            "security": [{"userToken": []}],
            "responses": {
                "200": _json(
                    _envelope(
                        _object(
                            {
                                "ended": {"type": "integer"},
                                "sessions": {"type": "array", "items": _ref("Session")},
                            }
                        )
                    ),
                    "The sessions it ended",
                ),
                **_errors(401, 429, 503),
            },
        }
    },
    "/v1/accounts/events": {
        "get": {
            "operationId": "userEvents",
            "summary": "New-login and ended-session notices for the user (mobile app, SSE)",
            "description": "Server-Sent Events with `Authorization: Bearer <user token>`: "
            "first `event: ready` (no id; data: the user's id and the notice id the stream "
            "resumes after), then `event: session_created` and `event: session_ended`, each "
            "with the Session as data and a notice id as event id; `Last-Event-ID` resumes "
            "after it. `: ping` heartbeats. `x-events` names each event's data.",
            "security": [{"userToken": []}],
            "responses": {
                "200": _sse(
                    "The event stream",
                    _ref("Session"),
                    events={
                        "ready": _ref("NoticesReady"),
                        "session_created": _ref("Session"),
                        "session_ended": _ref("Session"),
                    },
                ),
                **_errors(401, 429, 503),
            },
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
            "summary": "Redis answers (on a cluster: and its state is ok)",
            "description": "503 when Redis does not answer; when the cause has a fix (a TLS "
            "certificate that does not verify, Redis's client limit reached) `msg` and "
            "`data.cause` name it and the setting to change.",
            "responses": {"200": _json(_envelope(_READY), "Ready"), **_errors(503)},
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics, merged across the process's gunicorn workers",
            "description": "Open unless QRLOGIN_METRICS_TOKEN is set; then only with that "
            "token as a Bearer credential (401 otherwise).",
            "security": [{}, {"metricsToken": []}],
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors(401),
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
_REASON = {"type": "string", "enum": list(REASONS)}

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
            "platform": {"type": "string", "pattern": PLATFORM_PATTERN},
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
            "app_link",
        ],
        "properties": {
            "id": _QR_ID,
            "png": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"},
            "content": {"type": "string"},
            "expire": {"type": "integer"},
            "expires_in": {"type": "integer"},
            "prefix": {"type": "string"},
            "platform": {"type": "string"},
            "status": {"const": WAIT},
            "interval": {"type": "integer"},
            "events": {"type": "string"},
            "app_link": {
                "type": "string",
                "description": "Same-device login: `prefix` + `?qr=` + the URL-encoded `content`; "
                "the app reads it as a scanned code",
            },
        },
    },
    "SharedStatusEvent": {
        "allOf": [
            _ref("StatusEvent"),
            {
                "type": "object",
                "required": ["version"],
                "properties": {"version": {"type": "integer", "minimum": 1}},
            },
        ],
    },
    "GoneEvent": {
        "type": "object",
        "required": ["id", "code"],
        "properties": {"id": _QR_ID, "code": {"enum": [NotFound.code, Forbidden.code]}},
    },
    "FillRequest": {
        "type": "object",
        "required": ["id", "step"],
        "properties": {
            "id": {"type": "string"},
            "step": {"type": "string", "enum": list(STEPS)},
            "verify_code": {
                "description": "With number matching (SCAN's `matching.required`): the "
                f"{CODE_DIGITS} digits the browser shows, as a string (spaces around it are "
                f'trimmed, leading zeros count: "07") or a number from 0 to '
                f"{10**CODE_DIGITS - 1} (written with leading zeros). Another form is 400 "
                "and does not end the QR; a wrong code ends it (QRCODE_ERROR). Without "
                "number matching, sending one is 400.",
                "oneOf": [
                    {"type": "string", "pattern": CODE_PATTERN},
                    {"type": "integer", "minimum": 0, "maximum": 10**CODE_DIGITS - 1},
                ],
            },
        },
    },
    "Matching": {
        "type": "object",
        "description": "Number matching for this QR (in SCAN's answer): when required, "
        "VERIFY must carry the code the browser shows",
        "required": ["required", "length"],
        "properties": {
            "required": {"type": "boolean"},
            "length": {"type": "integer", "description": "Digits in the code"},
        },
    },
    "Client": {
        "type": "object",
        "description": "The browser that asked for the QR. Its address (and so its location) "
        "is the one thing here that a page relaying the QR cannot choose; the rest its "
        "browser says about itself.",
        "required": ["platform", "ip", "user_agent", "browser", "os", "created_at", "location"],
        "properties": {
            "platform": {"type": "string"},
            "ip": {"type": "string"},
            "user_agent": {
                "type": "string",
                "description": "Raw; show it behind a details control",
            },
            "browser": {"type": "string", "description": "Parsed, e.g. Chrome 131"},
            "os": {"type": "string", "description": "Parsed, e.g. Windows 10"},
            "created_at": {"type": "integer"},
            "location": {
                "oneOf": [_ref("Location"), {"type": "null"}],
                "description": "From the IP address; null for private addresses or unknown",
            },
        },
    },
    "Location": {
        "type": "object",
        "required": ["country", "country_name", "city"],
        "properties": {
            "country": {"type": ["string", "null"], "description": "ISO 3166-1 alpha-2"},
            "country_name": {"type": ["string", "null"]},
            "city": {
                "type": ["string", "null"],
                "description": "Only with an operator's database (QRLOGIN_GEOIP_DB)",
            },
        },
    },
    "Network": {
        "type": "object",
        "description": "The phone's own address against the browser's",
        "required": ["same_address", "same_network", "same_country", "warning"],
        "properties": {
            "same_address": {"type": "boolean"},
            "same_network": {"type": "boolean", "description": "Same /24 (IPv4) or /64 (IPv6)"},
            "same_country": {"type": ["boolean", "null"], "description": "null: unknown"},
            "warning": {
                "type": ["string", "null"],
                "description": "Plain words for the prompt when the networks differ, e.g. "
                "'This request comes from another network, in Germany.'",
            },
        },
    },
    "FillResult": {
        "type": "object",
        "required": ["id", "step", "card_id", "status", "expire", "client", "network"],
        "properties": {
            "network": _ref("Network"),
            "id": {"type": "string"},
            "step": {"type": "string", "enum": list(STEPS)},
            "card_id": {"type": "string"},
            "status": _STATUS,
            "expire": {"type": "integer"},
            "client": _ref("Client"),
            "matching": {**_ref("Matching"), "description": "In SCAN's answer only"},
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
            "verify_code": {"type": "string", "pattern": VERIFY_CODE_PATTERN},
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
            "verify_code": {"type": "string", "pattern": VERIFY_CODE_PATTERN},
            "reason": _REASON,
        },
    },
    "Me": {
        "type": "object",
        "required": ["user", "qr_id", "platform", "issued_at", "session"],
        "properties": {
            "user": _USER,
            "qr_id": {"type": "string"},
            "platform": {"type": "string"},
            "issued_at": {"type": "integer"},
            "session": _ref("Session"),
        },
    },
    "Session": {
        "type": "object",
        "description": "A login session: where it was opened, and its state",
        "required": [
            "id",
            "status",
            "user",
            "platform",
            "browser",
            "os",
            "ip",
            "location",
            "qr_id",
            "created_at",
            "last_seen_at",
            "expire",
        ],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["active", "ended"]},
            "user": _USER,
            "platform": {"type": "string"},
            "browser": {"type": "string"},
            "os": {"type": "string"},
            "ip": {"type": "string"},
            "location": {"oneOf": [_ref("Location"), {"type": "null"}]},
            "qr_id": {"type": "string"},
            "created_at": {"type": "integer"},
            "last_seen_at": {"type": "integer"},
            "expire": {
                "type": "integer",
                "description": "When it ends unless used again (idle), or at the latest; "
                "when it ended, for an ended one",
            },
            "ended_at": {"type": "integer"},
            "reason": {
                "type": "string",
                "enum": ["logout", "revoked", "idle", "expired", "lost"],
                "description": "`lost`: the service no longer has the session's record (a "
                "Redis that kept nothing across a restart)",
            },
        },
    },
    "NoticesReady": {
        "type": "object",
        "description": "The notice stream's opening: it is live from here",
        "required": ["user_id", "after"],
        "properties": {
            "user_id": {"type": "string"},
            "after": {
                "type": "string",
                "description": "The notice id the stream resumes after (Last-Event-ID, or "
                "the newest notice when none was sent)",
            },
        },
    },
    "IntrospectRequest": {
        "type": "object",
        "required": ["token"],
        "properties": {"token": {"type": "string", "maxLength": 4096}},
    },
    "Introspection": {
        "type": "object",
        "description": "RFC 7662: only `active` when the token is not live",
        "required": ["active"],
        "properties": {
            "active": {"type": "boolean"},
            "token_type": {"const": "login"},
            "sub": {"type": "string"},
            "name": {"type": "string"},
            "sid": {"type": "string"},
            "iat": {"type": "integer"},
            "exp": {"type": "integer"},
            "platform": {"type": "string"},
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
            '{"code", "msg", "data"}. Every answer of the API carries X-Request-Id. '
            "Compatibility: within this version, answers may gain fields (and events, "
            "event types and error codes may be added); clients ignore what they do not "
            "know. No field is removed or changes its meaning without a new version.",
        },
        "paths": PATHS | oidc_openapi.PATHS,
        "components": {
            "schemas": SCHEMAS | oidc_openapi.SCHEMAS,
            "responses": {
                f"Error{status}": _json(_ref("Error"), text) for status, text in _ERROR_TEXT.items()
            },
            "securitySchemes": {
                "userToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "user token: an itsdangerous token signed with SECRET_KEY, "
                    "or a JWT the main application signs (HS256 with QRLOGIN_USER_JWT_KEY, or "
                    "RS256, ES256, EdDSA with a key of QRLOGIN_USER_JWKS_URL)",
                },
                "loginToken": {"type": "http", "scheme": "bearer", "description": "login token"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "qrlogin_session"},
                "sessionCookieHttps": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": HOST_PREFIX + "qrlogin_session",
                    "description": "The session cookie over HTTPS (Secure, Path=/, no Domain): "
                    "no other host of the site can plant it",
                },
                **_BIND_SCHEMES,
                "metricsToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the scraper's credential, QRLOGIN_METRICS_TOKEN",
                },
                "introspectKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the service credential, QRLOGIN_INTROSPECT_KEY",
                },
                **oidc_openapi.SECURITY_SCHEMES,
            },
        },
    }
