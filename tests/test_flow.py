"""The whole happy path through HTTP, as a browser, a phone and the main app see it."""

from __future__ import annotations

import base64
import io
import json

import pytest
import zxingcpp
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from PIL import Image

from tests.conftest import BOTH_ENGINES, bearer, create_qr, fill, guest
from tests.live import SECRET, user_token

CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)

pytestmark = BOTH_ENGINES


def decode_png(png_b64: str) -> str:
    image = Image.open(io.BytesIO(base64.b64decode(png_b64)))
    # As a QR reader reads: zxing-cpp's every-format search also finds, in about one
    # QR of 3,000, a 4-digit ITF barcode (a linear format) among the modules.
    found = zxingcpp.read_barcodes(
        image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    )
    assert len(found) == 1
    return str(found[0].text)


def test_create_answers_the_contract(client: FlaskClient) -> None:
    response = client.post(
        "/v1/accounts/qrcode/", json={"platform": "Rxx_PC"}, headers={"User-Agent": CHROME_WIN}
    )
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body is not None and body["code"] == "OK"
    data = body["data"]
    assert data["status"] == "QRCODE_WAIT"
    assert data["expires_in"] == 120 and data["interval"] == 2
    assert data["prefix"] == "rk://scanforpclogin/" and data["platform"] == "Rxx_PC"
    assert data["events"] == f"/v1/accounts/qrcode/{data['id']}/events"
    assert len(data["id"]) >= 22  # at least 128 bits of URL-safe randomness
    expected = (
        f'{{"id":"{data["id"]}","expire":{data["expire"]},'
        '"prefix":"rk://scanforpclogin/","platform":"Rxx_PC"}'
    )
    assert data["content"] == expected
    assert decode_png(data["png"]) == expected
    assert json.loads(decode_png(data["png"])) == {
        "id": data["id"], "expire": data["expire"], "prefix": data["prefix"], "platform": "Rxx_PC"
    }  # fmt: skip
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("qrlogin_bind=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_trailing_slash_is_optional(client: FlaskClient) -> None:
    response = client.post("/v1/accounts/qrcode", json={"platform": "Rxx_PC"})
    assert response.status_code == 201


def test_full_login(app: Flask, client: FlaskClient) -> None:
    qr = create_qr(client, platform="Rxx_PC")
    qr_id = json.loads(decode_png(qr["png"]))["id"]  # the phone reads the id from the image
    token = user_token("u-alice", "Alice", "https://example.com/alice.png")

    scan = fill(client, token, qr_id, "SCAN")
    assert scan.status_code == 200
    assert scan.json["data"]["status"] == "QRCODE_SCANNED"
    assert scan.json["data"]["card_id"] == "u-alice"
    waiting = guest(client, qr_id).json["data"]
    assert waiting["status"] == "QRCODE_SCANNED"
    assert waiting["user"] == {
        "id": "u-alice",
        "name": "Alice",
        "avatar": "https://example.com/alice.png",
    }
    assert "token" not in waiting

    assert fill(client, token, qr_id, "VERIFY").json["data"]["status"] == "QRCODE_SUCCESS"
    redeemed = guest(client, qr_id)
    assert redeemed.status_code == 200
    data = redeemed.json["data"]
    assert data["status"] == "QRCODE_SUCCESS" and data["token"]
    session_cookie = [
        c for c in redeemed.headers.getlist("Set-Cookie") if c.startswith("qrlogin_session=")
    ]
    assert session_cookie and "HttpOnly" in session_cookie[0]

    # The main application checks the login token with itsdangerous and the shared secret.
    payload = URLSafeTimedSerializer(SECRET, salt="qrlogin.login").loads(data["token"], max_age=60)
    # The token names the session the login opened.
    assert isinstance(payload.pop("sid"), str)
    assert payload == {
        "sub": "u-alice", "name": "Alice", "avatar": "https://example.com/alice.png",
        "qr": qr_id, "platform": "Rxx_PC",
    }  # fmt: skip

    # Redemption gave the browser a new binding that remembers the old one: the used QR
    # still answers it, as used, and never with a token again.
    after = guest(client, qr_id)
    assert after.status_code == 200 and "token" not in after.json["data"]
    assert (after.json["data"]["status"], after.json["data"]["reason"]) == ("QRCODE_ERROR", "used")

    me_cookie = client.get("/v1/passport/me")
    assert me_cookie.status_code == 200
    me = me_cookie.json["data"]
    assert me["user"]["id"] == "u-alice" and me["qr_id"] == qr_id and me["platform"] == "Rxx_PC"
    assert isinstance(me["issued_at"], int)
    me_bearer = app.test_client().get("/v1/passport/me", headers=bearer(data["token"]))
    assert me_bearer.status_code == 200 and me_bearer.json["data"] == me


def test_scan_answer_carries_requester_context(app: Flask) -> None:
    browser = app.test_client()
    qr = browser.post(
        "/v1/accounts/qrcode/",
        json={"platform": "Rxx_PC"},
        headers={"User-Agent": CHROME_WIN},
        environ_base={"REMOTE_ADDR": "203.0.113.5"},
    ).json["data"]
    client = fill(app.test_client(), user_token(), qr["id"], "SCAN").json["data"]["client"]
    assert client["platform"] == "Rxx_PC"
    assert client["ip"] == "203.0.113.5"
    assert client["user_agent"] == CHROME_WIN
    assert client["browser"] == "Chrome 131" and client["os"] == "Windows 10"
    assert abs(client["created_at"] - (qr["expire"] - 120)) <= 1


@pytest.mark.parametrize(("hops", "forwarded", "expected"), [
    ("0", "198.51.100.7", "10.0.0.1"),
    ("1", "198.51.100.7", "198.51.100.7"),
    ("1", "203.0.113.9, 198.51.100.7", "198.51.100.7"),
    ("2", "203.0.113.9, 198.51.100.7", "203.0.113.9"),
    # Text that is no address is not shown to the phone: the socket's address is.
    ("1", "<b>Your office</b>", "10.0.0.1"),
    ("1", "Your office " + "x" * 2000, "10.0.0.1"),
    ("2", "<i>x</i>, 198.51.100.7", "10.0.0.1"),
])  # fmt: skip
def test_ip_behind_trusted_proxies(
    env: dict[str, str], hops: str, forwarded: str, expected: str
) -> None:
    from qrlogin import create_app

    env["QRLOGIN_TRUSTED_PROXIES"] = hops
    app = create_app(env)
    qr = app.test_client().post(
        "/v1/accounts/qrcode/",
        json={"platform": "web"},
        headers={"X-Forwarded-For": forwarded, "X-Forwarded-Proto": "https"},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )
    if hops != "0":
        assert "Secure" in qr.headers["Set-Cookie"]  # served over HTTPS behind the router
    scan = fill(app.test_client(), user_token(), qr.json["data"]["id"], "SCAN")
    assert scan.json["data"]["client"]["ip"] == expected


def test_configured_settings_show_in_answers(env: dict[str, str]) -> None:
    from qrlogin import create_app

    env.update(QRLOGIN_QR_TTL="60", QRLOGIN_PREFIX="myapp://login/", QRLOGIN_POLL_INTERVAL="3",
               QRLOGIN_PLATFORMS="Rxx_PC,web")  # fmt: skip
    client = create_app(env).test_client()
    data = create_qr(client, platform="web")
    assert data["expires_in"] == 60 and data["interval"] == 3 and data["prefix"] == "myapp://login/"
    assert json.loads(decode_png(data["png"]))["prefix"] == "myapp://login/"
    refused = client.post("/v1/accounts/qrcode/", json={"platform": "other"})
    assert refused.status_code == 400 and refused.json["code"] == "BAD_REQUEST"


def test_ops_endpoints(client: FlaskClient) -> None:
    assert client.get("/healthz").json["code"] == "OK"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["data"]["status"] == "ready"


def test_every_qr_decodes_to_its_content(client: FlaskClient) -> None:
    """A fixed mask must not cost readability: decode a few hundred QRs, each exactly."""
    for _ in range(200):
        data = create_qr(client, platform="Rxx_PC")
        assert decode_png(data["png"]) == data["content"]
