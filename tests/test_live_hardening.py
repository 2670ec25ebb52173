"""Hardening seen from outside a real gunicorn process: logs, held long polls, faults."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
import requests

from servers.process import ESTABLISHED, LISTENING, http_answers, tcp_sockets
from tests.conftest import StartService
from tests.live import Browser, margin, phone_step, user_token, wait_until

pytestmark = pytest.mark.slow


def test_no_secret_in_the_logs_of_a_full_login(start_service: StartService) -> None:
    service = start_service(QRLOGIN_ACCESS_LOG="-", GUNICORN_CMD_ARGS="--log-level debug")
    browser = Browser(service.url)
    qr = browser.create()
    events = browser.stream(qr["id"]).events()
    token = user_token()
    phone_step(service.url, token, qr["id"], "SCAN")
    phone_step(service.url, token, qr["id"], "VERIFY")
    # Steps this quick may be coalesced on the stream: the newest state always arrives.
    assert [e.json["status"] for e in events][-1] == "QRCODE_SUCCESS"
    login_token = browser.guest(qr["id"]).json()["data"]["token"]
    me = browser.session.get(service.url + "/v1/passport/me", timeout=margin(30))
    assert me.status_code == 200
    wait_until(lambda: "/v1/passport/me" in service.log(), 10, "the access log is written")
    log = service.log()
    assert "/v1/passport/guest" in log and "/v1/accounts/qrcode_fill" in log  # it does log
    secrets = {
        "user token": token,
        "login token": login_token,
        "browser secret": browser.bind_cookie,
        "session cookie": str(browser.session.cookies["qrlogin_session"]),
    }
    for name, secret in secrets.items():
        assert secret not in log, f"the {name} is in the log"
        assert secret[-16:] not in log, f"part of the {name} is in the log"


def test_held_long_poll_does_not_count_against_the_poll_rate(start_service: StartService) -> None:
    service = start_service(QRLOGIN_RATE_LIMITS="on", QRLOGIN_LIMIT_POLL="2 per 30 seconds")
    browser = Browser(service.url)
    qr_id = browser.create()["id"]
    for _ in range(3):  # held for their whole second each
        held = browser.guest(qr_id, wait=1, since="QRCODE_WAIT")
        assert held.status_code == 200
    assert browser.guest(qr_id).status_code == 200
    assert browser.guest(qr_id).status_code == 200
    slow_down = browser.guest(qr_id)
    assert slow_down.status_code == 429 and slow_down.json()["code"] == "SLOW_DOWN"
    assert int(slow_down.headers["Retry-After"]) >= 1


def test_worker_killed_while_browsers_wait(start_service: StartService) -> None:
    service = start_service(workers=2, QRLOGIN_RATE_LIMITS="off")
    assert service.process is not None
    browsers = [Browser(service.url) for _ in range(6)]
    qrs = [b.create() for b in browsers]
    streams = [b.stream(q["id"]).events() for b, q in zip(browsers, qrs, strict=True)]
    for events in streams:
        assert next(events).json["status"] == "QRCODE_WAIT"
    for pid in service.workers():
        os.kill(pid, signal.SIGKILL)  # every stream loses its worker
    token = user_token()
    for browser, qr, events in zip(browsers, qrs, streams, strict=True):
        assert list(events) == []  # the stream broke
        # The browser reconnects (as EventSource does, with Last-Event-ID) to a new worker.
        wait_until(lambda: http_answers(service.url + "/healthz"), 30, "a new worker answers")
        resumed = browser.stream(qr["id"], last_event_id="1")
        assert phone_step(service.url, token, qr["id"], "SCAN").status_code == 200
        assert phone_step(service.url, token, qr["id"], "VERIFY").status_code == 200
        statuses = [e.json["status"] for e in resumed.events()]
        assert statuses[-1] == "QRCODE_SUCCESS"
        assert "token" in browser.guest(qr["id"]).json()["data"]


@pytest.mark.parametrize("reuse_port", ["1", "0"])
def test_a_burst_of_connections_is_spread_over_the_workers(
    start_service: StartService, reuse_port: str
) -> None:
    """Each worker listens on a socket of its own, and the kernel spreads new connections
    over them: on one shared socket, the worker that accepts first takes a burst.
    ``QRLOGIN_REUSE_PORT=0`` keeps the one socket."""
    service = start_service(workers=3, QRLOGIN_REUSE_PORT=reuse_port)
    assert service.process is not None
    pids = service.workers()
    listening = tcp_sockets(pids, service.port, LISTENING)
    assert all(len(inodes) == 1 for inodes in listening.values())
    distinct = set().union(*listening.values())
    if reuse_port == "0":
        assert len(distinct) == 1  # the master's, which every worker inherited
        return
    assert len(distinct) == 3
    connections = []
    try:
        for _ in range(30):  # opened together, each kept alive after one request
            connection = socket.create_connection(("127.0.0.1", service.port), timeout=margin(10))
            connections.append(connection)
        for connection in connections:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: qrlogin\r\n\r\n")
        for connection in connections:
            assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        held = {pid: len(s) for pid, s in tcp_sockets(pids, service.port, ESTABLISHED).items()}
        # Spread by the kernel's hash: a worker with none of 30 has odds of about 1 in 64,000.
        assert sum(held.values()) == 30 and min(held.values()) >= 1, held
    finally:
        for connection in connections:
            connection.close()


def test_sigterm_during_a_burst_of_logins_loses_none(start_service: StartService) -> None:
    a = start_service(QRLOGIN_RATE_LIMITS="off")
    b = start_service(QRLOGIN_RATE_LIMITS="off")
    token = user_token()
    logins = 120

    def call(fn: Callable[[str], requests.Response]) -> requests.Response:
        """Try instance A; when it is gone, B (as a load balancer would)."""
        for base in (a.url, b.url, b.url):
            try:
                response = fn(base)
                if response.status_code != 503:
                    return response
            except requests.ConnectionError:
                continue
        raise AssertionError("no instance answered")

    def login(n: int) -> tuple[float, str]:
        browser = Browser(a.url)
        qr_id = ""
        for _ in range(3):
            try:
                qr_id = browser.create()["id"]
                break
            except requests.ConnectionError:
                browser.base_url = b.url
        for step in ("SCAN", "VERIFY"):
            answer = call(partial(phone_step, token=token, qr_id=qr_id, step=step))
            assert answer.status_code == 200, answer.text

        def redeem(base: str) -> requests.Response:
            return browser.session.post(
                base + "/v1/passport/guest", json={"code": qr_id}, timeout=margin(30)
            )

        answer = call(redeem)
        finished.release()
        return time.monotonic(), answer.json()["data"].get("token", "")

    sigterm: list[float] = []
    finished = threading.Semaphore(0)

    def terminate_a() -> None:
        """Once the burst is under way (a login finished for each thread), however long
        its start took on a busy machine."""
        for _ in range(8):
            finished.acquire(timeout=margin(60))
        sigterm.append(time.monotonic())
        a.terminate()

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(login, n) for n in range(logins)]
        stopper = threading.Thread(target=terminate_a, daemon=True)
        stopper.start()
        results = [f.result(timeout=margin(120)) for f in futures]
        stopper.join()
    assert a.process is not None and a.process.poll() is not None  # A really went away
    done_at = [at for at, _ in results]
    assert min(done_at) < sigterm[0] < max(done_at), "the burst did not span the SIGTERM"
    assert all(token for _, token in results), "a login lost its token"
    assert len({token for _, token in results}) == logins


def test_demo_mode_under_gunicorn_says_so_at_every_worker_start(
    start_service: StartService,
) -> None:
    service = start_service(workers=2, QRLOGIN_DEMO="1")
    ready = requests.get(service.url + "/readyz", timeout=margin(30)).json()["data"]
    assert ready["demo"] is True and ready["redis"] == "ok"
    wait_until(lambda: service.log().count("QRLOGIN_DEMO is on") == 2, 30, "both workers warned")
