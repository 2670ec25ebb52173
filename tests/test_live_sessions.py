"""Sessions through a real gunicorn: the session's stream ends the moment the phone ends
it, the phone hears of new logins (a real SSE client library), Redis restarts."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import requests
from httpx_sse import connect_sse

from servers.redis_server import RedisServer
from servers.service import Service
from tests.conftest import StartService
from tests.live import (
    PROMPT_S,
    Browser,
    SSEStream,
    end_session_on_phone,
    log_in,
    margin,
    session_events,
    user_token,
    wait_until,
)

pytestmark = pytest.mark.slow
SERVICE_KEY = "introspect-key-0123456789abcdef"


def introspect(service: Service, browser: Browser) -> dict[str, Any]:
    token = browser.session.cookies["qrlogin_session"]
    answer = requests.post(
        service.url + "/v1/passport/introspect",
        data={"token": token},
        headers={"Authorization": f"Bearer {SERVICE_KEY}"},
        timeout=margin(30),
    )
    data: dict[str, Any] = answer.json()["data"]
    return data


def test_the_session_stream_ends_when_the_phone_ends_the_session(
    start_service: StartService,
) -> None:
    service = start_service(QRLOGIN_INTROSPECT_KEY=SERVICE_KEY)
    browser = log_in(service)
    sid = introspect(service, browser)["sid"]
    stream = SSEStream(session_events(browser))
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    blocks = iter(stream)
    opening = next(blocks)
    assert opening.event == "session" and opening.retry == 3000 and opening.id == "1"
    assert opening.json["status"] == "active" and opening.json["id"] == sid

    sent = time.monotonic()
    assert end_session_on_phone(service.url, user_token(), sid).status_code == 200
    ended = next(e for e in blocks if e.event == "session")
    assert time.monotonic() - sent < margin(PROMPT_S)
    assert ended.json["status"] == "ended" and ended.json["reason"] == "revoked"
    assert list(stream) == []  # the server closed the stream
    assert session_events(browser).status_code == 204  # and stops EventSource coming back
    me = browser.session.get(service.url + "/v1/passport/me", timeout=margin(30))
    assert me.status_code == 401 and me.json()["code"] == "SESSION_ENDED"


def test_an_idle_session_ends_on_its_stream_by_itself(start_service: StartService) -> None:
    """Nobody ends it: at its idle deadline the stream reads the session again, which
    ends it there and then; the heartbeat keeps flowing while it waits."""
    service = start_service(QRLOGIN_SESSION_IDLE="2", QRLOGIN_SSE_HEARTBEAT="1")
    browser = log_in(service)
    stream = SSEStream(session_events(browser))
    blocks = list(stream)  # until the server closes it
    assert any(b.comments == ["ping"] for b in blocks)
    events = [b for b in blocks if b.event == "session"]
    assert [e.json["status"] for e in events] == ["active", "ended"]
    assert events[-1].json["reason"] == "idle" and events[-1].id == "2"


def test_the_phone_hears_of_each_new_login_and_each_end(start_service: StartService) -> None:
    service = start_service(QRLOGIN_INTROSPECT_KEY=SERVICE_KEY)
    heard: list[tuple[str, dict[str, Any], str]] = []
    opened = threading.Event()

    def listen() -> None:
        headers = {"Authorization": f"Bearer {user_token()}"}
        timeout = httpx.Timeout(margin(30), read=margin(60))
        with (
            httpx.Client(timeout=timeout) as client,
            connect_sse(
                client, "GET", service.url + "/v1/accounts/events", headers=headers
            ) as source,
        ):
            assert source.response.status_code == 200
            events = source.iter_sse()
            ready = next(events)  # the opening event: the stream is live
            assert ready.event == "ready" and not ready.id, ready
            assert json.loads(ready.data)["user_id"] == "u-alice"
            opened.set()
            for event in events:
                if not event.data:
                    continue  # the opening `retry:` (EventSource dispatches no event for it)
                heard.append((event.event, json.loads(event.data), event.id))
                if len(heard) == 2:
                    return

    listener = threading.Thread(target=listen)
    listener.start()
    assert opened.wait(margin(30))
    browser = log_in(service)
    wait_until(lambda: len(heard) == 1, 10, "the new-login notice arrives")
    kind, session, first_id = heard[0]
    assert kind == "session_created" and session["status"] == "active"
    assert session["user"]["id"] == "u-alice" and session["ip"] == "127.0.0.1"
    browser.session.post(service.url + "/v1/passport/logout", timeout=margin(30))
    listener.join(margin(30))
    assert [h[0] for h in heard] == ["session_created", "session_ended"]
    assert heard[1][1]["reason"] == "logout" and heard[1][1]["id"] == session["id"]

    # A phone that reconnects with the last id it saw gets what it missed.
    with httpx.Client(timeout=margin(30)) as client, connect_sse(
        client, "GET", service.url + "/v1/accounts/events",
        headers={"Authorization": f"Bearer {user_token()}", "Last-Event-ID": first_id},
    ) as source:  # fmt: skip
        dispatched = (e for e in source.iter_sse() if e.data)
        ready, missed = next(dispatched), next(dispatched)
    assert ready.event == "ready" and json.loads(ready.data)["after"] == first_id
    assert missed.event == "session_ended" and missed.id == heard[1][2]

    # Another user's stream hears nothing of it, and a missing token is 401.
    denied = httpx.get(service.url + "/v1/accounts/events", timeout=margin(30))
    assert denied.status_code == 401


def test_sessions_survive_a_redis_restart(start_service: StartService, server_logs: Path) -> None:
    with RedisServer(server_logs, persistent=True).start() as redis_server:
        service = start_service(redis_url=redis_server.url, QRLOGIN_INTROSPECT_KEY=SERVICE_KEY)
        browser = log_in(service)
        assert introspect(service, browser)["active"] is True
        redis_server.stop()
        redis_server.start()
        wait_until(
            lambda: requests.get(service.url + "/readyz", timeout=margin(30)).status_code == 200,
            30,
            "the service sees Redis again",
        )
        assert introspect(service, browser)["active"] is True
        me = browser.session.get(service.url + "/v1/passport/me", timeout=margin(30))
        assert me.status_code == 200


def test_session_streams_share_the_hub(start_service: StartService, own_redis: RedisServer) -> None:
    """Pages holding session streams add no Redis connections: one subscriber, the pool."""
    service = start_service(redis_url=own_redis.url, QRLOGIN_RATE_LIMITS="off")
    browsers = [log_in(service) for _ in range(40)]
    streams = [session_events(b) for b in browsers]
    assert all(s.status_code == 200 for s in streams)
    admin = redis.Redis.from_url(own_redis.url)
    wait_until(
        lambda: len(admin.pubsub_shardchannels("qrlogin:session-events:*")) == 40,
        10,
        "every page's session channel is subscribed",
    )
    clients = admin.client_list()
    names = [c.get("name", "") for c in clients]
    assert names.count("qrlogin-hub") == 1
    # The hub, the command pool (bounded by arrivals, not by the 40 pages), this test.
    assert len(clients) <= 1 + 20 + 1, names
    for stream in streams:
        stream.close()


def test_a_session_redis_lost_counts_as_ended_everywhere(
    start_service: StartService, own_redis: RedisServer
) -> None:
    """Redis restarts having kept nothing: the session is gone from the store. /me is 401
    SESSION_ENDED (reason lost), /app shows the login page, and the open session stream
    ends with the session's end, without a traceback."""
    service = start_service(redis_url=own_redis.url, QRLOGIN_RATE_LIMITS="off")
    browser = log_in(service)
    stream = SSEStream(session_events(browser))
    blocks = (b for b in stream if b.event == "session")
    assert json.loads(next(blocks).data)["status"] == "active"
    own_redis.stop()
    own_redis.start()  # empty: it keeps nothing on disk
    ended = json.loads(next(blocks).data)
    assert ended["status"] == "ended" and ended["reason"] == "lost", ended
    assert list(blocks) == []  # the server ended the stream
    me = browser.session.get(service.url + "/v1/passport/me", timeout=margin(30))
    assert me.status_code == 401 and me.json()["code"] == "SESSION_ENDED"
    assert me.json()["data"]["reason"] == "lost"
    page = browser.session.get(service.url + "/app", timeout=margin(30))
    assert page.status_code == 401 and "text/html" in page.headers["Content-Type"]
    logout = browser.session.post(service.url + "/v1/passport/logout", timeout=margin(30))
    assert logout.status_code == 401 and logout.json()["data"]["reason"] == "lost"
    assert "Traceback" not in service.log(), service.log()


def test_a_page_whose_session_redis_lost_goes_back_to_login(
    start_service: StartService, own_redis: RedisServer, chromium: Any
) -> None:
    """QRLogin.watchSession on /app: Redis restarts empty, and the page leaves."""
    from tests.live import confirm_and_land, open_login

    service = start_service(redis_url=own_redis.url, QRLOGIN_DEMO="1")
    context = chromium.new_context()
    page = context.new_page()
    qr = open_login(page, service)
    confirm_and_land(page, service, qr["id"])
    page.wait_for_timeout(300)  # the page's session stream is open
    own_redis.stop()
    own_redis.start()
    page.wait_for_url(service.url + "/", timeout=margin(20) * 1000)
    context.close()
