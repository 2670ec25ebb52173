"""Only the browser that created a QR may read, regenerate or redeem it."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import BOTH_ENGINES, create_qr, fill, guest, snapshot_of, user_token

pytestmark = BOTH_ENGINES


def confirm(app: Flask, qr_id: str) -> None:
    phone = app.test_client()
    token = user_token(app)
    assert fill(phone, token, qr_id, "SCAN").status_code == 200
    assert fill(phone, token, qr_id, "VERIFY").status_code == 200


def test_other_browser_without_cookie_is_forbidden(app: Flask, client: FlaskClient) -> None:
    qr_id = create_qr(client)["id"]
    confirm(app, qr_id)
    thief = app.test_client()
    stolen = guest(thief, qr_id)
    assert stolen.status_code == 403 and stolen.json["code"] == "QRCODE_FORBIDDEN"
    assert "token" not in stolen.get_data(as_text=True)
    assert "token" in guest(client, qr_id).json["data"]


def test_other_browser_with_its_own_cookie_is_forbidden(app: Flask, client: FlaskClient) -> None:
    qr_id = create_qr(client)["id"]
    other = app.test_client()
    create_qr(other)  # gets a binding cookie of its own
    confirm(app, qr_id)
    assert guest(other, qr_id).status_code == 403
    assert guest(client, qr_id).json["data"]["status"] == "QRCODE_SUCCESS"


def test_forged_binding_cookie_is_forbidden(app: Flask, client: FlaskClient) -> None:
    qr_id = create_qr(client)["id"]
    forger = app.test_client()
    forger.set_cookie("qrlogin_bind", "A" * 43)
    assert guest(forger, qr_id).status_code == 403


def test_redemption_happens_once(app: Flask, client: FlaskClient) -> None:
    qr_id = create_qr(client)["id"]
    confirm(app, qr_id)
    answers = [guest(client, qr_id).json["data"] for _ in range(3)]
    assert [("token" in a) for a in answers] == [True, False, False]
    assert [a["status"] for a in answers[1:]] == ["QRCODE_ERROR", "QRCODE_ERROR"]


def test_cookie_is_kept_across_qr_codes(client: FlaskClient) -> None:
    first = client.post("/v1/accounts/qrcode/", json={"platform": "web"})
    assert "qrlogin_bind=" in first.headers["Set-Cookie"]
    second = client.post("/v1/accounts/qrcode/", json={"platform": "web"})
    assert "Set-Cookie" not in second.headers


def test_regenerate_replaces_the_old_qr(app: Flask, client: FlaskClient) -> None:
    old = create_qr(client)["id"]
    new = create_qr(client, code=old)["id"]
    assert new != old
    data = guest(client, old).json["data"]
    assert data["status"] == "QRCODE_ERROR" and data["reason"] == "replaced"
    assert guest(client, new).json["data"]["status"] == "QRCODE_WAIT"
    scan = fill(app.test_client(), user_token(app), old, "SCAN")
    assert scan.status_code == 409 and scan.json["data"]["status"] == "QRCODE_ERROR"


def test_regenerate_ignores_foreign_unknown_and_dead_codes(app: Flask, client: FlaskClient) -> None:
    other = app.test_client()
    foreign = create_qr(other)["id"]
    create_qr(client, code=foreign)
    assert guest(other, foreign).json["data"]["status"] == "QRCODE_WAIT"

    create_qr(client, code="x" * 32)  # unknown
    create_qr(client, code="not an id!")  # cannot be an id

    used = create_qr(client)["id"]
    confirm(app, used)
    guest(client, used)
    before = snapshot_of(app, client, used)
    create_qr(client, code=used)
    after = snapshot_of(app, client, used)
    assert after == before and after.view["reason"] == "used"


def test_regenerate_without_binding_cookie_ignores_code(app: Flask, client: FlaskClient) -> None:
    victim = create_qr(client)["id"]
    create_qr(app.test_client(), code=victim)
    assert guest(client, victim).json["data"]["status"] == "QRCODE_WAIT"
