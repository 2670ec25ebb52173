"""Expiry with a short configured lifetime: the Redis clock decides."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from qrlogin import create_app
from qrlogin.config import RETENTION_S
from qrlogin.keys import Keys
from tests.conftest import create_qr, fill, guest, svc
from tests.live import user_token

pytestmark = pytest.mark.slow


@pytest.fixture
def short_app(env: dict[str, str]) -> Flask:
    env["QRLOGIN_QR_TTL"] = "1"
    app = create_app(env)
    svc(app).redis.flushdb()
    return app


def wait_past(expire: int) -> None:
    time.sleep(max(0.0, expire - time.time()) + 0.05)


def test_guest_reports_expire_and_scan_gets_410(short_app: Flask) -> None:
    client: FlaskClient = short_app.test_client()
    qr = create_qr(client)
    assert qr["expires_in"] == 1
    wait_past(qr["expire"])
    data = guest(client, qr["id"]).json["data"]
    assert data["status"] == "QRCODE_EXPIRE"
    scan = fill(client, user_token(), qr["id"], "SCAN")
    assert scan.status_code == 410 and scan.json["code"] == "QRCODE_EXPIRE"


def test_scanned_then_expired_cannot_be_verified_or_redeemed(short_app: Flask) -> None:
    client = short_app.test_client()
    qr = create_qr(client)
    token = user_token()
    assert fill(client, token, qr["id"], "SCAN").status_code == 200
    wait_past(qr["expire"])
    assert fill(client, token, qr["id"], "VERIFY").status_code == 410
    assert fill(client, token, qr["id"], "CANCEL").status_code == 410
    assert guest(client, qr["id"]).json["data"]["status"] == "QRCODE_EXPIRE"


def test_confirmed_but_not_redeemed_in_time_expires(short_app: Flask) -> None:
    client = short_app.test_client()
    qr = create_qr(client)
    token = user_token()
    fill(client, token, qr["id"], "SCAN")
    fill(client, token, qr["id"], "VERIFY")
    wait_past(qr["expire"])
    data = guest(client, qr["id"]).json["data"]
    assert data["status"] == "QRCODE_EXPIRE" and "token" not in data


def test_expired_record_is_kept_at_least_ten_minutes(short_app: Flask) -> None:
    client = short_app.test_client()
    qr = create_qr(client)
    ttl = svc(short_app).redis.ttl(Keys.qr(qr["id"]))
    assert 1 + RETENTION_S - 2 <= ttl <= 1 + RETENTION_S
    assert RETENTION_S >= 600
