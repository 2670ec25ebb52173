"""Abuse limits: every 429 is SLOW_DOWN in the envelope with Retry-After."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from qrlogin import create_app
from tests.conftest import fill, guest, svc
from tests.live import user_token


def limited_app(env: dict[str, str], **settings: str) -> Flask:
    env.update(QRLOGIN_RATE_LIMITS="on", **settings)
    app = create_app(env)
    svc(app).redis.flushdb()
    return app


def assert_slow_down(response: Any) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.json["code"] == "SLOW_DOWN" and response.json["msg"]
    assert set(response.json) == {"code", "msg", "data"}
    assert int(response.headers["Retry-After"]) >= 1


def create(client: Any, ip: str = "192.0.2.1", **body: Any) -> Any:
    return client.post(
        "/v1/accounts/qrcode/",
        json={"platform": "web", **body},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_qr_creation_per_ip(env: dict[str, str]) -> None:
    app = limited_app(env, QRLOGIN_LIMIT_CREATE="3 per minute")
    for _ in range(3):
        assert create(app.test_client()).status_code == 201
    assert_slow_down(create(app.test_client()))
    assert create(app.test_client(), ip="192.0.2.2").status_code == 201


def test_mobile_steps_per_user(env: dict[str, str]) -> None:
    app = limited_app(env, QRLOGIN_LIMIT_STEPS="2 per minute")
    browser = app.test_client()
    alice, bob = user_token("u-alice"), user_token("u-bob")
    qr_ids = [create(browser).json["data"]["id"] for _ in range(3)]
    assert fill(browser, alice, qr_ids[0], "SCAN").status_code == 200
    assert fill(browser, alice, qr_ids[0], "VERIFY").status_code == 200
    assert_slow_down(fill(browser, alice, qr_ids[1], "SCAN"))
    assert fill(browser, bob, qr_ids[2], "SCAN").status_code == 200


def test_fast_polling_of_one_qr(env: dict[str, str]) -> None:
    app = limited_app(env, QRLOGIN_LIMIT_POLL="3 per 10 seconds")
    browser = app.test_client()
    first, second = (create(browser).json["data"]["id"] for _ in range(2))
    for _ in range(3):
        assert guest(browser, first).status_code == 200
    assert_slow_down(guest(browser, first))
    assert guest(browser, second).status_code == 200


def test_a_stranger_cannot_spend_the_owners_poll_budget(env: dict[str, str]) -> None:
    app = limited_app(env, QRLOGIN_LIMIT_POLL="3 per 10 seconds")
    owner = app.test_client()
    qr_id = create(owner).json["data"]["id"]
    stranger = app.test_client()  # has seen the QR, polls it from elsewhere
    create(stranger, ip="198.51.100.9")  # with a binding of its own
    for _ in range(10):
        assert guest(stranger, qr_id).status_code == 403
    for _ in range(3):
        assert guest(owner, qr_id).status_code == 200


def test_refused_polls_are_limited_per_ip_and_write_bounded_keys(env: dict[str, str]) -> None:
    app = limited_app(env, QRLOGIN_LIMIT_REFUSED="5 per minute")
    prober = app.test_client()
    for n in range(5):
        assert guest(prober, f"{n:032d}").status_code == 404
    for n in range(5, 40):
        assert_slow_down(guest(prober, f"{n:032d}"))
    # Only the per-IP count of refusals was written, not a key per random id.
    written = svc(app).redis.keys("qrlogin:limits*")
    assert len(written) <= 2, written
    # A browser at another address is not affected.
    owner = app.test_client()
    qr_id = create(owner, ip="192.0.2.77").json["data"]["id"]
    answer = owner.post(
        "/v1/passport/guest", json={"code": qr_id}, environ_base={"REMOTE_ADDR": "192.0.2.77"}
    )
    assert answer.status_code == 200


def test_live_qrs_per_browser(env: dict[str, str]) -> None:
    app = limited_app(env, QRLOGIN_MAX_LIVE_QRS="3")
    browser = app.test_client()
    ids = [create(browser).json["data"]["id"] for _ in range(3)]
    refused = create(browser)
    assert_slow_down(refused)
    assert 100 <= int(refused.headers["Retry-After"]) <= 120  # until the oldest expires
    # Regenerating replaces a live QR, so it stays within the cap.
    assert create(browser, code=ids[0]).status_code == 201
    # Another browser has its own cap.
    assert create(app.test_client()).status_code == 201


@pytest.mark.parametrize(
    "setting", ["QRLOGIN_LIMIT_CREATE", "QRLOGIN_LIMIT_STEPS", "QRLOGIN_LIMIT_POLL"]
)
def test_limits_are_validated(env: dict[str, str], setting: str) -> None:
    from qrlogin.exceptions import ConfigError

    env[setting] = "lots"
    with pytest.raises(ConfigError, match=setting):
        create_app(env)


def test_limits_off_turns_every_limit_off(env: dict[str, str]) -> None:
    env.update(
        QRLOGIN_RATE_LIMITS="off", QRLOGIN_LIMIT_CREATE="1 per minute", QRLOGIN_MAX_LIVE_QRS="1"
    )
    app = create_app(env)
    browser = app.test_client()
    for _ in range(5):
        assert create(browser).status_code == 201
    # Nor do the views pass through the limiter's wrappers, which work even when off.
    for name in ("accounts.create_qrcode", "accounts.qrcode_fill", "passport.guest"):
        assert not hasattr(app.view_functions[name], "__wrapper-limiter-instance"), name
    on = limited_app(env)
    assert hasattr(on.view_functions["passport.guest"], "__wrapper-limiter-instance")


def test_defaults_leave_a_busy_login_page_alone(env: dict[str, str]) -> None:
    app = limited_app(env)
    browser = app.test_client()
    token = user_token()
    previous = ""
    for _ in range(15):  # half an hour of a page refreshing its QR every 2 minutes
        response = create(browser, **({"code": previous} if previous else {}))
        assert response.status_code == 201
        previous = response.json["data"]["id"]
    for _ in range(5):  # polling once a second
        assert guest(browser, previous).status_code == 200
    assert fill(browser, token, previous, "SCAN").status_code == 200
    assert fill(browser, token, previous, "VERIFY").status_code == 200
    assert "token" in guest(browser, previous).json["data"]
