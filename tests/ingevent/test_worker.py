"""The stream worker's server accepts a batch of the connections waiting at each turn of
its loop, whatever gunicorn asks of a server that shares its socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from qrlogin.worker import ACCEPT_BATCH, OwnSocketServer


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield sock


def test_a_turn_accepts_a_batch_though_gunicorn_set_one(listener: socket.socket) -> None:
    accepted: list[socket.socket] = []

    def spawn(*args: object) -> None:
        """gevent's spawn: the connection (socket, address) comes last."""
        connection = args[-1]
        assert isinstance(connection, tuple) and isinstance(connection[0], socket.socket)
        accepted.append(connection[0])

    server = OwnSocketServer(listener, handle=lambda *_: None, spawn=spawn)
    server.max_accept = 1  # what gunicorn's gevent worker sets when there are several
    clients = [socket.create_connection(listener.getsockname()) for _ in range(ACCEPT_BATCH + 4)]
    try:
        server.init_socket()
        server._do_read()  # a turn: what the loop calls when the socket is readable
        assert len(accepted) == ACCEPT_BATCH > 1
        server._do_read()  # the next turn: the rest
        assert len(accepted) == len(clients)
    finally:
        for sock in (*clients, *accepted):
            sock.close()
