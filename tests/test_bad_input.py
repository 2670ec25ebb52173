"""Bad input of every kind gets a 4xx in the envelope, never a 500, and changes nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from tests.conftest import bearer, create_qr, fill, snapshot_of
from tests.live import SECRET, user_token

UNKNOWN_ID = "A" * 32
ID = "<id>"  # replaced by a live QR id
TOKEN = "<token>"  # replaced by a valid user token

CREATE, FILL, GUEST = "/v1/accounts/qrcode/", "/v1/accounts/qrcode_fill", "/v1/passport/guest"

# (name, path, raw body or JSON value, expected status, expected code)
CASES: list[tuple[str, str, Any, int, str]] = [
    ("create: malformed JSON", CREATE, b'{"platform": ', 400, "BAD_REQUEST"),
    ("create: not an object", CREATE, [1, 2], 400, "BAD_REQUEST"),
    ("create: string body", CREATE, "Rxx_PC", 400, "BAD_REQUEST"),
    ("create: no platform", CREATE, {}, 400, "BAD_REQUEST"),
    ("create: empty body", CREATE, b"", 400, "BAD_REQUEST"),
    ("create: platform number", CREATE, {"platform": 7}, 400, "BAD_REQUEST"),
    ("create: platform null", CREATE, {"platform": None}, 400, "BAD_REQUEST"),
    ("create: platform empty", CREATE, {"platform": ""}, 400, "BAD_REQUEST"),
    ("create: platform too long", CREATE, {"platform": "P" * 33}, 400, "BAD_REQUEST"),
    ("create: platform bad chars", CREATE, {"platform": "PC; drop"}, 400, "BAD_REQUEST"),
    ("create: platform unicode", CREATE, {"platform": "电脑"}, 400, "BAD_REQUEST"),
    ("create: code number", CREATE, {"platform": "PC", "code": 5}, 400, "BAD_REQUEST"),
    ("create: not UTF-8", CREATE, b'{"platform": "\xff\xfe"}', 400, "BAD_REQUEST"),
    ("fill: malformed JSON", FILL, b"{", 400, "BAD_REQUEST"),
    ("fill: no id", FILL, {"step": "SCAN"}, 400, "BAD_REQUEST"),
    ("fill: id number", FILL, {"id": 12, "step": "SCAN"}, 400, "BAD_REQUEST"),
    ("fill: id list", FILL, {"id": [ID], "step": "SCAN"}, 400, "BAD_REQUEST"),
    ("fill: no step", FILL, {"id": ID}, 400, "BAD_REQUEST"),
    ("fill: bad step", FILL, {"id": ID, "step": "LOGIN"}, 400, "BAD_REQUEST"),
    ("fill: lower-case step", FILL, {"id": ID, "step": "scan"}, 400, "BAD_REQUEST"),
    ("fill: step number", FILL, {"id": ID, "step": 1}, 400, "BAD_REQUEST"),
    (
        "fill: code number too large",
        FILL,
        {"id": ID, "step": "VERIFY", "verify_code": 142},
        400,
        "BAD_REQUEST",
    ),
    (
        "fill: code one digit",
        FILL,
        {"id": ID, "step": "VERIFY", "verify_code": "9"},
        400,
        "BAD_REQUEST",
    ),
    (
        "fill: code letters",
        FILL,
        {"id": ID, "step": "VERIFY", "verify_code": "4a"},
        400,
        "BAD_REQUEST",
    ),
    (
        "fill: code boolean",
        FILL,
        {"id": ID, "step": "VERIFY", "verify_code": True},
        400,
        "BAD_REQUEST",
    ),
    ("fill: unknown id", FILL, {"id": UNKNOWN_ID, "step": "SCAN"}, 404, "QRCODE_NOT_FOUND"),
    ("fill: impossible id", FILL, {"id": "../../etc", "step": "SCAN"}, 404, "QRCODE_NOT_FOUND"),
    ("fill: out of order", FILL, {"id": ID, "step": "VERIFY"}, 409, "QRCODE_CONFLICT"),
    ("guest: malformed JSON", GUEST, b"nope", 400, "BAD_REQUEST"),
    ("guest: no code", GUEST, {}, 400, "BAD_REQUEST"),
    ("guest: code number", GUEST, {"code": 1}, 400, "BAD_REQUEST"),
    ("guest: unknown code", GUEST, {"code": UNKNOWN_ID}, 404, "QRCODE_NOT_FOUND"),
    ("guest: wait string", GUEST, {"code": ID, "wait": "5"}, 400, "BAD_REQUEST"),
    ("guest: wait negative", GUEST, {"code": ID, "wait": -1}, 400, "BAD_REQUEST"),
    ("guest: wait too long", GUEST, {"code": ID, "wait": 26}, 400, "BAD_REQUEST"),
    ("guest: wait boolean", GUEST, {"code": ID, "wait": True}, 400, "BAD_REQUEST"),
    ("guest: wait float", GUEST, {"code": ID, "wait": 1.5}, 400, "BAD_REQUEST"),
    ("guest: bad since", GUEST, {"code": ID, "since": "WAITING"}, 400, "BAD_REQUEST"),
    ("create: huge body", CREATE, {"platform": "PC", "pad": "x" * 17000}, 413, "BAD_REQUEST"),
    ("guest: huge body", GUEST, {"code": ID, "pad": "x" * 17000}, 413, "BAD_REQUEST"),
    ("fill: huge body", FILL, {"id": ID, "step": "SCAN", "pad": "x" * 17000}, 413, "BAD_REQUEST"),
    # JSON nested 1,000 deep (Python's parser would recurse past its limit).
    (
        "create: deep nesting",
        CREATE,
        b'{"platform": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        400,
        "BAD_REQUEST",
    ),
    (
        "guest: deep nesting",
        GUEST,
        b'{"code": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        400,
        "BAD_REQUEST",
    ),
    (
        "fill: deep nesting",
        FILL,
        b'{"id": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1000 + b"}",
        400,
        "BAD_REQUEST",
    ),
    # A lone surrogate, sent raw (\\ud800 is legal JSON but no Unicode text).
    (
        "fill: lone surrogate code",
        FILL,
        b'{"id": "' + ID.encode() + b'", "step": "VERIFY", "verify_code": "\\ud800"}',
        400,
        "BAD_REQUEST",
    ),
    ("create: lone surrogate platform", CREATE, b'{"platform": "\\udfff"}', 400, "BAD_REQUEST"),
    # A trailing newline is not part of a name or an id.
    ("create: platform newline", CREATE, {"platform": "Rxx_PC\n"}, 400, "BAD_REQUEST"),
    ("guest: code newline", GUEST, {"code": ID + "\n"}, 404, "QRCODE_NOT_FOUND"),
]


def _substitute(value: Any, qr_id: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, qr_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, qr_id) for v in value]
    return qr_id if value == ID else value


def assert_envelope(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.json
    assert set(body) == {"code", "msg", "data"}
    assert body["code"] == code and body["msg"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input(
    app: Flask, client: FlaskClient, path: str, body: Any, status: int, code: str
) -> None:
    qr_id = create_qr(client)["id"]
    before = snapshot_of(app, client, qr_id)
    if isinstance(body, bytes):
        raw = body.replace(ID.encode(), qr_id.encode())
    else:
        raw = json.dumps(_substitute(body, qr_id)).encode()
    response = client.post(
        path, data=raw, headers={**bearer(user_token()), "Content-Type": "application/json"}
    )
    assert_envelope(response, status, code)
    assert snapshot_of(app, client, qr_id) == before


def _forged_tokens() -> dict[str, str]:
    def minted(secret: str, salt: str, payload: Any, **kw: Any) -> str:
        return str(URLSafeTimedSerializer(secret, salt=salt, **kw).dumps(payload))

    return {
        "garbled": "not-a-token",
        "empty-ish": ".",
        "wrong secret": minted(
            "another-secret-0123456789", "qrlogin.user", {"sub": "x", "name": "X"}
        ),
        "login token as user token": minted(SECRET, "qrlogin.login", {"sub": "x", "name": "X"}),
        "payload not an object": minted(SECRET, "qrlogin.user", ["x"]),
        "sub missing": minted(SECRET, "qrlogin.user", {"name": "X"}),
        "sub not a string": minted(SECRET, "qrlogin.user", {"sub": 5, "name": "X"}),
        "avatar not a string": minted(
            SECRET, "qrlogin.user", {"sub": "x", "name": "X", "avatar": 1}
        ),
        "huge": "a" * 5000,
    }


@pytest.mark.parametrize("name", list(_forged_tokens()))
def test_forged_user_tokens_are_401(app: Flask, client: FlaskClient, name: str) -> None:
    qr_id = create_qr(client)["id"]
    response = fill(client, _forged_tokens()[name], qr_id, "SCAN")
    assert_envelope(response, 401, "UNAUTHORIZED")
    assert snapshot_of(app, client, qr_id).status == "QRCODE_WAIT"


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "bearer"]
)
def test_missing_or_malformed_authorization_is_401(client: FlaskClient, header: str) -> None:
    qr_id = create_qr(client)["id"]
    response = client.post(
        "/v1/accounts/qrcode_fill",
        json={"id": qr_id, "step": "SCAN"},
        headers={"Authorization": header} if header else {},
    )
    assert_envelope(response, 401, "UNAUTHORIZED")


class PastSigner(TimestampSigner):
    """Signs as if it were an hour ago."""

    def get_timestamp(self) -> int:
        return int(time.time()) - 3600


def test_expired_user_token_is_401(env: dict[str, str]) -> None:
    from qrlogin import create_app

    env["QRLOGIN_USER_TOKEN_MAX_AGE"] = "60"
    app = create_app(env)
    client = app.test_client()
    qr_id = create_qr(client)["id"]
    old = URLSafeTimedSerializer(SECRET, salt="qrlogin.user", signer=PastSigner)
    response = fill(client, str(old.dumps({"sub": "u", "name": "U"})), qr_id, "SCAN")
    assert_envelope(response, 401, "UNAUTHORIZED")
    assert "expired" in response.json["msg"]


@pytest.mark.parametrize(
    "token", ["", "garbage", "Bearer x", "a" * 4000], ids=["empty", "garbage", "nested", "huge"]
)
def test_me_rejects_bad_login_tokens(app: Flask, token: str) -> None:
    client = app.test_client()
    if token:
        client.set_cookie("qrlogin_session", token)
    assert_envelope(client.get("/v1/passport/me"), 401, "UNAUTHORIZED")
    user_token_as_login = user_token()
    response = app.test_client().get("/v1/passport/me", headers=bearer(user_token_as_login))
    assert_envelope(response, 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/accounts/qrcode/", 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/v1/passport/guest", 405, "METHOD_NOT_ALLOWED"),
        ("POST", "/v1/passport/me", 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/v1/nothing-here", 404, "NOT_FOUND"),
    ],
)
def test_routing_errors_use_the_envelope(
    client: FlaskClient, method: str, path: str, status: int, code: str
) -> None:
    assert_envelope(client.open(path, method=method), status, code)
