"""The Redis connection's check for an unread reply, under gevent as the hub's
subscriber runs it."""

from __future__ import annotations

import gevent
import pytest
import redis

from qrlogin.pool import Parser
from tests.live import PROMPT_S, margin


def test_a_wait_for_a_message_lets_other_greenlets_run(redis_url: str) -> None:
    """It ends when a message arrives, and still tells a closed connection."""
    client = redis.Redis.from_url(redis_url, parser_class=Parser, decode_responses=True)
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe("qrlogin-test-wait")
    assert pubsub.get_message(timeout=margin(PROMPT_S))["type"] == "subscribe"
    conn = pubsub.connection
    assert conn is not None
    ticks: list[int] = []

    def tick() -> None:
        for n in range(1000):
            gevent.sleep(0.01)
            ticks.append(n)

    ticker = gevent.spawn(tick)
    assert conn.can_read(timeout=0.3) is False  # nothing came
    assert ticks, "the wait blocked the other greenlets"
    gevent.spawn_later(0.2, client.publish, "qrlogin-test-wait", "hello")
    assert conn.can_read(timeout=margin(PROMPT_S)) is True
    assert conn.can_read(timeout=0) is True  # read from the socket, then buffered by hiredis
    assert pubsub.get_message()["data"] == "hello"
    assert conn.can_read(timeout=0) is False
    ticker.kill()
    host, port = conn._sock.getsockname()[:2]
    redis.Redis.from_url(redis_url).client_kill_filter(_type="pubsub", addr=f"{host}:{port}")
    with pytest.raises(redis.ConnectionError):
        conn.can_read(timeout=margin(PROMPT_S))  # the server closed it: not a message
    pubsub.close()
