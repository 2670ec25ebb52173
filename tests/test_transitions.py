"""Every row of the transition table, through HTTP, with versions checked in Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import (
    BOTH_ENGINES,
    create_qr,
    fill,
    guest,
    snapshot_of,
    with_cookie,
)
from tests.live import user_token

A, B = "u-alice", "u-bob"

pytestmark = BOTH_ENGINES


def _wait(app: Flask, client: FlaskClient, qr_id: str) -> None:
    pass


def _scanned(app: Flask, client: FlaskClient, qr_id: str) -> None:
    assert fill(client, user_token(A), qr_id, "SCAN").status_code == 200


def _success(app: Flask, client: FlaskClient, qr_id: str) -> None:
    _scanned(app, client, qr_id)
    assert fill(client, user_token(A), qr_id, "VERIFY").status_code == 200


def _cancelled(app: Flask, client: FlaskClient, qr_id: str) -> None:
    _scanned(app, client, qr_id)
    assert fill(client, user_token(A), qr_id, "CANCEL").status_code == 200


def _redeem(app: Flask, client: FlaskClient, qr_id: str) -> dict[str, Any]:
    """Redeem from a copy of the browser, so that the browser keeps the QR's binding
    (redemption gives the redeeming browser a new one)."""
    cookie = client.get_cookie("qrlogin_bind")
    assert cookie is not None
    data: dict[str, Any] = guest(with_cookie(app, cookie.value), qr_id).json["data"]
    return data


def _used(app: Flask, client: FlaskClient, qr_id: str) -> None:
    _success(app, client, qr_id)
    assert "token" in _redeem(app, client, qr_id)


def _replaced(app: Flask, client: FlaskClient, qr_id: str) -> None:
    create_qr(client, code=qr_id)


Setup = Callable[[Flask, FlaskClient, str], None]
STATES: dict[str, tuple[Setup, str]] = {
    "wait": (_wait, "QRCODE_WAIT"),
    "scanned_by_a": (_scanned, "QRCODE_SCANNED"),
    "success_by_a": (_success, "QRCODE_SUCCESS"),
    "cancelled_by_a": (_cancelled, "QRCODE_CANCEL"),
    "used": (_used, "QRCODE_ERROR"),
    "replaced": (_replaced, "QRCODE_ERROR"),
}

OK, NOOP, CONFLICT = "changed", "no-op", "conflict"
# (state, step, user) -> (outcome, status afterwards)
TABLE = [
    ("wait", "SCAN", A, OK, "QRCODE_SCANNED"),
    ("wait", "SCAN", B, OK, "QRCODE_SCANNED"),
    ("wait", "VERIFY", A, CONFLICT, "QRCODE_WAIT"),
    ("wait", "CANCEL", A, CONFLICT, "QRCODE_WAIT"),
    ("scanned_by_a", "SCAN", A, NOOP, "QRCODE_SCANNED"),
    ("scanned_by_a", "SCAN", B, CONFLICT, "QRCODE_SCANNED"),
    ("scanned_by_a", "VERIFY", A, OK, "QRCODE_SUCCESS"),
    ("scanned_by_a", "VERIFY", B, CONFLICT, "QRCODE_SCANNED"),
    ("scanned_by_a", "CANCEL", A, OK, "QRCODE_CANCEL"),
    ("scanned_by_a", "CANCEL", B, CONFLICT, "QRCODE_SCANNED"),
    ("success_by_a", "SCAN", A, CONFLICT, "QRCODE_SUCCESS"),
    ("success_by_a", "SCAN", B, CONFLICT, "QRCODE_SUCCESS"),
    ("success_by_a", "VERIFY", A, NOOP, "QRCODE_SUCCESS"),
    ("success_by_a", "VERIFY", B, CONFLICT, "QRCODE_SUCCESS"),
    ("success_by_a", "CANCEL", A, CONFLICT, "QRCODE_SUCCESS"),
    ("success_by_a", "CANCEL", B, CONFLICT, "QRCODE_SUCCESS"),
    ("cancelled_by_a", "SCAN", A, CONFLICT, "QRCODE_CANCEL"),
    ("cancelled_by_a", "SCAN", B, CONFLICT, "QRCODE_CANCEL"),
    ("cancelled_by_a", "VERIFY", A, CONFLICT, "QRCODE_CANCEL"),
    ("cancelled_by_a", "CANCEL", A, NOOP, "QRCODE_CANCEL"),
    ("cancelled_by_a", "CANCEL", B, CONFLICT, "QRCODE_CANCEL"),
    ("used", "SCAN", A, CONFLICT, "QRCODE_ERROR"),
    ("used", "SCAN", B, CONFLICT, "QRCODE_ERROR"),
    ("used", "VERIFY", A, CONFLICT, "QRCODE_ERROR"),
    ("used", "CANCEL", A, CONFLICT, "QRCODE_ERROR"),
    ("replaced", "SCAN", A, CONFLICT, "QRCODE_ERROR"),
    ("replaced", "VERIFY", A, CONFLICT, "QRCODE_ERROR"),
    ("replaced", "CANCEL", A, CONFLICT, "QRCODE_ERROR"),
]


def version_of(app: Flask, client: FlaskClient, qr_id: str) -> tuple[str, int]:
    snapshot = snapshot_of(app, client, qr_id)
    return snapshot.status, snapshot.version


@pytest.mark.parametrize(("state", "step", "user", "outcome", "after"), TABLE)
def test_transition_table(
    app: Flask, client: FlaskClient, state: str, step: str, user: str, outcome: str, after: str
) -> None:
    qr_id = create_qr(client)["id"]
    setup, expected_status = STATES[state]
    setup(app, client, qr_id)
    status_before, version_before = version_of(app, client, qr_id)
    assert status_before == expected_status

    response = fill(client, user_token(user), qr_id, step)

    status_after, version_after = version_of(app, client, qr_id)
    assert status_after == after
    if outcome == CONFLICT:
        assert response.status_code == 409
        assert response.json["code"] == "QRCODE_CONFLICT"
        assert response.json["data"] == {"status": expected_status}
        assert version_after == version_before
    else:
        assert response.status_code == 200, response.json
        assert response.json["data"]["status"] == after
        assert response.json["data"]["step"] == step
        assert version_after == version_before + (1 if outcome == OK else 0)


def test_versions_grow_one_per_transition(app: Flask, client: FlaskClient) -> None:
    qr_id = create_qr(client)["id"]
    assert version_of(app, client, qr_id) == ("QRCODE_WAIT", 1)
    _success(app, client, qr_id)
    assert version_of(app, client, qr_id) == ("QRCODE_SUCCESS", 3)
    _redeem(app, client, qr_id)
    assert version_of(app, client, qr_id) == ("QRCODE_ERROR", 4)


def test_scanned_status_shows_the_scanner(app: Flask, client: FlaskClient) -> None:
    qr_id = create_qr(client)["id"]
    assert "user" not in guest(client, qr_id).json["data"]
    fill(client, user_token(B, "Bob"), qr_id, "SCAN")
    assert guest(client, qr_id).json["data"]["user"] == {"id": B, "name": "Bob", "avatar": None}


def test_cancel_is_reported_to_the_browser(app: Flask, client: FlaskClient) -> None:
    qr_id = create_qr(client)["id"]
    _cancelled(app, client, qr_id)
    data = guest(client, qr_id).json["data"]
    assert data["status"] == "QRCODE_CANCEL" and "token" not in data


@pytest.fixture
def matching_app(env: dict[str, str]) -> Flask:
    from qrlogin import create_app

    env["QRLOGIN_NUMBER_MATCHING"] = "1"
    return create_app(env)


def test_number_matching_right_code(matching_app: Flask) -> None:
    client = matching_app.test_client()
    qr_id = create_qr(client)["id"]
    token = user_token()
    fill(client, token, qr_id, "SCAN")
    code = guest(client, qr_id).json["data"]["verify_code"]
    assert len(code) == 2 and code.isdigit()
    missing = fill(client, token, qr_id, "VERIFY")
    assert missing.status_code == 400 and missing.json["code"] == "BAD_REQUEST"
    assert fill(client, token, qr_id, "VERIFY", verify_code=code).status_code == 200
    assert "token" in guest(client, qr_id).json["data"]


def test_number_matching_wrong_code_ends_the_qr(matching_app: Flask) -> None:
    client = matching_app.test_client()
    qr_id = create_qr(client)["id"]
    token = user_token()
    fill(client, token, qr_id, "SCAN")
    code = guest(client, qr_id).json["data"]["verify_code"]
    wrong = f"{(int(code) + 1) % 100:02d}"
    failed = fill(client, token, qr_id, "VERIFY", verify_code=wrong)
    assert failed.status_code == 403 and failed.json["code"] == "QRCODE_VERIFY_FAILED"
    data = guest(client, qr_id).json["data"]
    assert data["status"] == "QRCODE_ERROR" and data["reason"] == "verify_failed"
    again = fill(client, token, qr_id, "VERIFY", verify_code=code)
    assert again.status_code == 409 and again.json["data"]["status"] == "QRCODE_ERROR"


@pytest.mark.parametrize("typed", ["{code}", " {code} ", "\t{code}\n", "number"])
def test_the_code_as_people_and_apps_send_it(matching_app: Flask, typed: str) -> None:
    """Spaces around the digits are trimmed and a number counts with its leading zeros;
    a code of the wrong form is 400 and leaves the QR as it was."""
    client = matching_app.test_client()
    qr_id = create_qr(client)["id"]
    token = user_token()
    scanned = fill(client, token, qr_id, "SCAN").json["data"]
    assert scanned["matching"] == {"required": True, "length": 2}
    code = guest(client, qr_id).json["data"]["verify_code"]
    for malformed in (code[-1] if code[0] == "0" else "0", "1 2", "x" + code, 3.0):
        refused = fill(client, token, qr_id, "VERIFY", verify_code=malformed)
        assert refused.status_code == 400, (malformed, refused.json)
    assert guest(client, qr_id).json["data"]["status"] == "QRCODE_SCANNED"
    sent: Any = int(code) if typed == "number" else typed.format(code=code)
    assert fill(client, token, qr_id, "VERIFY", verify_code=sent).status_code == 200


def test_without_matching_a_code_is_refused(client: FlaskClient, app: Flask) -> None:
    qr_id = create_qr(client)["id"]
    token = user_token()
    scanned = fill(client, token, qr_id, "SCAN").json["data"]
    assert scanned["matching"] == {"required": False, "length": 2}
    made_up = fill(client, token, qr_id, "VERIFY", verify_code="42")
    assert made_up.status_code == 400 and "number matching is off" in made_up.json["msg"]
    assert guest(client, qr_id).json["data"]["status"] == "QRCODE_SCANNED"
    assert fill(client, token, qr_id, "VERIFY").status_code == 200
