"""What attackers still found, tried again on the running service (gunicorn, a real
Redis): each answer a clear 4xx in the envelope, no 500, no traceback in the log, and no
stranger able to lock an owner out."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import requests

from servers.service import Service
from tests.conftest import StartService
from tests.live import Browser, margin, phone_step, user_token

pytestmark = pytest.mark.slow


def raw(service: Service, request: bytes) -> bytes:
    """Send ``request`` as it is; the whole answer (the server closes)."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=margin(30)) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_a_strangers_refused_polls_do_not_block_the_owner(start_service: StartService) -> None:
    """An office behind one address: a stranger's 61 refused polls use up the address's
    budget, and the owner still redeems its own QR."""
    service = start_service(QRLOGIN_LIMIT_REFUSED="60 per minute")
    owner = Browser(service.url)
    qr = owner.create()
    stranger = requests.Session()
    answers = [
        stranger.post(service.url + "/v1/passport/guest", json={"code": qr["id"]},
                      timeout=margin(30)).status_code
        for _ in range(61)
    ]  # fmt: skip
    assert answers[:60] == [403] * 60 and answers[60] == 429
    token = user_token()
    for step in ("SCAN", "VERIFY"):
        assert phone_step(service.url, token, qr["id"], step).status_code == 200
    redeemed = owner.guest(qr["id"])
    assert redeemed.status_code == 200 and redeemed.json()["data"]["token"], redeemed.text
    # The owner's own polls did not count against the address either.
    assert stranger.post(service.url + "/v1/passport/guest", json={"code": qr["id"]},
                         timeout=margin(30)).status_code == 429  # fmt: skip


def envelope(answer: bytes) -> dict[str, Any]:
    import json

    return dict(json.loads(answer.split(b"\r\n\r\n", 1)[1]))


def chunked(path: str, chunks: bytes, headers: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode() + chunks


@pytest.mark.parametrize("path", ["/v1/accounts/qrcode/", "/v1/accounts/qrcode_fill"])
@pytest.mark.parametrize(
    "body",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"5\r\n{}", b"2\r\n{}\r\nx\r\n", b"ffffffffffffffffffff\r\n{}"],
    ids=["bad size", "cut short", "bad last chunk", "size too large"],
)
def test_bad_chunk_framing_is_a_400(start_service: StartService, path: str, body: bytes) -> None:
    service = start_service()
    auth = f"Authorization: Bearer {user_token()}\r\n"
    answer = raw(service, chunked(path, body, auth))
    assert status_of(answer) == 400, answer
    assert envelope(answer)["code"] == "BAD_REQUEST"
    assert "Traceback" not in service.log(), service.log()


def test_a_chunked_body_too_large_is_413_on_every_endpoint(start_service: StartService) -> None:
    service = start_service()
    big = b"4000\r\n" + b" " * 0x4000 + b"\r\n" + b"10\r\n" + b" " * 16 + b"\r\n0\r\n\r\n"
    for path in ("/v1/passport/guest", "/v1/accounts/qrcode/"):
        answer = raw(service, chunked(path, big))
        assert status_of(answer) == 413, (path, answer)
        assert envelope(answer)["code"] == "BAD_REQUEST"


def test_an_absurd_last_event_id_on_the_notices_is_a_fresh_start(
    start_service: StartService,
) -> None:
    service = start_service()
    for last in ("99999999999999999999-1", "1-99999999999999999999", "-1", "x"):
        with requests.get(
            service.url + "/v1/accounts/events",
            headers={"Authorization": f"Bearer {user_token()}", "Last-Event-ID": last},
            stream=True,
            timeout=margin(30),
        ) as answer:
            assert answer.status_code in (200, 400), (last, answer.status_code)
    assert "Traceback" not in service.log(), service.log()


def test_a_lone_surrogate_leaves_no_traceback(start_service: StartService) -> None:
    service = start_service()
    body = b'{"code": "\\ud800abcdefghijklmnopqrstu"}'
    for _ in range(3):
        answer = requests.post(
            service.url + "/v1/passport/guest",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=margin(30),
        )
        assert answer.status_code in (400, 404), answer.text
    assert "Traceback" not in service.log(), service.log()


def test_the_prompt_names_only_known_browsers(start_service: StartService) -> None:
    """A user agent that writes its own "browser name" is shown as Other, and control
    characters never reach the phone (nor the audit trail)."""
    service = start_service(QRLOGIN_RATE_LIMITS="off")
    forged = "Same Wi-Fi - safe to confirm Bot 1\x85\x9b31m"
    created = requests.post(
        service.url + "/v1/accounts/qrcode/",
        json={"platform": "Rxx_PC"},
        headers={"User-Agent": forged.encode("latin-1")},
        timeout=margin(30),
    )
    qr_id = created.json()["data"]["id"]
    client = phone_step(service.url, user_token(), qr_id, "SCAN").json()["data"]["client"]
    assert client["browser"] == "Other" and client["os"] == "Other", client
    assert client["user_agent"] == "Same Wi-Fi - safe to confirm Bot 131m"
    edge = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0")  # fmt: skip
    other = requests.post(service.url + "/v1/accounts/qrcode/", json={"platform": "Rxx_PC"},
                          headers={"User-Agent": edge}, timeout=margin(30))  # fmt: skip
    known = phone_step(service.url, user_token(), other.json()["data"]["id"], "SCAN")
    assert known.json()["data"]["client"]["browser"] == "Edge 131"
    assert known.json()["data"]["client"]["os"] == "Windows 10"


def test_unknown_ids_on_the_shared_stream_spend_the_refused_budget(
    start_service: StartService,
) -> None:
    """Ids cannot be guessed (128 bits), but probing them costs as refused polls do."""
    service = start_service(QRLOGIN_LIMIT_REFUSED="20 per minute")
    prober = requests.Session()
    url = service.url + "/v1/accounts/qrcode/events"
    probes = ",".join(f"{n:022d}" for n in range(10))
    statuses = []
    for _ in range(3):
        with prober.get(url, params={"ids": probes}, stream=True, timeout=margin(30)) as answer:
            statuses.append(answer.status_code)
            if answer.status_code == 200:
                assert answer.text.count("event:gone") == 10
    assert statuses == [200, 200, 429], statuses
    # The same budget as the polls: they are refused now too.
    poll = prober.post(service.url + "/v1/passport/guest", json={"code": "0" * 22},
                       timeout=margin(30))  # fmt: skip
    assert poll.status_code == 429


def test_readyz_reports_a_full_redis(start_service: StartService, own_redis: Any) -> None:
    service = start_service(redis_url=own_redis.url, QRLOGIN_RATE_LIMITS="off")
    assert requests.get(service.url + "/readyz", timeout=margin(30)).status_code == 200
    admin = own_redis.client()
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")  # below what it uses: every write is refused
    try:
        ready = requests.get(service.url + "/readyz", timeout=margin(30))
        assert ready.status_code == 503, ready.text
        assert "maxmemory" in ready.json()["data"]["cause"]
        created = requests.post(service.url + "/v1/accounts/qrcode/",
                                json={"platform": "Rxx_PC"}, timeout=margin(30))  # fmt: skip
        assert created.status_code == 503 and created.headers["Retry-After"]
    finally:
        admin.config_set("maxmemory", "0")
    assert requests.get(service.url + "/readyz", timeout=margin(30)).status_code == 200


def test_metrics_can_ask_for_a_token(start_service: StartService) -> None:
    token = "scraper-Hq7Wm2Zx9Lc4Vb8"
    service = start_service(QRLOGIN_METRICS_TOKEN=token)
    assert requests.get(service.url + "/metrics", timeout=margin(30)).status_code == 401
    wrong = requests.get(service.url + "/metrics", headers={"Authorization": "Bearer nope"},
                         timeout=margin(30))  # fmt: skip
    assert wrong.status_code == 401 and wrong.json()["code"] == "UNAUTHORIZED"
    right = requests.get(service.url + "/metrics", headers={"Authorization": f"Bearer {token}"},
                         timeout=margin(30))  # fmt: skip
    assert right.status_code == 200 and "qrlogin_waiting_browsers" in right.text
    open_one = start_service()
    assert requests.get(open_one.url + "/metrics", timeout=margin(30)).status_code == 200


def open_stream(session: requests.Session, url: str, **headers: str) -> requests.Response:
    return session.get(url, headers={"Accept": "text/event-stream", **headers}, stream=True,
                       timeout=(margin(30), margin(30)))  # fmt: skip


def test_one_login_cannot_fill_a_worker_with_streams(start_service: StartService) -> None:
    """A login token's session streams stop at the session's cap (8), a user's notice
    streams at the user's (40), each with 429; another client's requests still answer."""
    from tests.live import log_in

    service = start_service(QRLOGIN_MAX_HELD_PER_USER="12")
    browser = log_in(service)
    url = service.url + "/v1/passport/session/events"
    opened = [open_stream(browser.session, url) for _ in range(9)]
    try:
        assert [s.status_code for s in opened] == [200] * 8 + [429], opened
        assert opened[8].json()["code"] == "SLOW_DOWN" and opened[8].headers["Retry-After"]
        phone = {"Authorization": f"Bearer {user_token()}"}
        notices = [open_stream(requests.Session(), service.url + "/v1/accounts/events", **phone)
                   for _ in range(5)]  # fmt: skip
        opened += notices
        # 8 session streams and 4 notice streams of the user: the 13th is one too many.
        assert [s.status_code for s in notices] == [200] * 4 + [429], notices
        assert requests.get(service.url + "/healthz", timeout=margin(30)).status_code == 200
        text = requests.get(service.url + "/metrics", timeout=margin(30)).text
        assert 'qrlogin_streams_refused_total{cap="session"} 1.0' in text
        assert 'qrlogin_streams_refused_total{cap="user"} 1.0' in text
    finally:
        for stream in opened:
            stream.close()


def test_streams_past_the_descriptor_budget_get_503(start_service: StartService) -> None:
    """A worker with 300 descriptors holds at most 44 connections open (a reserve of 256
    for ordinary requests); the next stream gets 503 with Retry-After, counted."""
    service = start_service(QRLOGIN_RATE_LIMITS="off", start=False)
    service.start(prefix=("prlimit", "--nofile=300:300"))
    browser = Browser(service.url)
    ids = [browser.create()["id"] for _ in range(45)]
    held = []
    for qr_id in ids[:44]:
        held.append(sock := socket.create_connection(("127.0.0.1", service.port)))
        sock.sendall(f"GET /v1/accounts/qrcode/{qr_id}/events HTTP/1.1\r\nHost: x\r\n"
                     f"Cookie: qrlogin_bind={browser.bind_cookie}\r\n\r\n".encode())  # fmt: skip
        sock.settimeout(margin(30))
        seen = b""
        while b"QRCODE_WAIT" not in seen:
            seen += sock.recv(4096)
        assert seen.startswith(b"HTTP/1.1 200"), seen
    try:
        refused = browser.stream(ids[44])
        assert refused.response.status_code == 503, refused.response.text
        assert refused.response.headers["Retry-After"]
        assert requests.get(service.url + "/healthz", timeout=margin(30)).status_code == 200
        text = requests.get(service.url + "/metrics", timeout=margin(30)).text
        assert 'qrlogin_streams_refused_total{cap="descriptors"} 1.0' in text
    finally:
        for sock in held:
            sock.close()


def test_a_worker_out_of_descriptors_says_so_in_one_line(start_service: StartService) -> None:
    service = start_service(QRLOGIN_RATE_LIMITS="off", start=False)
    service.start(prefix=("prlimit", "--nofile=120:120"))
    idle = []
    try:
        for _ in range(160):  # idle connections, past what the worker can accept
            idle.append(socket.create_connection(("127.0.0.1", service.port), timeout=5))
        time.sleep(3)  # gevent retries its accept about once a second
        log = service.log()
        assert "Traceback" not in log and "Too many open files" not in log, log[-2000:]
        assert log.count("this worker has no file descriptor left (EMFILE)") == 1, log[-2000:]
    finally:
        for sock in idle:
            sock.close()
    assert requests.get(service.url + "/healthz", timeout=margin(30)).status_code == 200
