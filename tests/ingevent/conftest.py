"""Fixtures of the tests under gevent: the app's services on the tests' Redis."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator

import gevent
import pytest
import redis

from qrlogin.factory import create_app
from qrlogin.models import Requester, Snapshot
from qrlogin.services import Services, services
from tests.live import PROMPT_S, SECRET, margin

#: The browser every QR here is bound to.
BIND = "binding"
ASKING = Requester("127.0.0.1", "test", "Chrome", "Linux")


@pytest.fixture
def svc(redis_url: str) -> Iterator[Services]:
    """The services of an app on a flushed Redis, with the limits off."""
    redis.Redis.from_url(redis_url).flushdb()
    env = {"REDIS_URL": redis_url, "SECRET_KEY": SECRET, "QRLOGIN_RATE_LIMITS": "off"}
    env["QRLOGIN_SSE_HEARTBEAT"] = os.environ.get("QRLOGIN_SSE_HEARTBEAT", "1")
    found = services(create_app(env))
    yield found
    found.hub.shutdown()


def until(check: Callable[[], bool], what: str, seconds: float = PROMPT_S) -> None:
    """Wait (letting the other greenlets run) until ``check()``; fail after ``seconds``."""
    with gevent.Timeout(margin(seconds), AssertionError(what)):
        while not check():
            gevent.sleep(0.01)


def new_qr(svc: Services) -> Snapshot:
    return svc.store.create("web", BIND, ASKING)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair: (the server's end, the browser's end)."""
    server, browser = socket.socketpair()
    yield server, browser
    browser.close()
    server.close()
