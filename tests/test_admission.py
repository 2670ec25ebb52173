"""Overload under gunicorn. Past QRLOGIN_MAX_INFLIGHT requests in progress, a worker
answers 503 OVERLOADED with Retry-After at once, never 500, and the streams that were
open before the burst still get their events. A saturated Redis gives 503 within a
stated bound, and the streams survive it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from qrlogin import engine
from qrlogin.config import Settings
from servers.redis_server import RedisServer
from tests.conftest import StartService
from tests.live import (
    NO_LIMITS,
    SECRET,
    Browser,
    margin,
    metric,
    phone_step,
    user_token,
    wait_until,
)

pytestmark = pytest.mark.slow

BURST = 24


@pytest.fixture
def slow_redis(server_logs: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own that it may hold busy (DEBUG SLEEP)."""
    with RedisServer(server_logs, extra=("--enable-debug-command", "local")).start() as server:
        yield server


def busy_from_now(url: str, seconds: int) -> threading.Thread:
    """Hold the Redis at ``url`` busy for ``seconds`` (DEBUG SLEEP), and return once it
    no longer answers: its sleeper's connection is open before the command goes, and two
    PINGs in a row must go unanswered for a second each, which an idle Redis on loopback
    never does, however busy the machine (one short timeout did, under CI)."""
    client = redis.Redis.from_url(url, socket_timeout=seconds + 30)
    client.ping()
    sleeper = threading.Thread(target=client.execute_command, args=("DEBUG", "SLEEP", seconds))
    sleeper.start()
    probe = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    unanswered = 0

    def asleep() -> bool:
        nonlocal unanswered
        try:
            probe.ping()
            unanswered = 0
        except redis.exceptions.TimeoutError:
            unanswered += 1
        return unanswered >= 2

    wait_until(asleep, 10, "Redis busy")
    return sleeper


def test_a_burst_past_the_bound_is_shed_and_streams_still_get_their_events(
    start_service: StartService, slow_redis: RedisServer
) -> None:
    service = start_service(redis_url=slow_redis.url, QRLOGIN_MAX_INFLIGHT="2", **NO_LIMITS)
    browser = Browser(service.url)
    qr = browser.create()
    events = browser.stream(qr["id"]).events()
    assert next(events).json["status"] == "QRCODE_WAIT"

    # Redis busy: the requests admitted wait on it, the rest are shed at once.
    sleeper = busy_from_now(slow_redis.url, 5)

    def create(_: int) -> requests.Response:
        return requests.post(service.url + "/v1/accounts/qrcode/", json={"platform": "web"},
                             timeout=margin(30))  # fmt: skip

    with ThreadPoolExecutor(BURST) as pool:
        health = pool.submit(requests.get, service.url + "/healthz", timeout=margin(30))
        answers = list(pool.map(create, range(BURST)))
        assert health.result().status_code == 200  # the probes are never shed
    sleeper.join()

    statuses = sorted({a.status_code for a in answers})
    assert statuses == [201, 503], statuses
    shed = [a for a in answers if a.status_code == 503]
    for answer in shed:
        assert answer.json()["code"] == "OVERLOADED" and answer.headers["Retry-After"] == "1"
    assert metric(service.url, "qrlogin_requests_shed_total") == len(shed)

    # The stream opened before the burst still hears of its QR.
    assert phone_step(service.url, user_token(), qr["id"], "SCAN").status_code == 200
    assert next(events).json["status"] == "QRCODE_SCANNED"
    # And once the burst is over, requests are admitted again.
    assert browser.create()["id"]
    assert metric(service.url, "qrlogin_requests_in_progress") == 0


def test_a_held_long_poll_does_not_count(start_service: StartService) -> None:
    """With room for one request, a long poll that waits leaves it to the next request."""
    service = start_service(QRLOGIN_MAX_INFLIGHT="1", **NO_LIMITS)
    browser = Browser(service.url)
    qr_id = browser.create()["id"]
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(browser.guest, qr_id, wait=3)
        wait_until(lambda: metric(service.url, "qrlogin_held_connections") == 1, 10, "held")
        other = requests.post(service.url + "/v1/accounts/qrcode/", json={"platform": "web"},
                              timeout=margin(30))  # fmt: skip
        assert other.status_code == 201, other.text
        assert held.result().status_code == 200


#: The bound a request waiting on a saturated Redis gets its 503 within: a reconnect and
#: the command's timeout (qrlogin.engine.UNANSWERED_WITHIN_S), with a second to spare; and
#: how long Redis stays busy here: well past it, after the seconds of finding it busy.
ANSWER_WITHIN_S = engine.UNANSWERED_WITHIN_S + 1
BUSY_S = int(ANSWER_WITHIN_S) + 10


def test_a_saturated_redis_gives_503_within_the_bound_and_streams_survive(
    start_service: StartService, slow_redis: RedisServer
) -> None:
    service = start_service(redis_url=slow_redis.url, **NO_LIMITS)
    browser = Browser(service.url)
    qr = browser.create()
    events = browser.stream(qr["id"]).events()
    assert next(events).json["status"] == "QRCODE_WAIT"

    sleeper = busy_from_now(slow_redis.url, BUSY_S)
    started = time.monotonic()
    answer = requests.post(service.url + "/v1/accounts/qrcode/", json={"platform": "web"},
                           timeout=margin(30))  # fmt: skip
    took = time.monotonic() - started
    assert answer.status_code == 503 and answer.json()["code"] == "UNAVAILABLE", answer.text
    assert answer.headers["Retry-After"]
    assert took <= margin(ANSWER_WITHIN_S), took
    sleeper.join()

    # Redis answers again: the same stream hears of its QR.
    assert phone_step(service.url, user_token(), qr["id"], "SCAN").status_code == 200
    assert next(events).json["status"] == "QRCODE_SCANNED"


def test_a_connection_idle_past_its_health_check_is_not_waited_on_twice(
    slow_redis: RedisServer,
) -> None:
    """The worst path to that bound: a pooled connection idle long enough to be pinged
    before its command. The ping's timeout is the answer; nothing is tried again (it was
    three times the command's timeout when timeouts were retried)."""
    client = engine.connect(Settings.from_env({"SECRET_KEY": SECRET, "REDIS_URL": slow_redis.url}))
    client.set("qrlogin:test:idle", 1)
    time.sleep(engine.HEALTH_CHECK_INTERVAL_S + 1)
    sleeper = busy_from_now(slow_redis.url, BUSY_S)
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        client.set("qrlogin:test:idle", 2)
    assert time.monotonic() - started <= margin(ANSWER_WITHIN_S)
    sleeper.join()
    assert client.get("qrlogin:test:idle") == "1"  # the SET never went: its ping did not answer


def test_slow_answers_slow_the_pace_of_new_logins_and_never_their_steps(
    start_service: StartService, slow_redis: RedisServer
) -> None:
    """With the pace on (and no other bound), answers made slow by Redis (short DEBUG
    SLEEPs, one after another) get new logins refused with 503 OVERLOADED while the polls
    of a login under way are all answered; once Redis is quick again, new logins are let
    in again."""
    service = start_service(redis_url=slow_redis.url, QRLOGIN_MAX_SLOWDOWN="2",
                            QRLOGIN_MAX_INFLIGHT="0", **NO_LIMITS)  # fmt: skip
    owner = Browser(service.url)
    qr_id = owner.create()["id"]
    polls: list[int] = []
    created: list[requests.Response] = []
    slow = threading.Event()
    done = threading.Event()

    def poll() -> None:
        session = requests.Session()
        session.cookies.set("qrlogin_bind", owner.bind_cookie)
        while not done.is_set():
            polls.append(session.post(service.url + "/v1/passport/guest", json={"code": qr_id},
                                      timeout=margin(30)).status_code)  # fmt: skip

    def create() -> None:  # each a new browser, as a flood of new logins is
        while not done.is_set():
            answer = requests.post(service.url + "/v1/accounts/qrcode/", json={"platform": "web"},
                                  timeout=margin(30))  # fmt: skip
            if slow.is_set():
                created.append(answer)

    def hold_redis_busy() -> None:
        client = redis.Redis.from_url(slow_redis.url, socket_timeout=margin(30))
        while not done.is_set():
            client.execute_command("DEBUG", "SLEEP", "0.05")  # type: ignore[no-untyped-call]

    with ThreadPoolExecutor(12) as pool:
        running = [pool.submit(poll) for _ in range(3)]  # quick answers first: the pace's yardstick
        wait_until(lambda: len(polls) >= 200, margin(30), "quick polls")
        running += [pool.submit(create) for _ in range(6)]
        slow.set()
        running.append(pool.submit(hold_redis_busy))
        wait_until(lambda: any(a.status_code == 503 for a in created), margin(60), "a shed login")
        done.set()
        for future in running:
            future.result()

    shed = [a for a in created if a.status_code == 503]
    assert {a.status_code for a in created} <= {201, 503}
    for answer in shed:
        assert answer.json()["code"] == "OVERLOADED" and answer.headers["Retry-After"] == "1"
    assert set(polls) == {200}  # the steps of a login under way are never paced

    # Redis is quick again: within a few windows the pace lets new logins in.
    def let_in() -> bool:
        answer = requests.post(service.url + "/v1/accounts/qrcode/", json={"platform": "web"},
                               timeout=margin(30))  # fmt: skip
        return answer.status_code == 201

    wait_until(let_in, margin(30), "a login let in")
