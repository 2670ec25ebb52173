"""The Redis connections' check for an unread reply (the pool's, the hub's subscriber), against
a real Redis."""

from __future__ import annotations

import pytest
import redis

from qrlogin.pool import Parser
from tests.live import PROMPT_S, wait_until


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
