"""The command pool's connections: the check for an unread reply, against a real Redis."""

from __future__ import annotations

import time

import pytest
import redis

from qrlogin.engine import Parser


def _until(check: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("still not so after 5 s")


def test_check_sees_a_waiting_reply_and_a_closed_connection(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, parser_class=Parser, decode_responses=True)
    conn = client.connection_pool.get_connection()
    try:
        assert isinstance(conn._parser, Parser)
        assert conn.can_read() is False  # nothing sent, nothing waiting

        conn.send_command("PING")  # type: ignore[no-untyped-call]
        _until(conn.can_read)  # the reply arrived and was not read
        assert conn.read_response() == "PONG"
        assert conn.can_read() is False

        conn.send_command("CLIENT", "ID")  # type: ignore[no-untyped-call]
        redis.Redis.from_url(redis_url).client_kill_filter(_id=conn.read_response())
        with pytest.raises(redis.ConnectionError):
            _until(conn.can_read)  # the server closed it: not a connection to hand out
    finally:
        client.connection_pool.release(conn)
    assert client.ping() is True  # the pool replaced it
