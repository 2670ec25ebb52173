"""/metrics under gunicorn with two workers: transitions, waiting browsers, delivery latency."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import redis
import requests

from tests.conftest import SECRET
from tests.live import Browser, Service, phone_step
from tests.test_stream import user_token

pytestmark = pytest.mark.slow


def sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def service(redis_url: str) -> Iterator[Service]:
    redis.Redis.from_url(redis_url).flushdb()
    started = Service(
        {"SECRET_KEY": SECRET, "REDIS_URL": redis_url, "QRLOGIN_RATE_LIMITS": "off"}, workers=2
    ).start()
    yield started
    started.stop()


def test_metrics_follow_a_login(service: Service) -> None:
    browser = Browser(service.url)
    qr = browser.create()
    stream = browser.stream(qr["id"])
    events = stream.events()
    assert next(events).json["status"] == "QRCODE_WAIT"
    metrics = requests.get(service.url + "/metrics", timeout=5)
    assert metrics.status_code == 200 and metrics.headers["Content-Type"].startswith("text/plain")
    assert sample(metrics.text, "qrlogin_waiting_browsers") == 1.0

    token = user_token()
    phone_step(service.url, token, qr["id"], "SCAN")
    assert next(events).json["status"] == "QRCODE_SCANNED"
    phone_step(service.url, token, qr["id"], "VERIFY")
    assert next(events).json["status"] == "QRCODE_SUCCESS"
    assert "token" in browser.guest(qr["id"]).json()["data"]
    stream.close()
    time.sleep(0.3)

    text = requests.get(service.url + "/metrics", timeout=5).text
    for event in ("created", "scanned", "verified", "redeemed"):
        assert sample(text, "qrlogin_qr_transitions_total", f'{{event="{event}"}}') == 1.0
    assert sample(text, "qrlogin_waiting_browsers") == 0.0
    # Events that came through pub/sub are timed (one that raced the subscription is read
    # from the store instead, and has no publish time).
    assert 1.0 <= sample(text, "qrlogin_event_delivery_seconds_count") <= 2.0
    assert sample(text, "qrlogin_event_delivery_seconds_sum") < 1.0
    assert "qrlogin_redis_errors_total" in text
