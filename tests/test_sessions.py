"""Sessions: every login can be seen, ended, and is refused everywhere once ended."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from qrlogin import create_app
from tests.conftest import bearer, create_qr, fill, guest, svc
from tests.live import user_token

SERVICE_KEY = "introspect-key-0123456789abcdef"
CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "QRLOGIN_INTROSPECT_KEY": SERVICE_KEY}


def log_in(app: Flask, user: str = "u-alice", name: str = "Alice", **headers: str) -> str:
    """A full login from a new browser; its login token (the browser keeps the cookie)."""
    browser = app.test_client()
    qr_id = browser.post("/v1/accounts/qrcode/", json={"platform": "Rxx_PC"}, headers=headers).json[
        "data"
    ]["id"]
    token = user_token(user, name)
    fill(app.test_client(), token, qr_id, "SCAN")
    fill(app.test_client(), token, qr_id, "VERIFY")
    data = browser.post("/v1/passport/guest", json={"code": qr_id}, headers=headers).json["data"]
    return str(data["token"])


def introspect(app: Flask, token: str, form: bool = False) -> dict[str, Any]:
    client = app.test_client()
    if form:
        answer = client.post("/v1/passport/introspect", data={"token": token},
                             headers=bearer(SERVICE_KEY))  # fmt: skip
    else:
        answer = client.post("/v1/passport/introspect", json={"token": token},
                             headers=bearer(SERVICE_KEY))  # fmt: skip
    assert answer.status_code == 200, answer.json
    data: dict[str, Any] = answer.json["data"]
    return data


def test_a_login_opens_a_session_that_introspection_sees(app: Flask) -> None:
    token = log_in(app)
    me = app.test_client().get("/v1/passport/me", headers=bearer(token)).json["data"]
    session = me["session"]
    assert session["status"] == "active" and session["user"]["id"] == "u-alice"
    for form in (False, True):
        answer = introspect(app, token, form=form)
        assert answer["active"] is True and answer["sub"] == "u-alice"
        assert answer["sid"] == session["id"] and answer["exp"] >= int(time.time())


def test_logout_ends_the_session_everywhere_and_is_safe_to_repeat(app: Flask) -> None:
    token = log_in(app)
    client = app.test_client()
    first = client.post("/v1/passport/logout", headers=bearer(token))
    assert first.status_code == 200
    assert first.json["data"]["session"]["status"] == "ended"
    assert first.json["data"]["session"]["reason"] == "logout"
    assert "qrlogin_session=;" in first.headers["Set-Cookie"]  # the cookie is cleared
    me = client.get("/v1/passport/me", headers=bearer(token))
    assert me.status_code == 401 and me.json["code"] == "SESSION_ENDED"
    assert introspect(app, token) == {"active": False}
    again = client.post("/v1/passport/logout", headers=bearer(token))
    assert again.status_code == 200 and again.json["data"]["session"]["reason"] == "logout"


def test_logout_with_the_session_cookie(app: Flask) -> None:
    browser = app.test_client()
    qr_id = create_qr(browser)["id"]
    token = user_token()
    fill(app.test_client(), token, qr_id, "SCAN")
    fill(app.test_client(), token, qr_id, "VERIFY")
    assert "token" in guest(browser, qr_id).json["data"]
    assert browser.get("/v1/passport/me").status_code == 200  # the cookie
    assert browser.post("/v1/passport/logout").status_code == 200
    assert browser.get_cookie("qrlogin_session") is None
    assert browser.get("/app").status_code == 401


@pytest.mark.parametrize(
    ("setting", "reason"),
    [("QRLOGIN_SESSION_IDLE", "idle"), ("QRLOGIN_SESSION_MAX_AGE", "expired")],
)
def test_a_session_past_its_deadline_is_inactive(
    env: dict[str, str], setting: str, reason: str
) -> None:
    app = create_app({**env, setting: "1"})
    token = log_in(app)
    time.sleep(2.1)  # a whole second past a 1-second deadline (whole seconds in Redis)
    assert introspect(app, token) == {"active": False}
    me = app.test_client().get("/v1/passport/me", headers=bearer(token))
    assert me.status_code == 401 and me.json["data"] == {"reason": reason}


def test_use_keeps_a_session_from_going_idle(env: dict[str, str]) -> None:
    app = create_app({**env, "QRLOGIN_SESSION_IDLE": "3"})
    token = log_in(app)
    for _ in range(4):  # 4 s in all, past the idle time, but never 3 s without a use
        time.sleep(1.0)
        assert introspect(app, token)["active"] is True


def test_the_phone_lists_sessions_with_their_context(env: dict[str, str]) -> None:
    app = create_app({**env, "QRLOGIN_TRUSTED_PROXIES": "1"})
    svc(app).redis.flushdb()
    token = log_in(app, **{"X-Forwarded-For": "195.201.0.1", "User-Agent": CHROME_WIN})
    other = log_in(app)
    phone = app.test_client()
    listed = phone.get("/v1/accounts/sessions", headers=bearer(user_token())).json["data"]
    sessions = listed["sessions"]
    assert len(sessions) == 2
    assert sessions[0]["created_at"] >= sessions[1]["created_at"]  # newest first
    (oldest,) = (s for s in sessions if s["ip"] == "195.201.0.1")
    assert oldest["location"] == {"country": "DE", "country_name": "Germany", "city": None}
    assert oldest["browser"] == "Chrome 131" and oldest["os"] == "Windows 10"
    assert oldest["platform"] == "Rxx_PC" and oldest["qr_id"]
    assert oldest["created_at"] <= oldest["last_seen_at"] <= oldest["expire"]
    assert {s["id"] for s in sessions} == {
        introspect(app, token)["sid"],
        introspect(app, other)["sid"],
    }


def test_another_user_can_neither_see_nor_end_a_session(app: Flask) -> None:
    token = log_in(app)
    sid = introspect(app, token)["sid"]
    mallory = bearer(user_token("u-mallory", "Mallory"))
    phone = app.test_client()
    assert phone.get("/v1/accounts/sessions", headers=mallory).json["data"]["sessions"] == []
    for target in (sid, "A" * 22, "not a session id!"):
        answer = phone.delete(f"/v1/accounts/sessions/{target}", headers=mallory)
        assert answer.status_code == 404 and answer.json["code"] == "SESSION_NOT_FOUND"
    assert introspect(app, token)["active"] is True


def test_the_phone_ends_one_session_or_all(app: Flask) -> None:
    tokens = [log_in(app) for _ in range(3)]
    alice = bearer(user_token())
    phone = app.test_client()
    sid = introspect(app, tokens[0])["sid"]
    ended = phone.delete(f"/v1/accounts/sessions/{sid}", headers=alice).json["data"]["session"]
    assert ended["status"] == "ended" and ended["reason"] == "revoked"
    assert introspect(app, tokens[0]) == {"active": False}
    assert introspect(app, tokens[1])["active"] is True
    everything = phone.post("/v1/accounts/sessions/end_all", headers=alice).json["data"]
    assert everything["ended"] == 2
    assert [introspect(app, t) for t in tokens] == [{"active": False}] * 3
    assert phone.get("/v1/accounts/sessions", headers=alice).json["data"]["sessions"] == []


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong-key-0123456789abcdefgh"), bearer("")],
    ids=["none", "wrong key", "empty"],
)
def test_introspection_needs_the_service_credential(app: Flask, headers: dict[str, str]) -> None:
    token = log_in(app)
    answer = app.test_client().post(
        "/v1/passport/introspect", json={"token": token}, headers=headers
    )
    assert answer.status_code == 401 and answer.json["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize(
    "body", [{}, {"token": 5}, {"token": "garbage"}, {"token": "x" * 5000}],
    ids=["no token", "number", "garbage", "huge"],
)  # fmt: skip
def test_introspection_of_bad_tokens(app: Flask, body: dict[str, Any]) -> None:
    answer = app.test_client().post(
        "/v1/passport/introspect", json=body, headers=bearer(SERVICE_KEY)
    )
    if "token" in body and isinstance(body["token"], str) and len(body["token"]) <= 4096:
        assert answer.status_code == 200 and answer.json["data"] == {"active": False}
    else:
        assert answer.status_code == 400 and answer.json["code"] == "BAD_REQUEST"


def test_introspection_is_off_without_a_key(env: dict[str, str]) -> None:
    app = create_app({k: v for k, v in env.items() if k != "QRLOGIN_INTROSPECT_KEY"})
    answer = app.test_client().post(
        "/v1/passport/introspect", json={"token": "x"}, headers=bearer(SERVICE_KEY)
    )
    assert answer.status_code == 401 and "QRLOGIN_INTROSPECT_KEY" in answer.json["msg"]


def test_a_token_from_before_sessions_is_refused(app: Flask, client: FlaskClient) -> None:
    from itsdangerous import URLSafeTimedSerializer

    from tests.live import SECRET

    old = URLSafeTimedSerializer(SECRET, salt="qrlogin.login").dumps(
        {"sub": "u", "name": "U", "avatar": None, "qr": "q" * 22, "platform": "web"}
    )
    answer = client.get("/v1/passport/me", headers=bearer(str(old)))
    assert answer.status_code == 401 and answer.json["code"] == "SESSION_ENDED"
