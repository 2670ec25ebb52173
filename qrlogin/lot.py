"""The lot: the process's parked QR streams, served with no greenlet each.

Once a stream's head and opening are written (``qrlogin.parking``), the lot keeps a
small ``Parked`` record with the connection's descriptor, and drives the rules of
``qrlogin.streamcore`` for it:

- the hub delivers the QR's events to the record, which writes each frame at once;
- one greenlet sends every stream's heartbeat when due, and re-reads the store at a QR's
  deadline (both kept by time slot, ``Slots``);
- one epoll set, watched by a single gevent watcher, tells when a browser went away
  (EPOLLRDHUP) or a slow one can take the rest of a frame (EPOLLOUT).
"""

from __future__ import annotations

import errno
import functools
import heapq
import logging
import math
import random
import select
import socket
import time
from collections.abc import Iterable
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.monkey

from qrlogin import streamcore as core
from qrlogin.config import RECHECK_S
from qrlogin.holds import Holds
from qrlogin.hub import Hub
from qrlogin.messages import Published
from qrlogin.metrics import PARKED_STREAMS
from qrlogin.models import Snapshot
from qrlogin.parked import GONE, Parked
from qrlogin.parking import HEARTBEATS, LAST_CHUNK, Parkable, body
from qrlogin.sse import delivered, frame
from qrlogin.streamcore import Action
from qrlogin.waiting import read_store

log = logging.getLogger(__name__)

#: How long a finishing stream may take to send its last bytes before it is ended
#: (seconds): a browser that reads nothing more must not keep its connection.
FINISHING_S = 10.0
#: The longest the lot's greenlet sleeps between looks at its clocks (seconds), and the
#: shortest: heartbeats and deadlines due within it go out together, not one wake each.
TICK_S = 1.0
BATCH_S = 0.2
#: Heartbeats written in a row before the lot's greenlet lets the worker's other
#: greenlets run: a request or an event that arrives meanwhile waits for one group, not
#: for all the beats that fell due together.
BEAT_GROUP = 32
#: The pause between groups: any positive time puts the greenlet behind the next look at
#: the sockets (``gevent.sleep(0)`` may run it again first).
BEAT_PAUSE_S = 0.0001
#: The slots heartbeats are kept in (s), and deadlines (whole seconds of the wall clock).
BEAT_SLOT_S = 0.1
DEADLINE_SLOT_S = 1.0

#: The system's close(): gevent's defers each close to its loop, for descriptors it
#: watches; the lot's are watched by its own epoll set only.
_system_close = gevent.monkey.get_original("os", "close")


class Read(Protocol):
    """``Store.read``: a QR's state as the browser bound by ``bind`` may see it."""

    def __call__(self, qr_id: str, bind: str, *, prev: str = "") -> Snapshot: ...


class Slots:
    """Streams by the slot of a time they are due at (a list a slot, not an entry a
    stream, and those slots in order): each is taken at or after its time, and only once
    it is added again. An entry for a stream since ended is skipped by the taker."""

    def __init__(self, slot_s: float) -> None:
        self._slot_s = slot_s
        self._slots: dict[int, list[Parked]] = {}
        self._order: list[int] = []

    def add(self, stream: Parked, when: float) -> None:
        slot = math.ceil(when / self._slot_s)
        streams = self._slots.get(slot)
        if streams is None:
            streams = self._slots[slot] = []
            heapq.heappush(self._order, slot)
        streams.append(stream)

    def first(self) -> float:
        """When the earliest slot is due (``math.inf``: none)."""
        return self._order[0] * self._slot_s if self._order else math.inf

    def take(self, now: float) -> list[Parked]:
        """The streams of the earliest slot if it is due by ``now``, else none."""
        if self._order and self._order[0] * self._slot_s <= now:
            return self._slots.pop(heapq.heappop(self._order))
        return []


class Lot:
    """The parked streams of this process. Start it after forking, with the hub."""

    def __init__(self, hub: Hub, holds: Holds, read: Read, tick_s: float) -> None:
        self._hub = hub
        self._holds = holds
        self._read = read
        self._tick_s = tick_s
        self._by_fd: dict[int, Parked] = {}
        self._beats = Slots(BEAT_SLOT_S)  # by the monotonic clock
        self._deadlines = Slots(DEADLINE_SLOT_S)  # streams to read again, by the wall clock
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
            sock.sendall(head + body(parkable.opening.encode(), chunked))
        except OSError:
            self._holds.give_back(parkable.held)
            return
        fd = sock.detach()  # the server's socket object forgets it; the connection stays
        first = core.first_beat(time.monotonic(), self._tick_s, random.random())  # noqa: S311
        stream = Parked(self, fd, parkable, chunked, first)
        if self._hub.closing:
            stream._close()
            self._end(stream)
            return
        self._by_fd[fd] = stream
        PARKED_STREAMS.inc()
        self._epoll.register(fd, GONE)
        self._beats.add(stream, stream.due)
        self._schedule(stream)
        self._hub.attach(stream)

    # What the hub and the reader call: never blocks.

    def deliver(self, stream: Parked, event: Published) -> None:
        """Write ``event`` if it is newer than what the stream has; end after a final one."""
        if not stream.ended:
            expire = stream.expire
            self._act(stream, event, core.on_event(stream, event.snapshot), expire)

    def reread(self, stream: Parked) -> None:
        """Read the stream's state from the store soon (the hub asks, or its deadline)."""
        if not stream.ended:
            self._rereads[stream] = None
            self._reread_ready.set()

    def send(self, stream: Parked, text: str) -> None:
        self._send(stream, body(text.encode(), stream.chunked))

    def finish(self, stream: Parked, text: str = "") -> None:
        """Send ``text``, the stream's last words, with the body's end in the same write
        (the browser wakes once); end the stream once they are sent."""
        data = body(text.encode(), stream.chunked) if text else b""
        if stream.chunked:
            data += LAST_CHUNK
        if data:
            self._send(stream, data)
        if stream.pending:
            stream.finishing = True  # its last words wait on a browser that reads slowly:
            self._schedule(stream, time.time() + FINISHING_S)  # not forever
        else:
            self._end(stream)

    # Inside the lot.

    def _act(self, stream: Parked, event: Published, action: Action, expire: float) -> None:
        """Do what the core answered to ``event`` (its deadline was ``expire`` before)."""
        if stream.expire != expire:
            self._schedule(stream)  # read again at the new deadline
        if action is Action.SEND:
            self.send(stream, frame(event.snapshot))
        elif action is Action.LAST:
            self.finish(stream, frame(event.snapshot))
        else:
            return
        delivered(event)

    def _send(self, stream: Parked, data: bytes) -> None:
        if not (stream.ended or stream.finishing) and not stream.write(data, self._epoll):
            self._end(stream)  # the connection failed, or the browser stopped reading

    def _flush(self, stream: Parked) -> None:
        if not stream.flush(self._epoll) or (stream.finishing and not stream.pending):
            self._end(stream)

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
        self._deadlines.add(stream, stream.expire if when is None else when)

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
                if events & GONE:
                    self._end(stream)
                elif events & select.EPOLLOUT:
                    self._flush(stream)
            self._beat(time.monotonic())
            self._due(time.time())

    def _pause(self) -> float:
        beat = self._beats.first() - time.monotonic()
        deadline = self._deadlines.first() - time.time()
        return max(BATCH_S, min(TICK_S, beat, deadline))

    def _beat(self, now: float) -> None:
        sent = 0
        while due := self._beats.take(now):
            for stream in due:
                if stream.ended:
                    continue
                self._send(stream, HEARTBEATS[stream.chunked])
                stream.due = core.next_beat(stream.due, now, self._tick_s)
                self._beats.add(stream, stream.due)
                sent += 1
                if sent % BEAT_GROUP == 0:
                    gevent.sleep(BEAT_PAUSE_S)

    def _due(self, now: float) -> None:
        while due := self._deadlines.take(now):
            for stream in due:
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
            expire = stream.expire
            read = functools.partial(self._read, stream.qr_id, stream.bind, prev=stream.prev)
            result = read_store(read)
            action = core.on_read(stream, result)
            if action is Action.END:
                self.finish(stream)  # gone, or no longer this browser's
            elif action is Action.RETRY:
                self._schedule(stream, time.time() + RECHECK_S)  # the hub wakes it too
            elif isinstance(result, Snapshot):
                self._act(stream, Published(result), action, expire)
                if not stream.ended and core.overdue(stream, time.time()):
                    self._schedule(stream, time.time() + RECHECK_S)
