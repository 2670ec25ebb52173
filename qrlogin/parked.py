"""A stream parked in the lot (``qrlogin.lot``): its connection's descriptor, what its
browser has seen (the stream core's ``Seen``), and the writes to its connection."""

from __future__ import annotations

import os
import select
from typing import TYPE_CHECKING, Any

from qrlogin import streamcore as core
from qrlogin.keys import Keys
from qrlogin.messages import Published
from qrlogin.parking import Parkable
from qrlogin.sse import reconnect_hint

if TYPE_CHECKING:
    from qrlogin.lot import Lot

#: Bytes a stream may have unsent (a browser that stopped reading) before it is ended.
MAX_PENDING = 64 * 1024
#: What the lot watches on each connection: the browser closing it, or an error.
GONE = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR


class Parked(core.Seen):
    """One parked stream: its connection's descriptor and what its browser has seen
    (the core's ``Seen``). The hub delivers to it as to a ``Waiter``.

    Only strings and numbers besides the lot: a full garbage collection stops the whole
    worker, and it visits every object that can hold others; a closure or a bound
    method per stream would add several such objects to each.
    """

    __slots__ = (
        "bind", "channel", "chunked", "due", "ended", "fd", "finishing", "held", "lot",
        "pending", "prev", "qr_id",
    )  # fmt: skip

    def __init__(self, lot: Lot, fd: int, parkable: Parkable, chunked: bool, due: float) -> None:
        super().__init__(parkable.first)
        self.lot = lot
        self.fd = fd
        self.chunked = chunked  # HTTP/1.1: each write is a chunk, as gunicorn's would be
        self.qr_id = parkable.qr_id
        self.bind = parkable.bind
        self.prev = parkable.prev
        self.held = parkable.held
        self.channel = Keys.channel(parkable.qr_id)
        self.due = due  # the next heartbeat (monotonic)
        self.pending = b""  # what the socket would not take yet
        self.finishing = False  # ends once ``pending`` is sent
        self.ended = False

    def _push(self, event: Published) -> None:
        self.lot.deliver(self, event)

    def _wake(self) -> None:
        self.lot.reread(self)

    def _close(self) -> None:
        self.lot.finish(self, reconnect_hint(self.lot.ending))

    def write(self, data: bytes, epoll: Any) -> bool:
        """Write ``data``, or keep what the socket does not take (``epoll`` then tells
        when it can take more); False when the stream must end: the connection failed,
        or more than MAX_PENDING bytes wait on a browser that stopped reading."""
        if self.pending:
            self.pending += data
            return len(self.pending) <= MAX_PENDING
        try:
            sent = os.write(self.fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False
        if sent < len(data):
            self.pending = data[sent:]
            epoll.modify(self.fd, GONE | select.EPOLLOUT)
        return True

    def flush(self, epoll: Any) -> bool:
        """Write what waits, now that the socket takes more; False when the connection
        failed."""
        try:
            sent = os.write(self.fd, self.pending)
        except BlockingIOError:
            return True
        except OSError:
            return False
        self.pending = self.pending[sent:]
        if not self.pending and not self.finishing:
            epoll.modify(self.fd, GONE)
        return True
