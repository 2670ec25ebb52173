"""The SSE stream and the long poll, through a real gunicorn + gevent process and real Redis."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from qrlogin.keys import Keys
from qrlogin.settings import DEFAULTS
from qrlogin.subscriber import LEAVE_AFTER_S
from servers.redis_server import RedisServer
from servers.service import Service
from tests.conftest import StartService
from tests.live import (
    FUNCTIONAL,
    NO_LIMITS,
    PROMPT_S,
    SECRET,
    Browser,
    SSEStream,
    margin,
    metric,
    open_streams,
    phone_step,
    user_token,
    wait_until,
)

pytestmark = pytest.mark.slow
#: These tests create many QRs from one browser: the limits have tests of their own.


@pytest.fixture
def own_service(own_redis: RedisServer, server_logs: Path) -> Iterator[Service]:
    """One worker on a Redis of this test's own (so its client list is the service's)."""
    env = {"SECRET_KEY": SECRET, "REDIS_URL": own_redis.url, **NO_LIMITS, **FUNCTIONAL}
    with Service(env, server_logs).start() as service:
        yield service


@pytest.fixture
def start(start_service: StartService) -> StartService:
    """Services with the limits off."""
    return functools.partial(start_service, **NO_LIMITS)


def test_full_login_watched_on_the_stream(start: StartService) -> None:
    service = start()
    browser = Browser(service.url)
    qr = browser.create()
    stream = browser.stream(qr["id"])
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    assert stream.response.headers["Cache-Control"] == "no-store"
    assert stream.response.headers["X-Accel-Buffering"] == "no"
    events = stream.events()
    first = next(events)
    assert first.retry == 3000
    assert first.json == {"id": qr["id"], "status": "QRCODE_WAIT", "expire": qr["expire"]}

    token = user_token()
    assert phone_step(service.url, token, qr["id"], "SCAN").status_code == 200
    scanned = next(events)
    assert scanned.json["status"] == "QRCODE_SCANNED"
    assert scanned.json["user"] == {"id": "u-alice", "name": "Alice", "avatar": None}
    assert phone_step(service.url, token, qr["id"], "VERIFY").status_code == 200
    success = next(events)
    assert success.json["status"] == "QRCODE_SUCCESS"
    assert "token" not in success.data
    assert [int(e.id or 0) for e in (first, scanned, success)] == [1, 2, 3]
    assert list(stream) == []  # the server ended the stream
    redeemed = browser.guest(qr["id"]).json()["data"]
    assert redeemed["status"] == "QRCODE_SUCCESS" and redeemed["token"]
    assert redeemed["token"] not in service.log()


def test_late_browser_and_reconnect_with_last_event_id(start: StartService) -> None:
    service = start()
    browser = Browser(service.url)
    qr = browser.create()
    token = user_token()
    phone_step(service.url, token, qr["id"], "SCAN")

    late = browser.stream(qr["id"])
    first = next(late.events())
    assert first.json["status"] == "QRCODE_SCANNED" and first.id == "2"
    late.close()

    resumed = browser.stream(qr["id"], last_event_id="2")
    blocks = iter(resumed)
    opening = next(blocks)
    assert opening.retry == 3000 and opening.event is None  # no repeated snapshot
    phone_step(service.url, token, qr["id"], "VERIFY")
    following = next(e for e in blocks if e.event == "status")
    assert following.json["status"] == "QRCODE_SUCCESS" and following.id == "3"

    # After the end, a reconnect with the last id is told to stop (204).
    done = browser.stream(qr["id"], last_event_id="3")
    assert done.response.status_code == 204

    # Also once the browser redeemed (the QR moved on to QRCODE_ERROR, reason used): a
    # client that kept the QR's binding and saw QRCODE_SUCCESS gets 204, not the `used`
    # event, and so does the browser itself with its new binding (which names the old).
    kept = Browser(service.url)
    kept.session.cookies.set("qrlogin_bind", browser.bind_cookie)
    assert "token" in browser.guest(qr["id"]).json()["data"]
    after = kept.stream(qr["id"], last_event_id="3")
    assert after.response.status_code == 204
    assert browser.stream(qr["id"], last_event_id="3").response.status_code == 204
    # A client that had not seen a final state is shown the current one.
    behind = kept.stream(qr["id"], last_event_id="2")
    assert [e.json["status"] for e in behind.events()] == ["QRCODE_ERROR"]


def test_tabs_on_one_qr_each_get_its_events_as_others_leave(start: StartService) -> None:
    """Several streams of one QR in one worker: each gets the events while the others come
    and go (the hub keeps a lone waiter apart from a set of them)."""
    service = start()
    browser = Browser(service.url)
    qr = browser.create()
    tabs = [browser.stream(qr["id"]) for _ in range(3)]
    blocks = [tab.events() for tab in tabs]
    assert [next(b).json["status"] for b in blocks] == ["QRCODE_WAIT"] * 3
    assert metric(service.url, "qrlogin_waiting_browsers") == 3
    token = user_token()

    tabs[0].close()
    waiting = functools.partial(metric, service.url, "qrlogin_waiting_browsers")
    wait_until(lambda: waiting() == 2, 10, "a closed tab leaves")
    assert phone_step(service.url, token, qr["id"], "SCAN").status_code == 200
    assert [next(b).json["status"] for b in blocks[1:]] == ["QRCODE_SCANNED"] * 2

    tabs[1].close()
    wait_until(lambda: waiting() == 1, 10, "another closed tab leaves")
    late = browser.stream(qr["id"], last_event_id="2")  # back to two, then the last
    assert phone_step(service.url, token, qr["id"], "VERIFY").status_code == 200
    assert next(blocks[2]).json["status"] == "QRCODE_SUCCESS"
    assert [e.json["status"] for e in late.events()] == ["QRCODE_SUCCESS"]
    wait_until(lambda: waiting() == 0, 10, "the ended streams leave")


def test_stream_refuses_other_browsers_and_unknown_ids(start: StartService) -> None:
    service = start()
    qr = Browser(service.url).create()
    stranger = Browser(service.url)
    forbidden = stranger.stream(qr["id"]).response
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "QRCODE_FORBIDDEN"
    unknown = Browser(service.url).stream("B" * 32).response
    assert unknown.status_code == 404 and unknown.json()["code"] == "QRCODE_NOT_FOUND"


def test_the_shared_stream_tells_the_same_codes_as_gone(start: StartService) -> None:
    """On the stream a browser's tabs share, a QR that is not the caller's or does not
    exist is a ``gone`` event with the per-QR stream's error code; its own QR streams."""
    service = start()
    mine = Browser(service.url)
    own = mine.create()["id"]
    foreign = Browser(service.url).create()["id"]
    response = mine.session.get(
        f"{service.url}/v1/accounts/qrcode/events?ids={own},{foreign},{'B' * 32}",
        headers={"Accept": "text/event-stream"}, stream=True, timeout=(margin(30), margin(30)),
    )  # fmt: skip
    assert response.status_code == 200
    blocks = iter(SSEStream(response))
    opening = [next(e for e in blocks if e.event) for _ in range(3)]
    assert [(e.event, e.json["id"]) for e in opening] == [
        ("status", own), ("gone", foreign), ("gone", "B" * 32)
    ]  # fmt: skip
    assert opening[0].json["status"] == "QRCODE_WAIT" and opening[0].json["version"] == 1
    assert [e.json["code"] for e in opening[1:]] == ["QRCODE_FORBIDDEN", "QRCODE_NOT_FOUND"]
    response.close()


def test_heartbeat_and_expiry_by_itself(start: StartService) -> None:
    service = start(QRLOGIN_SSE_HEARTBEAT="1", QRLOGIN_QR_TTL="3")
    browser = Browser(service.url)
    qr = browser.create()
    stream = browser.stream(qr["id"])
    blocks = iter(stream)
    opened = next(blocks).at
    ping = next(blocks)
    assert ping.comments == ["ping"] and ping.at - opened < 1 + margin(PROMPT_S)
    expired = next(e for e in blocks if e.event == "status")
    assert expired.json["status"] == "QRCODE_EXPIRE" and expired.id == "2"
    assert abs(time.time() - qr["expire"]) < margin(PROMPT_S)  # at the deadline, by itself
    assert list(stream) == []


def _client_count(url: str) -> dict[str, int]:
    clients = redis.Redis.from_url(url).client_list()
    names = [c.get("name", "") for c in clients]
    return {"total": len(clients), "hub": names.count("qrlogin-hub")}


def test_connections_do_not_grow_with_waiting_browsers(
    own_redis: RedisServer, own_service: Service
) -> None:
    service = own_service
    browser = Browser(service.url)
    qr_ids = [browser.create()["id"] for _ in range(300)]

    async def hold(count: int, arriving_together: int) -> dict[str, int]:
        streams = await open_streams(
            "127.0.0.1", service.port, browser.bind_cookie, qr_ids[:count], arriving_together
        )
        await asyncio.sleep(0.5)
        seen = _client_count(own_redis.url)
        for _, writer in streams:
            writer.close()
        return seen

    # Browsers arriving a few at a time, as they do: the count depends on neither number.
    with_3 = asyncio.run(hold(3, arriving_together=3))
    with_300 = asyncio.run(hold(300, arriving_together=3))
    # 100 browsers arriving at the same instant: the command pool grows to its bound only.
    burst = asyncio.run(hold(300, arriving_together=100))
    print(f"Redis connections: 3 streams {with_3}, 300 streams {with_300}, burst {burst}")
    assert with_3["hub"] == with_300["hub"] == burst["hub"] == 1
    # The pool holds as many connections as commands ran at once (here at most 3
    # arrivals and the hub's pipelined version check), whatever the number of waiting
    # browsers: hub + 4 + this test's own client, with 3 streams and with 300.
    bound = 1 + 4 + 1
    assert with_3["total"] <= bound and with_300["total"] <= bound
    pool = int(DEFAULTS["redis_max_connections"] or 0)
    assert burst["total"] <= 1 + pool + 1  # hub + pool + this test's client


def test_channels_left_are_unsubscribed_together(
    own_redis: RedisServer, own_service: Service
) -> None:
    """A channel no one waits on stays subscribed for a moment, then goes with the others
    that were left; a browser back on its QR meanwhile is still told of its changes."""
    service = own_service
    browser = Browser(service.url)
    qr_ids = [browser.create()["id"] for _ in range(5)]
    channels = {Keys.channel(qr_id) for qr_id in qr_ids}
    admin = redis.Redis.from_url(own_redis.url, decode_responses=True)

    def subscribed() -> set[str]:
        return channels & set(admin.pubsub_shardchannels())

    streams = [browser.stream(qr_id) for qr_id in qr_ids]
    for stream in streams:
        assert next(stream.events()).json["status"] == "QRCODE_WAIT"
    wait_until(lambda: subscribed() == channels, PROMPT_S, "the five channels subscribed")
    left_at = time.monotonic()  # no channel goes before this, and LEAVE_AFTER_S more
    for stream in streams:
        stream.close()
    wait_until(
        lambda: metric(service.url, "qrlogin_waiting_browsers") == 0,
        PROMPT_S,
        "the service saw the browsers go",
    )
    back = browser.stream(qr_ids[0])
    events = back.events()
    assert next(events).json["status"] == "QRCODE_WAIT"
    found = subscribed()
    if time.monotonic() - left_at < LEAVE_AFTER_S:
        # Back before the channel could go: it stayed subscribed all along.
        assert Keys.channel(qr_ids[0]) in found
    gone = channels - {Keys.channel(qr_ids[0])}
    wait_until(lambda: not subscribed() & gone, margin(10), "the four left unsubscribed")
    assert subscribed() == {Keys.channel(qr_ids[0])}
    phone_step(service.url, user_token(), qr_ids[0], "SCAN")
    assert next(events).json["status"] == "QRCODE_SCANNED"
    back.close()


def test_redis_restart_while_streams_wait(start: StartService, server_logs: Path) -> None:
    with RedisServer(server_logs, persistent=True).start() as server:
        service = start(redis_url=server.url)
        browser = Browser(service.url)
        qr = browser.create()
        stream = browser.stream(qr["id"])
        events = stream.events()
        assert next(events).json["status"] == "QRCODE_WAIT"
        server.stop()
        time.sleep(1.0)
        server.start()
        token = user_token()
        scans: list[int] = []

        def scanned() -> bool:
            scans.append(phone_step(service.url, token, qr["id"], "SCAN").status_code)
            return scans[-1] != 503

        wait_until(scanned, 15, "the service answers again after Redis restarted")
        assert scans[-1] == 200, scans
        assert next(events).json["status"] == "QRCODE_SCANNED"
        phone_step(service.url, token, qr["id"], "VERIFY")
        assert next(events).json["status"] == "QRCODE_SUCCESS"
        assert "token" in browser.guest(qr["id"]).json()["data"]


def test_two_instances_on_one_redis(start: StartService) -> None:
    a, b = start(), start()
    browser = Browser(a.url)
    qr = browser.create()
    events = browser.stream(qr["id"]).events()
    assert next(events).json["status"] == "QRCODE_WAIT"
    token = user_token()
    phone_step(b.url, token, qr["id"], "SCAN")
    assert next(events).json["status"] == "QRCODE_SCANNED"
    phone_step(b.url, token, qr["id"], "VERIFY")
    assert next(events).json["status"] == "QRCODE_SUCCESS"


def test_long_poll_returns_on_change_and_after_wait(start: StartService) -> None:
    service = start()
    browser = Browser(service.url)
    qr = browser.create()
    token = user_token()

    started = time.monotonic()
    idle = browser.guest(qr["id"], wait=2, since="QRCODE_WAIT")
    assert 2.0 <= time.monotonic() - started < 2.0 + margin(PROMPT_S)
    assert idle.json()["data"]["status"] == "QRCODE_WAIT"

    answered: dict[str, float] = {}
    statuses: list[str] = []

    def poll() -> None:
        data = browser.guest(qr["id"], wait=10, since="QRCODE_WAIT").json()["data"]
        answered["at"] = time.monotonic()
        statuses.append(data["status"])

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)  # the poll is held
    assert not answered
    sent = time.monotonic()
    assert phone_step(service.url, token, qr["id"], "SCAN").status_code == 200
    poller.join(margin(30))
    assert statuses == ["QRCODE_SCANNED"]
    assert answered["at"] - sent < margin(PROMPT_S)  # on the change, not after 10 s

    # A held poll redeems as soon as the phone confirms.
    threading.Timer(0.3, phone_step, (service.url, token, qr["id"], "VERIFY")).start()
    data = browser.guest(qr["id"], wait=10, since="QRCODE_SCANNED").json()["data"]
    assert data["status"] == "QRCODE_SUCCESS" and data["token"]


def test_sigterm_with_500_streams_open_exits_quickly(own_service: Service) -> None:
    service = own_service
    browser = Browser(service.url)
    qr_ids = [browser.create()["id"] for _ in range(500)]

    async def hold_then_terminate() -> tuple[float, int]:
        streams = await open_streams("127.0.0.1", service.port, browser.bind_cookie, qr_ids)
        took = await asyncio.to_thread(service.terminate)
        hinted = 0
        for reader, writer in streams:
            rest = await asyncio.wait_for(reader.read(), margin(30))
            hinted += b"retry:" in rest
            writer.close()
        return took, hinted

    took, hinted = asyncio.run(hold_then_terminate())
    print(f"SIGTERM with 500 streams: exited in {took:.2f}s, {hinted} got a reconnect hint")
    assert took < margin(5.0)  # the graceful timeout is 10 s
    assert hinted == 500


def test_browsers_reconnecting_to_a_stopping_worker_do_not_hold_it(own_service: Service) -> None:
    """Streams that reconnect to a worker that is shutting down are ended at once too."""
    service = own_service
    browser = Browser(service.url)
    qr_ids = [browser.create()["id"] for _ in range(200)]

    async def churn() -> float:
        streams = await open_streams("127.0.0.1", service.port, browser.bind_cookie, qr_ids)
        assert service.process is not None
        worker = service.workers()[0]
        started = time.monotonic()
        os.kill(worker, signal.SIGTERM)

        async def reconnect_until_refused(index: int) -> None:
            reader, writer = streams[index]
            while Path(f"/proc/{worker}").exists():
                await reader.read()  # ended by the worker
                writer.close()
                try:
                    reader, writer = (
                        await open_streams(
                            "127.0.0.1", service.port, browser.bind_cookie, [qr_ids[index]]
                        )
                    )[0]
                except (OSError, AssertionError, asyncio.IncompleteReadError):
                    return
            writer.close()

        await asyncio.wait_for(
            asyncio.gather(*(reconnect_until_refused(i) for i in range(len(streams)))),
            margin(30),
        )
        while Path(f"/proc/{worker}").exists():
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    took = asyncio.run(churn())
    assert took < margin(5.0), f"the stopping worker took {took:.1f}s"
