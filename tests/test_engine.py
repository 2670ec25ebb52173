"""The Redis connections' check for an unread reply (the pool's, the hub's subscriber), against
a real Redis."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from qrlogin.engine import Parser
from qrlogin.testing import ROOT
from tests.timing import PROMPT_S, margin, wait_until


def test_check_sees_a_waiting_reply_and_a_closed_connection(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, parser_class=Parser, decode_responses=True)
    conn = client.connection_pool.get_connection()
    try:
        assert isinstance(conn._parser, Parser)
        assert conn.can_read() is False  # nothing sent, nothing waiting

        conn.send_command("PING")  # type: ignore[no-untyped-call]
        wait_until(conn.can_read, PROMPT_S, "the reply waiting")  # arrived, not read
        assert conn.read_response() == "PONG"
        assert conn.can_read() is False

        conn.send_command("CLIENT", "ID")  # type: ignore[no-untyped-call]
        redis.Redis.from_url(redis_url).client_kill_filter(_id=conn.read_response())
        with pytest.raises(redis.ConnectionError):
            # The server closed it: not a connection to hand out.
            wait_until(conn.can_read, PROMPT_S, "the closed connection seen")
    finally:
        client.connection_pool.release(conn)
    assert client.ping() is True  # the pool replaced it


#: Run under gevent, as the hub's subscriber runs: a wait for a message lets the other
#: greenlets run, ends when one arrives, and still tells a closed connection.
_UNDER_GEVENT = """
import gevent.monkey
gevent.monkey.patch_all()
import sys, gevent, redis
from qrlogin.engine import Parser

url = sys.argv[1]
client = redis.Redis.from_url(url, parser_class=Parser, decode_responses=True)
pubsub = client.pubsub()
pubsub.subscribe("qrlogin-test-wait")
assert pubsub.get_message(timeout=5)["type"] == "subscribe"
conn = pubsub.connection
ticks = []
ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(1000)])
assert conn.can_read(timeout=0.3) is False  # nothing came
assert ticks, "the wait blocked the other greenlets"
gevent.spawn_later(0.2, client.publish, "qrlogin-test-wait", "hello")
assert conn.can_read(timeout=30) is True
assert conn.can_read(timeout=0) is True  # read from the socket, then buffered by hiredis
assert pubsub.get_message()["data"] == "hello"
assert conn.can_read(timeout=0) is False
ticker.kill()
host, port = conn._sock.getsockname()[:2]
redis.Redis.from_url(url).client_kill_filter(_type="pubsub", addr=f"{host}:{port}")
try:
    conn.can_read(timeout=30)
except redis.ConnectionError:
    pass  # the server closed it
else:
    raise AssertionError("a closed subscriber connection was taken for a message")
"""


def _run_under_gevent(script: str, redis_url: str, seconds: float) -> None:
    """Run ``script`` in a Python process of its own (it patches with gevent first)."""
    done = subprocess.run(
        [sys.executable, "-c", script, redis_url], cwd=ROOT, capture_output=True, text=True,
        timeout=margin(seconds), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_a_subscriber_waits_under_gevent(redis_url: str) -> None:
    _run_under_gevent(_UNDER_GEVENT, redis_url, 60)


#: The hub's subscriber, under gevent, with its rest made an hour long: it looks at its
#: socket when a message comes or its channels change, not on a clock.
_RESTING = """
import gevent.monkey
gevent.monkey.patch_all()
import sys, gevent, redis
from qrlogin import hub as hubs
from qrlogin.engine import Parser
from qrlogin.topology import Single

url = sys.argv[1]
hubs.REST_S = 3600.0
looks = []
get_message = redis.client.PubSub.get_message
def counted(self, *args, **kwargs):
    looks.append(1)
    return get_message(self, *args, **kwargs)
redis.client.PubSub.get_message = counted
client = redis.Redis.from_url(url, decode_responses=True)
subscriber = lambda: redis.Redis.from_url(url, parser_class=Parser, decode_responses=True)
hub = hubs.Hub(Single(subscriber), lambda channels: [1] * len(channels))

def until(check, what):
    for _ in range(3000):
        if check():
            return
        gevent.sleep(0.01)
    raise AssertionError(what)

def subscribed(channel):
    return client.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1] == 1

with hub.watch("qrlogin-test-rest-a", 1) as a:
    until(lambda: subscribed("qrlogin-test-rest-a"), "the first channel subscribed")
    gevent.sleep(0.5)
    before = len(looks)
    gevent.sleep(1.5)
    assert len(looks) - before <= 1, f"{len(looks) - before} looks while nothing happened"
    client.spublish("qrlogin-test-rest-a", "not an event: read the store again")
    assert a.wait(30), "a message did not wake the subscriber"
    assert a.take() == (None, True)
    with hub.watch("qrlogin-test-rest-b", 1) as b:
        until(lambda: subscribed("qrlogin-test-rest-b"), "a new waiter's channel subscribed")
        client.spublish("qrlogin-test-rest-b", "again")
        assert b.wait(30)
    until(lambda: not subscribed("qrlogin-test-rest-b"), "the channel left unsubscribed")
hub.shutdown()
until(lambda: not any(s.running for s in hub._shards.values()), "the subscriber ended")
"""


def test_the_hub_rests_until_a_message_or_a_change(redis_url: str) -> None:
    _run_under_gevent(_RESTING, redis_url, 120)
