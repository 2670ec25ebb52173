"""Waiting on a QR (or a session, a user's notices) in a greenlet: the driver of
``qrlogin.streamcore`` behind every stream that keeps its greenlet, and the long poll.

``follow`` yields every newer state of a channel as the hub delivers it (or the store,
when the core says to read it), ``follow_many`` the same for several channels of one
connection. Both also watch the client's socket, to free its slot as soon as it leaves.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import random
import socket
import ssl
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager

from qrlogin import streamcore as core
from qrlogin.engine import UNAVAILABLE_ERRORS
from qrlogin.exceptions import Forbidden, NotFound
from qrlogin.hub import Hub
from qrlogin.messages import Published
from qrlogin.models import FINAL, Snapshot
from qrlogin.streamcore import Action, Gone
from qrlogin.waiters import Waiter


class Signal(enum.Enum):
    """What ``follow`` yields when there is no new state."""

    #: ``tick_s`` passed with nothing new (the stream sends its heartbeat).
    TICK = "tick"
    #: The process is stopping: the waiter should tell its client to come back.
    CLOSING = "closing"


def follow(
    hub: Hub,
    channel: str,
    first: Snapshot,
    read: Callable[[], Snapshot],
    *,
    final: frozenset[str] = FINAL,
    tick_s: float | None = None,
    wait_s: float | None = None,
    client: socket.socket | None = None,
) -> Generator[Published | Signal, None, None]:
    """Yield each state behind ``channel`` newer than ``first`` (read at ``first.version``),
    until a status in ``final``: the rules are ``qrlogin.streamcore``'s, this drives them
    from a greenlet.

    Also yields ``Signal.TICK`` every ``tick_s`` without news (the first anywhere in the
    first interval: ``streamcore.first_beat``), and ``Signal.CLOSING``
    (then ends) when the hub shuts down. Ends after a final status, after ``wait_s``,
    when the state is gone or no longer the caller's, or as soon as ``client`` (the
    connection, when the server gives it) is closed by the browser.
    ``read`` reads the store.
    """
    now = time.monotonic()
    until = core.NEVER if wait_s is None else now + wait_s
    beat = core.first_beat(now, tick_s, random.random())  # noqa: S311
    seen = core.Seen(first, final)
    with hub.watch(channel, first.version) as waiter, _watch_client(client, waiter) as unwatch:
        while not seen.done:
            if time.monotonic() >= until:
                return
            waiter.wait(core.pause(seen.expire, time.time(), beat, until, time.monotonic()))
            stop = _interrupted(waiter, client, unwatch)
            if stop is not None:
                yield from stop
                return
            action, event = _step(seen, waiter, read, final)
            if action is Action.END:
                return
            if event is not None:
                yield event
            elif time.monotonic() >= beat:
                beat = core.next_beat(beat, time.monotonic(), tick_s or core.NEVER)
                yield Signal.TICK


def follow_many(
    hub: Hub,
    first: dict[str, Snapshot],
    read: Callable[[str], Snapshot],
    *,
    final: frozenset[str] = FINAL,
    tick_s: float | None = None,
    client: socket.socket | None = None,
) -> Generator[tuple[str, Published | None] | Signal, None, None]:
    """``follow`` for several channels on one client connection (a browser's tabs share
    one stream), with one heartbeat: yields ``(channel, newer state)``, or
    ``(channel, None)`` when a state is gone or no longer the caller's. Ends when every
    channel reached a status in ``final`` (or is gone). ``read(channel)`` reads the store."""
    import gevent.event

    beat = core.first_beat(time.monotonic(), tick_s, random.random())  # noqa: S311
    seen = {channel: core.Seen(snapshot, final) for channel, snapshot in first.items()}
    news = gevent.event.Event()  # every waiter of this client sets the same one
    with contextlib.ExitStack() as stack:
        waiters = {
            channel: stack.enter_context(hub.watch(channel, snapshot.version, news))
            for channel, snapshot in first.items()
        }
        live = [c for c, s in seen.items() if not s.done]
        if not live:
            return
        any_waiter = waiters[live[0]]
        unwatch = stack.enter_context(_watch_client(client, any_waiter))
        while live:
            soonest = min(seen[c].expire for c in live)
            any_waiter.wait(core.pause(soonest, time.time(), beat, core.NEVER, time.monotonic()))
            stop = _interrupted(any_waiter, client, unwatch)
            if stop is not None:
                yield from stop
                return
            delivered = False
            for channel in list(live):
                action, event = _step(
                    seen[channel], waiters[channel], functools.partial(read, channel), final
                )
                if action is Action.END:
                    yield channel, None
                elif event is not None:
                    delivered = True
                    yield channel, event
                if seen[channel].done:
                    live.remove(channel)
            if not delivered and time.monotonic() >= beat:
                beat = core.next_beat(beat, time.monotonic(), tick_s or core.NEVER)
                yield Signal.TICK


def _step(
    seen: core.Seen, waiter: Waiter, read: Callable[[], Snapshot], final: frozenset[str]
) -> tuple[Action, Published | None]:
    """One wake of a waiter: what the hub brought it, or the store's state when the core
    says to read; the action, and the event to yield for SEND and LAST."""
    event, resync = waiter.take()
    if core.must_read(seen, time.time(), resync):
        result = read_store(read)
        action = core.on_read(seen, result, final)
        event = Published(result) if isinstance(result, Snapshot) else None
    elif event is not None:
        action = core.on_event(seen, event.snapshot, final)
    else:
        action = Action.NONE
    if action in (Action.SEND, Action.LAST):
        waiter.version = seen.version
        return action, event
    return action, None


def read_store(read: Callable[[], Snapshot]) -> Snapshot | Gone:
    """``read()``, with what makes it fail said as the core takes it."""
    try:
        return read()
    except (NotFound, Forbidden):
        return Gone.MISSING
    except UNAVAILABLE_ERRORS:
        return Gone.UNAVAILABLE  # the hub wakes the waiter again once Redis is back


def _interrupted(
    waiter: Waiter, client: socket.socket | None, unwatch: Callable[[], None]
) -> list[Signal] | None:
    """What ends the wait before any news: the process stopping (``[CLOSING]``), the
    client gone (``[]``); None to go on."""
    if waiter.closed:
        return [Signal.CLOSING]
    if waiter.poked:
        waiter.poked = False
        if client is not None and _went_away(client):
            return []
        unwatch()  # it sent something instead (pipelined): stop looking
    return None


@contextmanager
def _watch_client(
    client: socket.socket | None, waiter: Waiter | None
) -> Iterator[Callable[[], None]]:
    """Poke ``waiter`` when its client's socket turns readable: a browser that goes away
    closes it, and its slot is freed at once rather than at the next write. Yields the
    function that stops the watching."""
    if client is None or waiter is None:
        yield lambda: None
        return
    import gevent

    watcher = gevent.get_hub().loop.io(client.fileno(), 1)
    watcher.start(waiter.poke)
    try:
        yield watcher.stop
    finally:
        watcher.stop()
        watcher.close()


def is_tls(sock: socket.socket) -> bool:
    """Whether ``sock`` speaks TLS (the standard library's or gevent's TLS socket)."""
    import gevent.ssl

    return isinstance(sock, ssl.SSLSocket | gevent.ssl.SSLSocket)


def _went_away(client: socket.socket) -> bool:
    """True when the peer closed the connection (it is readable and at its end)."""
    try:
        if not is_tls(client):
            return client.recv(1, socket.MSG_PEEK) == b""
        # TLS cannot peek, and what made the socket readable may be a TLS record with no
        # data in it: read without waiting. A browser that leaves sends close_notify or
        # just closes, and both read as the end.
        timeout = client.gettimeout()
        client.settimeout(0)
        try:
            return client.recv(1) == b""
        except (ssl.SSLWantReadError, BlockingIOError, TimeoutError):
            return False
        finally:
            client.settimeout(timeout)
    except OSError:
        return True
