"""Admission control's mechanism in-process: the lag average and the refusal it causes,
with no timing (the lag is set, as the timer would set it)."""

from __future__ import annotations

import pytest
from flask import Flask

from qrlogin import create_app
from qrlogin.admission import ENVIRON_KEY, WEIGHT, Admission, Lag
from tests.live import SECRET


def over(lag: Lag) -> bool:
    """Read afresh each time (mypy would keep a property's first reading)."""
    return lag.over


def test_the_lag_is_a_moving_average_that_crosses_the_bound_and_comes_back() -> None:
    lag = Lag(0.025)
    lag.observe(0.019)  # one full collection's pause: not an overload
    assert not over(lag)
    lag.observe(2.0)  # nor one long stall (an RSA key made once)
    assert not over(lag)
    for _ in range(30):
        lag.observe(0.050)  # the loop runs 50 ms late, turn after turn
    assert over(lag) and lag.average_s > 0.025
    for _ in range(30):
        lag.observe(0.0)
    assert not over(lag)
    assert not over(Lag(0.0))  # 0 turns it off
    lag.observe(-1.0)  # early (a coarse clock) counts as on time
    assert lag.average_s >= 0.0 and WEIGHT < 1


@pytest.fixture
def app(redis_url: str) -> Flask:
    return create_app({"SECRET_KEY": SECRET, "REDIS_URL": redis_url, "QRLOGIN_RATE_LIMITS": "off"})


def test_a_late_loop_refuses_new_logins_but_never_their_steps_streams_or_probes(
    app: Flask,
) -> None:
    admission: Admission = app.extensions[ENVIRON_KEY]
    client = app.test_client()
    created = client.post("/v1/accounts/qrcode/", json={"platform": "web"})
    assert created.status_code == 201
    admission.lag.average_s = 1.0  # as the timer finds a loop a second late
    refused = client.post(
        "/v1/accounts/qrcode/", json={"platform": "web"}, headers={"X-Request-Id": "r-1"}
    )
    assert refused.status_code == 503 and refused.json == {
        "code": "OVERLOADED",
        "data": None,
        "msg": "the service is busy: try again after Retry-After",
    }
    assert refused.headers["Retry-After"] == "1" and refused.headers["X-Request-Id"] == "r-1"
    assert client.get("/healthz").status_code == 200
    polled = client.post("/v1/passport/guest", json={"code": created.json["data"]["id"]})
    assert polled.status_code == 200  # a login under way goes on
    stream = client.get(f"/v1/accounts/qrcode/{created.json['data']['id']}/events")
    assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
    stream.close()
    admission.lag.average_s = 0.0
    assert client.post("/v1/accounts/qrcode/", json={"platform": "web"}).status_code == 201
    assert admission.inflight == 0


def test_new_logins_get_a_quarter_of_the_room_and_the_steps_of_those_let_in_the_rest(
    redis_url: str,
) -> None:
    app = create_app({"SECRET_KEY": SECRET, "REDIS_URL": redis_url, "QRLOGIN_RATE_LIMITS": "off",
                      "QRLOGIN_MAX_INFLIGHT": "8"})  # fmt: skip
    admission: Admission = app.extensions[ENVIRON_KEY]
    client = app.test_client()
    qr_id = client.post("/v1/accounts/qrcode/", json={"platform": "web"}).json["data"]["id"]
    admission.inflight = 2  # two requests in progress of eight: a quarter
    refused = client.post("/v1/accounts/qrcode/", json={"platform": "web"})
    assert refused.status_code == 503 and refused.json["code"] == "OVERLOADED"
    assert client.post("/v1/passport/guest", json={"code": qr_id}).status_code == 200
    admission.inflight = 8  # and at the whole bound, every request is refused
    polled = client.post("/v1/passport/guest", json={"code": qr_id})
    assert polled.status_code == 503 and polled.json["code"] == "OVERLOADED"
    admission.inflight = 1
    assert client.post("/v1/accounts/qrcode/", json={"platform": "web"}).status_code == 201
    assert admission.inflight == 1
