"""/metrics under gunicorn with two workers: transitions, waiting browsers, delivery latency."""

from __future__ import annotations

import pytest
import requests

from servers.service import Service
from tests.conftest import StartService
from tests.live import PROMPT_S, Browser, margin, phone_step, sample, user_token, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def service(start_service: StartService) -> Service:
    return start_service(workers=2, QRLOGIN_RATE_LIMITS="off")


def metrics_text(service: Service) -> str:
    return requests.get(service.url + "/metrics", timeout=margin(30)).text


def test_metrics_follow_a_login(service: Service) -> None:
    browser = Browser(service.url)
    qr = browser.create()
    stream = browser.stream(qr["id"])
    events = stream.events()
    assert next(events).json["status"] == "QRCODE_WAIT"
    metrics = requests.get(service.url + "/metrics", timeout=margin(30))
    # Exactly the media type Prometheus expects: one charset parameter, not two.
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"] == "text/plain; version=1.0.0; charset=utf-8"
    assert sample(metrics.text, "qrlogin_waiting_browsers") == 1.0

    token = user_token()
    phone_step(service.url, token, qr["id"], "SCAN")
    assert next(events).json["status"] == "QRCODE_SCANNED"
    phone_step(service.url, token, qr["id"], "VERIFY")
    assert next(events).json["status"] == "QRCODE_SUCCESS"
    assert "token" in browser.guest(qr["id"]).json()["data"]
    stream.close()
    wait_until(
        lambda: sample(metrics_text(service), "qrlogin_waiting_browsers") == 0.0,
        10,
        "the closed stream leaves the gauge",
    )

    text = metrics_text(service)
    for event in ("created", "scanned", "verified", "redeemed"):
        assert sample(text, "qrlogin_qr_transitions_total", f'{{event="{event}"}}') == 1.0
    assert sample(text, "qrlogin_waiting_browsers") == 0.0
    # Events that came through pub/sub are timed (one that raced the subscription is read
    # from the store instead, and has no publish time).
    assert 1.0 <= sample(text, "qrlogin_event_delivery_seconds_count") <= 2.0
    assert sample(text, "qrlogin_event_delivery_seconds_sum") < 2 * margin(PROMPT_S)
    assert "qrlogin_redis_errors_total" in text
