"""QR streams parked in the process's lot: once a stream's headers and opening are
written, no greenlet holds it.

A waiting browser costs a greenlet (its saved stack), the request's read buffer and the
WSGI objects for as long as it waits, though almost all of that time nothing happens.
Under the stream worker (``qrlogin.worker``) the QR stream instead writes its response
head and opening itself, takes the connection's file descriptor from the server, and
leaves a small ``Parked`` record here. From then on the lot serves it:

- the hub delivers the QR's events to the record, which writes each frame at once;
- one greenlet sends every stream's heartbeat from a queue (all streams share the
  interval, so the queue stays in order), and re-reads the store at a QR's deadline;
- one epoll set, watched by a single gevent watcher, tells when a browser went away
  (EPOLLRDHUP) or a slow one can take the rest of a frame (EPOLLOUT).

The bytes on the wire are those of the greenlet's stream (``qrlogin.sse``): chunked for
HTTP/1.1, to the close for HTTP/1.0, and ``Connection: close`` either way, since the
connection is never handed back to the server for another request.
"""

from __future__ import annotations

import collections
import errno
import heapq
import logging
import math
import os
import select
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.monkey

from qrlogin.config import RECHECK_S
from qrlogin.engine import UNAVAILABLE_ERRORS
from qrlogin.exceptions import Forbidden, NotFound
from qrlogin.holds import Held, Holds
from qrlogin.hub import Hub
from qrlogin.messages import Published
from qrlogin.metrics import PARKED_STREAMS
from qrlogin.models import FINAL, Snapshot
from qrlogin.sse import HEARTBEAT, delivered, frame, reconnect_hint
from qrlogin.store import Keys
from qrlogin.waiting import is_tls

log = logging.getLogger(__name__)

#: What the app returns to the worker for a parked stream: the connection is not its.
PARKED = object()
#: Where the stream view leaves its ``Parkable`` for the middleware.
ENVIRON_KEY = "qrlogin.parkable"
#: Bytes a stream may have unsent (a browser that stopped reading) before it is ended.
MAX_PENDING = 64 * 1024
#: How long a finishing stream may take to send its last bytes before it is ended
#: (seconds): a browser that reads nothing more must not keep its connection.
FINISHING_S = 10.0
#: The longest the lot's greenlet sleeps between looks at its clocks (seconds), and the
#: shortest: heartbeats and deadlines due within it go out together, not one wake each.
TICK_S = 1.0
BATCH_S = 0.2
#: Heartbeats written in a row before the lot's greenlet lets the worker's other greenlets
#: run (about a millisecond of writes): a request or an event that arrives meanwhile waits
#: for one group, not for all the beats that fell due together.
BEAT_GROUP = 32
#: The pause between groups: any positive time puts the greenlet behind the next look at
#: the sockets (``gevent.sleep(0)`` may run it again first).
BEAT_PAUSE_S = 0.0001
#: What the lot watches on each connection: the browser closing it, or an error.
_GONE = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_LAST_CHUNK = b"0\r\n\r\n"

#: The system's close(): gevent's defers each close to its loop, for descriptors it
#: watches; the lot's are watched by its own epoll set only.
_system_close = gevent.monkey.get_original("os", "close")
#: Whether this process runs under the stream worker (set once, by the worker).
_under_stream_worker: list[bool] = []


class Read(Protocol):
    """``Store.read``: a QR's state as the browser bound by ``bind`` may see it."""

    def __call__(self, qr_id: str, bind: str, *, prev: str = "") -> Snapshot: ...


def enable() -> None:
    """Called by the stream worker: this process hands parkable streams to the lot."""
    _under_stream_worker.append(True)


def possible(environ: dict[str, Any]) -> bool:
    """Whether this request's stream can be parked: under the stream worker, a GET with
    the connection at hand, and that connection plain TCP. The lot writes bytes to the
    descriptor itself; on a TLS connection (gunicorn serving ``--certfile``) they must go
    through the TLS layer, so such a stream keeps its greenlet."""
    sock = environ.get("gunicorn.socket")
    return (
        bool(_under_stream_worker)
        and environ.get("REQUEST_METHOD") == "GET"
        and isinstance(sock, socket.socket)
        and not is_tls(sock)
    )


@dataclass(frozen=True, slots=True)
class Parkable:
    """What the stream view decided: the opening to write, the QR and whose it is (as
    ``Store.read`` takes them), and the hold the stream counts against."""

    opening: str
    first: Snapshot
    qr_id: str
    bind: str
    prev: str
    held: Held


class Parked:
    """One parked stream: its connection's descriptor and where its QR stands. The hub
    delivers to it as to a ``Waiter``.

    Only strings and numbers besides the lot: a full garbage collection stops the whole
    worker, and it visits every object that can hold others. A closure or a bound
    method per stream made about ten such objects each, and with 12,000 streams a full
    collection took 30 to 80 ms.
    """

    __slots__ = (
        "bind", "channel", "chunked", "due", "ended", "expire", "fd", "finishing", "held",
        "lot", "pending", "prev", "qr_id", "version",
    )  # fmt: skip

    def __init__(self, lot: Lot, fd: int, parkable: Parkable, chunked: bool, due: float) -> None:
        self.lot = lot
        self.fd = fd
        self.chunked = chunked  # HTTP/1.1: each write is a chunk, as gunicorn's would be
        self.qr_id = parkable.qr_id
        self.bind = parkable.bind
        self.prev = parkable.prev
        self.held = parkable.held
        self.channel = Keys.channel(parkable.qr_id)
        self.version = parkable.first.version
        self.expire = parkable.first.expire
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


class Lot:
    """The parked streams of this process. Start it after forking, with the hub."""

    def __init__(self, hub: Hub, holds: Holds, read: Read, tick_s: float) -> None:
        self._hub = hub
        self._holds = holds
        self._read = read
        self._tick_s = tick_s
        self._by_fd: dict[int, Parked] = {}
        self._beats: collections.deque[Parked] = collections.deque()
        # Streams to read again, by the whole second of their deadline (a list a second,
        # not an entry a stream), and those seconds in order.
        self._deadlines: dict[int, list[Parked]] = {}
        self._seconds: list[int] = []
        self._rereads: dict[Parked, None] = {}
        self._epoll: Any = None  # the original select.epoll (gevent's patching hides it)
        self._wake: Any = None
        self._reread_ready: Any = None

    @property
    def ending(self) -> int:
        """How many streams the stopping process ends (its reconnect hints spread them)."""
        return self._hub.ending

    def start(self) -> None:
        if self._epoll is not None:
            return
        self._epoll = gevent.monkey.get_original("select", "epoll")()
        self._wake = gevent.event.Event()
        self._reread_ready = gevent.event.Event()
        watcher = gevent.get_hub().loop.io(self._epoll.fileno(), 1)
        watcher.start(self._wake.set)
        gevent.spawn(self._serve)
        gevent.spawn(self._reader)

    def park(self, sock: socket.socket, head: bytes, parkable: Parkable, chunked: bool) -> None:
        """Write ``head`` and the opening on ``sock``, then take its descriptor from the
        server: from here on the lot serves the stream."""
        self.start()
        try:
            sock.sendall(head + _body(parkable.opening.encode(), chunked))
        except OSError:
            self._holds.give_back(parkable.held)
            return
        fd = sock.detach()  # the server's socket object forgets it; the connection stays
        stream = Parked(self, fd, parkable, chunked, time.monotonic() + self._tick_s)
        if self._hub.closing:
            stream._close()
            self._end(stream)
            return
        self._by_fd[fd] = stream
        PARKED_STREAMS.inc()
        self._epoll.register(fd, _GONE)
        self._beats.append(stream)
        self._schedule(stream)
        self._hub.attach(stream)

    # What the hub and the reader call: never blocks.

    def deliver(self, stream: Parked, event: Published) -> None:
        """Write ``event`` if it is newer than what the stream has; end after a final one."""
        snapshot = event.snapshot
        if stream.ended or snapshot.version < stream.version:
            return
        if snapshot.expire != stream.expire:
            stream.expire = snapshot.expire
            self._schedule(stream)
        if snapshot.version == stream.version:
            return  # the same state, perhaps with a later deadline
        stream.version = snapshot.version
        if snapshot.status in FINAL:
            self.finish(stream, frame(snapshot))
        else:
            self.send(stream, frame(snapshot))
        delivered(event)

    def reread(self, stream: Parked) -> None:
        """Read the stream's state from the store soon (the hub asks, or its deadline)."""
        if not stream.ended:
            self._rereads[stream] = None
            self._reread_ready.set()

    def send(self, stream: Parked, text: str) -> None:
        self._send(stream, _body(text.encode(), stream.chunked))

    def finish(self, stream: Parked, text: str = "") -> None:
        """Send ``text``, the stream's last words, with the body's end in the same write
        (the browser wakes once); end the stream once they are sent."""
        data = _body(text.encode(), stream.chunked) if text else b""
        if stream.chunked:
            data += _LAST_CHUNK
        if data:
            self._send(stream, data)
        if stream.pending:
            stream.finishing = True  # its last words wait on a browser that reads slowly:
            self._schedule(stream, time.time() + FINISHING_S)  # not forever
        else:
            self._end(stream)

    # Inside the lot.

    def _send(self, stream: Parked, data: bytes) -> None:
        if stream.ended or stream.finishing:
            return
        if stream.pending:
            stream.pending += data
            if len(stream.pending) > MAX_PENDING:
                self._end(stream)  # the browser stopped reading
            return
        try:
            sent = os.write(stream.fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._end(stream)
            return
        if sent < len(data):
            stream.pending = data[sent:]
            self._epoll.modify(stream.fd, _GONE | select.EPOLLOUT)

    def _flush(self, stream: Parked) -> None:
        try:
            sent = os.write(stream.fd, stream.pending)
        except BlockingIOError:
            return
        except OSError:
            self._end(stream)
            return
        stream.pending = stream.pending[sent:]
        if stream.pending:
            return
        if stream.finishing:
            self._end(stream)
        else:
            self._epoll.modify(stream.fd, _GONE)

    def _end(self, stream: Parked) -> None:
        if stream.ended:
            return
        stream.ended = True
        if self._by_fd.get(stream.fd) is stream:
            del self._by_fd[stream.fd]
            PARKED_STREAMS.dec()
            try:
                self._epoll.unregister(stream.fd)
            except OSError as e:
                if e.errno not in (errno.EBADF, errno.ENOENT):
                    raise
        try:
            _system_close(stream.fd)
        except OSError:
            log.debug("closing a parked stream's connection failed", exc_info=True)
        self._hub.detach(stream)
        self._holds.give_back(stream.held)

    def _schedule(self, stream: Parked, when: float | None = None) -> None:
        """Read the stream's QR again at ``when``, by default its deadline (the store
        turns it expired)."""
        second = math.ceil(stream.expire if when is None else when)
        streams = self._deadlines.get(second)
        if streams is None:
            streams = self._deadlines[second] = []
            heapq.heappush(self._seconds, second)
        streams.append(stream)

    def _serve(self) -> None:
        """The lot's greenlet: connections that went away or can take more, heartbeats,
        deadlines."""
        while True:
            self._wake.wait(self._pause())
            self._wake.clear()
            for fd, events in self._epoll.poll(0, 4096):
                stream = self._by_fd.get(fd)
                if stream is None:
                    continue
                if events & _GONE:
                    self._end(stream)
                elif events & select.EPOLLOUT:
                    self._flush(stream)
            self._beat(time.monotonic())
            self._due(time.time())

    def _pause(self) -> float:
        now = time.monotonic()
        beat = self._beats[0].due - now if self._beats else TICK_S
        deadline = self._seconds[0] - time.time() if self._seconds else TICK_S
        return max(BATCH_S, min(TICK_S, beat, deadline))

    def _beat(self, now: float) -> None:
        beats = self._beats
        sent = 0
        while beats and beats[0].due <= now:
            stream = beats.popleft()
            if stream.ended:
                continue
            self._send(stream, _HEARTBEATS[stream.chunked])
            stream.due = max(stream.due + self._tick_s, now)
            beats.append(stream)
            sent += 1
            if sent % BEAT_GROUP == 0:
                gevent.sleep(BEAT_PAUSE_S)

    def _due(self, now: float) -> None:
        while self._seconds and self._seconds[0] <= now:
            for stream in self._deadlines.pop(heapq.heappop(self._seconds)):
                self.reread(stream)  # an entry for an older deadline costs one read at most

    def _reader(self) -> None:
        """Reads the store for the streams that asked: the one greenlet of the lot that
        waits on Redis."""
        while True:
            self._reread_ready.wait()
            self._reread_ready.clear()
            batch, self._rereads = self._rereads, {}
            self._read_all(batch)

    def _read_all(self, streams: Iterable[Parked]) -> None:
        for stream in streams:
            if stream.ended:
                continue
            if stream.finishing:
                self._end(stream)  # its FINISHING_S ran out with bytes still unsent
                continue
            try:
                snapshot = self._read(stream.qr_id, stream.bind, prev=stream.prev)
            except (NotFound, Forbidden):
                self.finish(stream)  # gone, or no longer this browser's
                continue
            except UNAVAILABLE_ERRORS:
                self._schedule(stream, time.time() + RECHECK_S)  # the hub wakes it too
                continue
            self.deliver(stream, Published(snapshot))
            if not stream.ended and time.time() >= stream.expire:
                # Past its deadline by our clock, not yet by Redis': look again soon.
                self._schedule(stream, time.time() + RECHECK_S)


def wsgi(app: Callable[..., Any], lot: Callable[[], Lot]) -> Callable[..., Any]:
    """Wrap ``app``: a response the stream view marked parkable (200, its ``Parkable`` in
    the environ) is written here and parked in ``lot()``, and the worker is told so."""

    def parking_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        held: list[tuple[str, list[tuple[str, str]]]] = []

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if ENVIRON_KEY in environ and status.startswith("200") and exc_info is None:
                held.append((status, headers))
                return _no_write
            environ.pop(ENVIRON_KEY, None)
            return start_response(status, headers, exc_info)

        body = app(environ, hold)
        parkable = environ.pop(ENVIRON_KEY, None)
        if not held or not isinstance(parkable, Parkable):
            return body
        status, headers = held[0]
        chunked = environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
        lines = [f"HTTP/1.1 {status}"]
        lines += [f"{name}: {value}" for name, value in headers if name.lower() not in _HOP]
        lines += ["Transfer-Encoding: chunked"] if chunked else []
        lines += ["Connection: close", "", ""]
        head = "\r\n".join(lines).encode("latin-1")
        lot().park(environ["gunicorn.socket"], head, parkable, chunked)
        return PARKED

    return parking_app


#: Headers the lot writes itself.
_HOP = frozenset({"connection", "transfer-encoding", "content-length"})


def _body(data: bytes, chunked: bool) -> bytes:
    """``data`` as the body's next bytes: one chunk, or as it is (HTTP/1.0, to the close)."""
    return b"%x\r\n%b\r\n" % (len(data), data) if chunked else data


_HEARTBEATS = {chunked: _body(HEARTBEAT.encode(), chunked) for chunked in (False, True)}


def _no_write(data: bytes) -> None:
    raise RuntimeError("a parked stream's body is written by the lot")
