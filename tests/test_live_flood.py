"""One client cannot hold every connection: caps on held connections per QR, per browser
and per address; slow heads and bodies are cut; a browser that leaves frees its slot."""

from __future__ import annotations

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from servers.service import Service
from tests.conftest import StartService
from tests.live import PROMPT_S, Browser, margin, metric, wait_until

pytestmark = pytest.mark.slow

#: Limits high enough that only the held-connection caps are under test.
ROOMY = {"QRLOGIN_LIMIT_CREATE": "100000 per minute", "QRLOGIN_MAX_LIVE_QRS": "1000"}


async def open_stream(
    port: int, cookie: str, qr_id: str, source: str = "127.0.0.1"
) -> tuple[int, dict[str, str], asyncio.StreamReader, asyncio.StreamWriter]:
    """Open one SSE request from ``source``; its status, headers and connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(
        f"GET /v1/accounts/qrcode/{qr_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Accept: text/event-stream\r\nCookie: qrlogin_bind={cookie}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), margin(30))
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, reader, writer


def browsers_with_qrs(service: Service, browsers: int, each: int) -> list[tuple[str, str]]:
    """(cookie, QR id) pairs: ``each`` QRs in each of ``browsers`` browsers."""
    pairs = []
    for _ in range(browsers):
        browser = Browser(service.url)
        ids = [browser.create()["id"] for _ in range(each)]
        pairs += [(browser.bind_cookie, qr_id) for qr_id in ids]
    return pairs


def waiting(service: Service) -> float:
    return metric(service.url, "qrlogin_waiting_browsers")


def test_a_flood_from_one_address_is_refused_while_others_are_served(
    start_service: StartService,
) -> None:
    service = start_service(QRLOGIN_MAX_HELD_PER_IP="50", **ROOMY)
    pairs = browsers_with_qrs(service, browsers=3, each=20)

    async def flood() -> tuple[list[int], list[str], tuple[int, bytes]]:
        opened = [await open_stream(service.port, c, q) for c, q in pairs]
        statuses = [o[0] for o in opened]
        retry_after = [o[1].get("Retry-After", "") for o in opened if o[0] == 429]
        # Meanwhile a browser at another address logs in as usual.
        other = Browser(service.url)
        qr = await asyncio.to_thread(other.create)
        status, _, reader, writer = await open_stream(
            service.port, other.bind_cookie, qr["id"], source="127.0.0.2"
        )
        first = await asyncio.wait_for(reader.readuntil(b"QRCODE_WAIT"), margin(30))
        writer.close()
        for _, _, _, w in opened:
            w.close()
        return statuses, retry_after, (status, first)

    statuses, retry_after, (other_status, other_first) = asyncio.run(flood())
    assert statuses.count(200) == 50 and statuses.count(429) == 10
    assert all(int(value) >= 1 for value in retry_after)
    assert other_status == 200 and b"QRCODE_WAIT" in other_first


@pytest.mark.parametrize(
    ("settings", "browsers", "each", "same_qr"),
    [
        ({"QRLOGIN_MAX_HELD_PER_QR": "3"}, 1, 1, True),
        ({"QRLOGIN_MAX_HELD_PER_BROWSER": "3"}, 1, 4, False),
    ],
    ids=["per QR", "per browser"],
)
def test_caps_per_qr_and_per_browser(
    start_service: StartService, settings: dict[str, str], browsers: int, each: int,
    same_qr: bool,
) -> None:  # fmt: skip
    service = start_service(**ROOMY, **settings)
    pairs = browsers_with_qrs(service, browsers, each)
    if same_qr:
        pairs = pairs * 4

    async def open_all() -> list[int]:
        opened = [await open_stream(service.port, c, q) for c, q in pairs[:4]]
        for _, _, _, writer in opened:
            writer.close()
        return [o[0] for o in opened]

    assert asyncio.run(open_all()) == [200, 200, 200, 429]


def test_a_browser_that_leaves_frees_its_slot_at_once(start_service: StartService) -> None:
    # The heartbeat is as slow as allowed: the slot must not wait for a write to fail.
    service = start_service(QRLOGIN_SSE_HEARTBEAT="50", QRLOGIN_MAX_HELD_PER_IP="20", **ROOMY)
    pairs = browsers_with_qrs(service, browsers=1, each=20)

    async def hold_then_leave() -> None:
        opened = [await open_stream(service.port, c, q) for c, q in pairs]
        assert [o[0] for o in opened] == [200] * 20
        for _, _, _, writer in opened:
            writer.close()

    asyncio.run(hold_then_leave())
    left = time.monotonic()
    wait_until(lambda: waiting(service) == 0.0, 30, "the streams of browsers that left end")
    assert time.monotonic() - left < margin(PROMPT_S)
    asyncio.run(hold_then_leave())  # every slot is free again


def raw(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=margin(30))


def test_slow_heads_and_bodies_are_cut(start_service: StartService) -> None:
    service = start_service()

    # A head sent a byte at a time: gunicorn reads each head within its keep-alive (2 s).
    head = raw(service.port)
    head.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    head.setblocking(False)
    started = time.monotonic()
    closed = False
    while time.monotonic() - started < margin(20):
        try:
            head.sendall(b"X")
        except OSError:
            closed = True
            break
        try:
            if head.recv(1024) == b"":
                closed = True
                break
        except BlockingIOError:
            pass
        time.sleep(0.5)
    assert closed, "a trickled head kept its connection"
    assert time.monotonic() - started < margin(10)
    head.close()

    # A body sent a byte at a time: 408 once BODY_READ_S (5 s) have passed.
    body = raw(service.port)
    body.sendall(
        b"POST /v1/accounts/qrcode/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"
    )
    started = time.monotonic()
    answer = b""
    body.settimeout(1.0)
    while time.monotonic() - started < margin(30) and b"}" not in answer:
        try:
            if not answer:
                body.sendall(b" ")
            answer += body.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
    took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"REQUEST_TIMEOUT" in answer
    assert took < 5 + margin(PROMPT_S + 3)
    body.close()


def test_held_long_polls_count_too(start_service: StartService) -> None:
    service = start_service(QRLOGIN_MAX_HELD_PER_QR="2", **ROOMY)
    browser = Browser(service.url)
    qr_id = browser.create()["id"]
    held: list[int] = []

    def hold() -> None:
        held.append(browser.guest(qr_id, wait=3, since="QRCODE_WAIT").status_code)

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(hold) for _ in range(2)]
        wait_until(lambda: waiting(service) == 2.0, 30, "both long polls are held")
        refused = browser.guest(qr_id, wait=3, since="QRCODE_WAIT")
        for future in futures:
            future.result(timeout=margin(30))
    assert refused.status_code == 429 and refused.json()["code"] == "SLOW_DOWN"
    assert held == [200, 200]
    assert browser.guest(qr_id).status_code == 200  # a poll that is not held is not capped


def test_session_streams_count_against_their_address(start_service: StartService) -> None:
    service = start_service(QRLOGIN_MAX_HELD_PER_IP="3", QRLOGIN_RATE_LIMITS="on", **ROOMY)
    from tests.live import log_in, session_events

    browser = log_in(service)
    streams = [session_events(browser) for _ in range(4)]
    assert [s.status_code for s in streams] == [200, 200, 200, 429]
    for stream in streams:
        stream.close()
