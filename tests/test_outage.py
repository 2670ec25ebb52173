"""Redis going away: 503 in the envelope, and recovery without restarting the app."""

from __future__ import annotations

import time

import pytest
import redis

from qrlogin import create_app
from servers.redis_server import RedisServer
from tests.conftest import create_qr, fill, guest
from tests.live import SECRET, margin, user_token

pytestmark = pytest.mark.slow


def test_redis_down_gives_503_and_recovers(own_redis: RedisServer) -> None:
    app = create_app({"SECRET_KEY": SECRET, "REDIS_URL": own_redis.url})
    client = app.test_client()
    qr_id = create_qr(client)["id"]
    token = user_token()

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


def test_redis_full_gives_503_and_writes_nothing(own_redis: RedisServer) -> None:
    """maxmemory with noeviction: 503 with Retry-After, no QR half-made, and back to
    normal once there is room again."""
    app = create_app(
        {"SECRET_KEY": SECRET, "REDIS_URL": own_redis.url, "QRLOGIN_RATE_LIMITS": "off"}
    )
    client = app.test_client()
    qr_id = create_qr(client)["id"]
    token = user_token()
    admin = redis.Redis.from_url(own_redis.url)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")  # any use at all is over the limit
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        admin.set("one-more", "x")
    keys_before = admin.dbsize()
    for response in (
        client.post("/v1/accounts/qrcode/", json={"platform": "web"}),
        fill(client, token, qr_id, "SCAN"),
        guest(client, qr_id),  # reading may write too (an overdue QR expires)
    ):
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.json["code"] == "UNAVAILABLE"
        assert int(response.headers["Retry-After"]) >= 1
    assert admin.dbsize() == keys_before  # nothing was written

    admin.config_set("maxmemory", "0")
    assert fill(client, token, qr_id, "SCAN").status_code == 200
    assert create_qr(client)["id"]
