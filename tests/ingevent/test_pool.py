"""The command pool under gevent: a request that finds no open connection free while
others are in use takes the first one put back, while another is opened aside; with
Redis away, the request meets the failure itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gevent
import pytest
import redis

from qrlogin.pool import Pool

#: How long opening a connection takes here: far longer than a command, as under load.
SLOW_CONNECT_S = 2.0


class SlowConnection(redis.Connection):
    """A connection whose opening takes SLOW_CONNECT_S, or fails after it when
    ``failing`` is set on the class."""

    failing = False
    opened = 0

    def connect(self) -> None:
        if self._sock is None:
            gevent.sleep(SLOW_CONNECT_S)
            if SlowConnection.failing:
                raise redis.exceptions.ConnectionError("Redis is away")
            SlowConnection.opened += 1
        super().connect()  # type: ignore[no-untyped-call]


@pytest.fixture
def pool(redis_url: str) -> Iterator[Pool]:
    SlowConnection.failing, SlowConnection.opened = False, 0
    found = Pool.from_url(redis_url, connection_class=SlowConnection, max_connections=4, timeout=30)
    yield found
    found.disconnect()


def taken(pool: Pool, box: list[Any]) -> None:
    box.append(pool.get_connection())


def test_a_request_takes_the_connection_put_back_while_another_opens_aside(pool: Pool) -> None:
    first = pool.get_connection()  # no connection in use: it opens its own
    got: list[Any] = []
    waiting = gevent.spawn(taken, pool, got)
    gevent.sleep(0.01)
    assert not got  # no free connection: it waits, and one more is being opened
    pool.release(first)  # a command ends long before a new connection is open
    waiting.join()
    assert got == [first]
    # The connection opened aside joins the pool, free for the next request.
    with gevent.Timeout(10 * SLOW_CONNECT_S):
        while SlowConnection.opened < 2:
            gevent.sleep(0.05)
    connected = [c for c in pool.pool.queue if c is not None and c._sock is not None]
    assert len(connected) == 1 and connected[0] is not first
    pool.release(got[0])
    assert redis.Redis(connection_pool=pool).ping()


def test_with_redis_away_the_request_meets_the_failure(pool: Pool) -> None:
    first = pool.get_connection()
    SlowConnection.failing = True
    got: list[Any] = []
    waiting = gevent.spawn(taken, pool, got)
    # The connection opened aside fails; the request then opens its own, and fails with
    # Redis's error, without waiting for the pool's timeout.
    failed = pytest.raises(redis.exceptions.ConnectionError, match="Redis is away")
    with gevent.Timeout(10 * SLOW_CONNECT_S), failed:
        waiting.get()
    assert not got
    pool.release(first)
    SlowConnection.failing = False
    assert redis.Redis(connection_pool=pool).ping()
