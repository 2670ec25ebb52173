"""The lot, in this process: streams parked on socket pairs, on the tests' Redis."""

from __future__ import annotations

import itertools
import os
import socket
import time

import gevent
import gevent.monkey
import pytest

from qrlogin import lot as lots
from qrlogin import parking
from qrlogin.models import EXPIRE, NO_ACTOR, SCANNED, SUCCESS, User
from qrlogin.parked import Parked
from qrlogin.services import Services
from tests.ingevent.conftest import BIND, new_qr, until
from tests.live import margin

ALICE = User("u-1", "Alice", None)


def park(svc: Services, server: socket.socket, chunked: bool = True) -> tuple[str, Parked]:
    """Park a new QR's stream on ``server``; its id and record."""
    first = new_qr(svc)
    qr_id = first.view["id"]
    held = svc.holds.take(qr_id, BIND, "127.0.0.1")
    svc.lot.park(server, b"", parking.Parkable(": hi\n\n", first, qr_id, BIND, "", held), chunked)
    (stream,) = (s for s in svc.lot._by_fd.values() if s.qr_id == qr_id)
    return qr_id, stream


def received(browser: socket.socket) -> bytes:
    """What the browser's end has to read now."""
    os.set_blocking(browser.fileno(), False)
    try:
        return os.read(browser.fileno(), 65536)  # a gevent socket's recv would wait
    except BlockingIOError:
        return b""


def read_until(browser: socket.socket, marker: bytes) -> bytes:
    got = b""

    def found() -> bool:
        nonlocal got
        got += received(browser)
        return marker in got

    until(found, f"{marker!r} on the stream")
    return got


def test_events_are_written_and_the_final_one_ends_the_stream(
    svc: Services, pair: tuple[socket.socket, socket.socket]
) -> None:
    server, browser = pair
    qr_id, stream = park(svc, server)
    assert read_until(browser, b": hi") == b"6\r\n: hi\n\n\r\n"
    svc.store.step(qr_id, "SCAN", ALICE, NO_ACTOR)
    assert SCANNED.encode() in read_until(browser, b"id:2")
    svc.store.step(qr_id, "VERIFY", ALICE, NO_ACTOR)
    last = read_until(browser, b"0\r\n\r\n")
    assert SUCCESS.encode() in last and last.endswith(b"0\r\n\r\n")
    until(lambda: stream.ended, "the stream ended")
    assert svc.holds.total == 0 and svc.hub.waiting == 0
    assert browser.recv(1) == b""  # the lot closed the connection


def test_a_stream_whose_browser_left_is_ended(
    svc: Services, pair: tuple[socket.socket, socket.socket]
) -> None:
    server, browser = pair
    _, stream = park(svc, server)
    browser.close()
    until(lambda: stream.ended, "the stream ended when its browser left")
    assert svc.holds.total == 0 and svc.hub.waiting == 0


def test_at_its_deadline_the_store_is_read_and_the_qr_expires(
    svc: Services, pair: tuple[socket.socket, socket.socket]
) -> None:
    server, browser = pair
    qr_id, stream = park(svc, server, chunked=False)
    svc.redis.hset(f"qrlogin:qr:{{{qr_id}}}", "expire", int(time.time()))  # due now
    stream.expire = int(time.time())
    svc.lot._schedule(stream)
    got = read_until(browser, EXPIRE.encode())
    assert b"\r\n" not in got  # HTTP/1.0: no chunks, the body runs to the close
    until(lambda: stream.ended, "the stream ended")


def test_a_qr_that_is_gone_ends_its_stream(
    svc: Services, pair: tuple[socket.socket, socket.socket]
) -> None:
    server, browser = pair
    qr_id, stream = park(svc, server)
    svc.redis.delete(f"qrlogin:qr:{{{qr_id}}}")
    svc.lot.reread(stream)
    assert read_until(browser, b"0\r\n\r\n").endswith(b"0\r\n\r\n")
    until(lambda: stream.ended, "the stream ended")


def test_heartbeats_due_together_go_out_in_groups(
    svc: Services, pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heartbeats that fall due together are written a group at a time, and the worker's
    other greenlets run between groups: a request or an event arriving then waits for a
    group, not for all of them. This greenlet, looking each time it runs, never finds
    more than two groups sent since its last look (in one run it would find them all)."""
    monkeypatch.setattr("qrlogin.lot.random.random", lambda: 0.0)  # first beats a whole interval on
    count = 8 * lots.BEAT_GROUP
    browsers = []
    for _ in range(count):  # parked in one go: their heartbeats fall due together
        server, browser = socket.socketpair()
        os.set_blocking(browser.fileno(), False)
        browsers.append(browser)
        park(svc, server)
    beaten = [False] * count
    seen = []
    deadline = time.monotonic() + margin(30)
    while not all(beaten) and time.monotonic() < deadline:
        for n, browser in enumerate(browsers):
            beaten[n] = beaten[n] or b"ping" in received(browser)
        seen.append(sum(beaten))
        gevent.sleep(0.0001)
    for browser in browsers:
        browser.close()
    assert seen[-1] == count
    jumps = [after - before for before, after in itertools.pairwise(seen)]
    assert max(jumps) <= 2 * lots.BEAT_GROUP, sorted(set(seen))


def test_streams_parked_together_beat_apart_and_stay_apart_after_a_stall(svc: Services) -> None:
    """Streams parked in one go get their first heartbeats across the interval, and a
    worker that could not run for longer than the interval (starved while thousands of
    browsers connect) leaves each stream on its own cadence: had the late beats started
    over from the moment they went out, they would go out together from then on."""
    every = svc.settings.sse_heartbeat_s
    browsers, streams = [], []
    for _ in range(64):
        server, browser = socket.socketpair()
        browsers.append(browser)
        streams.append(park(svc, server)[1])
    before = [s.due for s in streams]
    assert max(before) - min(before) > every / 2  # 64 at random: spread
    gevent.monkey.get_original("time", "sleep")(2.5 * every)  # the loop cannot run
    beaten = list(zip(streams, before, strict=True))
    until(lambda: all(s.due > due for s, due in beaten), "the late beats")
    after = [s.due for s in streams]
    for due, later in zip(before, after, strict=True):
        skipped = (later - due) / every
        assert skipped >= 2 and abs(skipped - round(skipped)) < 1e-6, (due, later)
    assert max(after) - min(after) > every / 2
    for browser in browsers:
        assert b"ping" in received(browser)
        browser.close()


def test_a_finishing_stream_that_is_not_read_is_ended(
    svc: Services, pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser that stopped reading gets its last words while bytes are still unsent,
    and is ended once FINISHING_S has passed, its hold given back."""
    monkeypatch.setattr(lots, "FINISHING_S", 0.5)
    server, browser = pair
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    browser.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    _, stream = park(svc, server)
    while not stream.pending:  # the browser reads nothing: the buffers fill
        svc.lot.send(stream, ": " + "x" * 500 + "\n\n")
    svc.lot.finish(stream, ": bye\n\n")
    assert stream.finishing and not stream.ended
    started = time.monotonic()
    until(lambda: stream.ended, "the finishing stream ended", 10)
    assert time.monotonic() - started >= 0.4
    assert svc.holds.total == 0
