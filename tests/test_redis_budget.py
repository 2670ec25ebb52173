"""Small managed Redis plans allow few clients: past the limit the service answers 503
with Retry-After, loses nothing, and recovers by itself; its clients retry."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import expect

from servers.redis_server import RedisServer
from tests.conftest import StartService
from tests.live import margin, paste_qr, phone_signed_in, user_token, wait_until

pytestmark = pytest.mark.slow

#: Clients the small Redis accepts: this test's own, each worker's subscriber, and a few
#: pooled connections, where the service's defaults would open up to 2 x 20.
MAXCLIENTS = 8
LOGINS = 40


@pytest.fixture
def small_redis(server_logs: Path) -> Iterator[RedisServer]:
    with RedisServer(server_logs, maxclients=MAXCLIENTS).start() as server:
        yield server


def send(
    session: requests.Session, seen: Counter[str], method: str, url: str, **options: Any
) -> requests.Response:
    """One call, sent again after a 503 as a client should: never a 500, and every 503
    says when to come back. (The test waits less than Retry-After says, to stay short.)"""
    deadline = time.monotonic() + margin(60)
    while True:
        answer = session.request(method, url, timeout=margin(30), **options)
        seen[str(answer.status_code)] += 1
        assert answer.status_code < 500 or answer.status_code == 503, answer.text
        if answer.status_code != 503:
            return answer
        assert answer.json()["code"] == "UNAVAILABLE" and int(answer.headers["Retry-After"]) > 0
        assert time.monotonic() < deadline, "no answer but 503"
        time.sleep(0.05)


def test_a_burst_past_the_client_limit(
    small_redis: RedisServer, start_service: StartService
) -> None:
    watcher = small_redis.client()
    watcher.ping()  # this test's own connection, held before the burst
    # Admission control off: its own 503 (OVERLOADED) would keep the burst from Redis.
    service = start_service(redis_url=small_redis.url, workers=2, QRLOGIN_RATE_LIMITS="off",
                            QRLOGIN_MAX_INFLIGHT="0")  # fmt: skip
    seen: Counter[str] = Counter()
    redeemed: list[str] = []
    failures: list[BaseException] = []
    phone = {"Authorization": f"Bearer {user_token()}"}

    def login() -> None:
        try:
            browser = requests.Session()
            created = send(browser, seen, "POST", service.url + "/v1/accounts/qrcode/",
                           json={"platform": "Rxx_PC"})  # fmt: skip
            qr_id = created.json()["data"]["id"]
            for step in ("SCAN", "VERIFY"):
                done = send(requests.Session(), seen, "POST",
                            service.url + "/v1/accounts/qrcode_fill",
                            json={"id": qr_id, "step": step}, headers=phone)  # fmt: skip
                assert done.status_code == 200, done.text
            guest = service.url + "/v1/passport/guest"
            first = send(browser, seen, "POST", guest, json={"code": qr_id})
            assert first.json()["data"]["token"], first.text
            second = send(browser, seen, "POST", guest, json={"code": qr_id})
            assert "token" not in (second.json()["data"] or {}), second.text  # exactly once
            redeemed.append(qr_id)
        except BaseException as error:  # reported by the test's thread
            failures.append(error)

    threads = [threading.Thread(target=login) for _ in range(LOGINS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(margin(120))
    assert not failures, failures[0]
    assert len(set(redeemed)) == LOGINS
    rejected = int(watcher.info("stats")["rejected_connections"])
    print(f"answers {dict(seen)}; connections Redis rejected: {rejected}")
    assert rejected > 0  # the limit was met
    assert "max number of clients reached" in service.log()  # said so, with the fix
    assert "QRLOGIN_REDIS_MAX_CONNECTIONS" in service.log()
    assert "Traceback" not in service.log(), service.log()
    wait_until(
        lambda: requests.get(service.url + "/readyz", timeout=margin(30)).status_code == 200,
        30,
        "ready again",
    )


def test_the_pool_size_setting_bounds_connections(
    small_redis: RedisServer, start_service: StartService
) -> None:
    """QRLOGIN_REDIS_MAX_CONNECTIONS=3 keeps one worker within the small plan: no refusal."""
    watcher = small_redis.client()
    watcher.ping()
    service = start_service(  # admission control off: a burst waits for the pool, unrefused
        redis_url=small_redis.url,
        QRLOGIN_RATE_LIMITS="off",
        QRLOGIN_REDIS_MAX_CONNECTIONS="3",
        QRLOGIN_MAX_INFLIGHT="0",
    )
    seen: Counter[str] = Counter()

    def create() -> None:
        send(requests.Session(), seen, "POST", service.url + "/v1/accounts/qrcode/",
             json={"platform": "Rxx_PC"})  # fmt: skip

    threads = [threading.Thread(target=create) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(margin(60))
    assert seen == Counter({"201": 30})
    clients = watcher.client_list()
    assert len([c for c in clients if c["name"] == "qrlogin"]) <= 3
    assert int(watcher.info("stats")["rejected_connections"]) == 0


def test_the_sdk_and_the_stand_in_retry_while_redis_is_away(
    server_logs: Path, start_service: StartService, chromium: Chromium
) -> None:
    """Redis is down when the page asks for its QR and when the phone scans: both get 503
    and try again after Retry-After, and the login completes once Redis is back (with
    what it wrote before it stopped)."""
    own_redis = RedisServer(server_logs, persistent=True).start()
    service = start_service(redis_url=own_redis.url, QRLOGIN_DEMO="1")
    context = chromium.new_context()
    page = context.new_page()
    own_redis.stop()
    page.goto(service.url + "/")
    widget = page.locator("#qrlogin")
    expect(page.locator(".qrlogin-status")).to_contain_text("Cannot reach the login service")
    own_redis.start()
    expect(widget).to_have_attribute("data-status", "QRCODE_WAIT", timeout=margin(30) * 1000)
    qr_id = widget.get_attribute("data-qr-id")
    assert qr_id

    phone, mobile = phone_signed_in(chromium, service)
    own_redis.stop()
    restart = threading.Timer(1.0, own_redis.start)
    restart.start()
    try:
        paste_qr(mobile, {"id": qr_id})  # its SCAN gets 503 first
        expect(mobile.locator("#requester")).to_contain_text(
            "HeadlessChrome", timeout=margin(30) * 1000
        )
    finally:
        restart.join()
    expect(widget).to_have_attribute("data-status", "QRCODE_SCANNED", timeout=margin(30) * 1000)
    context.close()
    phone.close()
    own_redis.stop()
    assert "UNAVAILABLE" not in service.log() or "Traceback" not in service.log()


def test_a_bursts_spare_connections_go_back_without_more_requests(
    own_redis: RedisServer, start_service: StartService
) -> None:
    """After a burst the worker's pool closes its spare connections by itself (a timer),
    keeping two, though no request comes to look: an idle worker must not keep a small
    plan's connections from another."""
    from qrlogin.pool import CORE_CONNECTIONS, SPARE_IDLE_S

    service = start_service(redis_url=own_redis.url, QRLOGIN_RATE_LIMITS="off")
    watcher = own_redis.client()

    def pooled() -> int:
        return len([c for c in watcher.client_list() if c["name"] == "qrlogin"])

    seen: Counter[str] = Counter()
    threads = [
        threading.Thread(
            target=lambda: [
                send(requests.Session(), seen, "POST", service.url + "/v1/accounts/qrcode/",
                     json={"platform": "Rxx_PC"})
                for _ in range(10)
            ]
        )
        for _ in range(12)
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(margin(60))
    assert seen == Counter({"201": 120})
    after_burst = pooled()
    assert after_burst > CORE_CONNECTIONS  # the burst opened spares
    wait_until(lambda: pooled() <= CORE_CONNECTIONS, 3 * SPARE_IDLE_S, "spares closed")
    print(f"pooled connections: {after_burst} after the burst, {pooled()} once idle")
