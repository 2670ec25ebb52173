"""The audit trail: every transition in its QR's stream, and the command that prints it."""

from __future__ import annotations

import time

import redis.crc
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from qrlogin import create_app
from qrlogin.keys import Keys
from tests.conftest import create_qr, fill, guest, svc
from tests.live import user_token

PHONE = {"User-Agent": "QRLoginApp/2.1 (iPhone)"}


def test_every_transition_is_recorded(app: Flask, client: FlaskClient) -> None:
    token = user_token()
    qr_id = create_qr(client)["id"]
    phone = app.test_client()
    phone.post(
        "/v1/accounts/qrcode_fill", json={"id": qr_id, "step": "SCAN"},
        headers={"Authorization": f"Bearer {token}", **PHONE},
        environ_base={"REMOTE_ADDR": "198.51.100.9"},
    )  # fmt: skip
    fill(client, token, qr_id, "VERIFY")
    guest(client, qr_id)
    replaced = create_qr(client)["id"]
    create_qr(client, code=replaced)
    cancelled = create_qr(client)["id"]
    fill(client, token, cancelled, "SCAN")
    fill(client, token, cancelled, "CANCEL")

    trail = svc(app).store.audit_trail(qr_id)
    assert [e["event"] for e in trail] == ["created", "scanned", "verified", "redeemed"]
    assert [int(e["version"]) for e in trail] == [1, 2, 3, 4]
    scanned = trail[1]
    assert scanned["ip"] == "198.51.100.9" and scanned["user_agent"] == PHONE["User-Agent"]
    assert scanned["user"] == "u-alice" and scanned["status"] == "QRCODE_SCANNED"
    assert abs(int(scanned["at"]) / 1000 - time.time()) < 5
    assert [e["event"] for e in svc(app).store.audit_trail(replaced)] == ["created", "replaced"]
    assert [e["event"] for e in svc(app).store.audit_trail(cancelled)][-1] == "cancelled"
    for entry in svc(app).store.audit_trail(count=1000):
        assert not any("token" in value.lower() for value in entry.values() if value)


def test_expiry_and_failed_verification_are_recorded(env: dict[str, str]) -> None:
    env.update(QRLOGIN_QR_TTL="1", QRLOGIN_NUMBER_MATCHING="1")
    app = create_app(env)
    svc(app).redis.flushdb()
    client = app.test_client()
    token = user_token()
    expiring = create_qr(client)
    wrong = create_qr(client)["id"]
    fill(client, token, wrong, "SCAN")
    shown = guest(client, wrong).json["data"]["verify_code"]
    fill(client, token, wrong, "VERIFY", verify_code=f"{(int(shown) + 1) % 100:02d}")
    time.sleep(max(0.0, expiring["expire"] - time.time()) + 0.05)
    guest(client, expiring["id"])
    events = [e["event"] for e in svc(app).store.audit_trail(expiring["id"])]
    assert events == ["created", "expired"]
    assert [e["event"] for e in svc(app).store.audit_trail(wrong)][-1] == "verify_failed"


def test_audit_trail_lives_as_long_as_its_qr(app: Flask, client: FlaskClient) -> None:
    """Each QR's trail is its own key, on its slot, and expires with the QR's record:
    nothing grows without bound, and nothing outlives the QR it tells of."""
    qr_id = create_qr(client)["id"]
    r = svc(app).redis
    assert r.type(Keys.audit(qr_id)) == "stream"
    qr_ttl, audit_ttl = r.ttl(Keys.qr(qr_id)), r.ttl(Keys.audit(qr_id))
    assert qr_ttl > 0 and abs(qr_ttl - audit_ttl) <= 1
    assert redis.crc.key_slot(Keys.audit(qr_id).encode()) == redis.crc.key_slot(
        Keys.qr(qr_id).encode()
    )


def test_audit_command_prints_the_trail(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner
) -> None:
    qr_id = create_qr(client)["id"]
    fill(client, user_token(), qr_id, "SCAN")
    result = runner.invoke(args=["audit", "--qr", qr_id])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    assert "created" in lines[0] and "scanned" in lines[1] and "user=u-alice" in lines[1]
