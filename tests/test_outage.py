"""Redis going away: 503 in the envelope, and recovery without restarting the app."""

from __future__ import annotations

import time

import pytest

from qrlogin import create_app
from qrlogin.testing import RedisServer
from tests.conftest import SECRET, create_qr, fill, guest, user_token
from tests.timing import margin

pytestmark = pytest.mark.slow


def test_redis_down_gives_503_and_recovers(own_redis: RedisServer) -> None:
    app = create_app({"SECRET_KEY": SECRET, "REDIS_URL": own_redis.url})
    client = app.test_client()
    qr_id = create_qr(client)["id"]
    token = user_token(app)

    own_redis.stop()
    started = time.monotonic()
    for response in (
        client.post("/v1/accounts/qrcode/", json={"platform": "web"}),
        fill(client, token, qr_id, "SCAN"),
        guest(client, qr_id),
        client.get("/readyz"),
    ):
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.json["code"] == "UNAVAILABLE"
        assert response.headers["Cache-Control"] == "no-store"
    assert time.monotonic() - started < margin(10)  # quick answers, not hangs
    assert client.get("/healthz").status_code == 200  # the process is alive

    own_redis.start()
    assert client.get("/readyz").status_code == 200
    fresh = create_qr(client)["id"]
    assert fill(client, token, fresh, "SCAN").status_code == 200
    assert guest(client, fresh).json["data"]["status"] == "QRCODE_SCANNED"
