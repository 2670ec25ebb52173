"""The greenlet driver (``qrlogin.waiting``): what ``follow`` and ``follow_many`` yield,
against a real hub and store."""

from __future__ import annotations

import functools
import time
from collections.abc import Generator

import gevent
import pytest

from qrlogin.keys import Keys
from qrlogin.messages import Published
from qrlogin.models import NO_ACTOR, SCANNED, SUCCESS, User
from qrlogin.services import Services
from qrlogin.waiting import Signal, follow, follow_many
from tests.ingevent.conftest import BIND, new_qr
from tests.live import PROMPT_S, margin

ALICE = User("u-1", "Alice", None)


def following(
    svc: Services, tick_s: float | None = None, wait_s: float | None = None
) -> tuple[str, Generator[Published | Signal, None, None]]:
    """A new QR's id, and ``follow`` on it."""
    first = new_qr(svc)
    qr_id = first.view["id"]
    read = functools.partial(svc.store.read, qr_id, BIND)
    updates = follow(svc.hub, Keys.channel(qr_id), first, read, tick_s=tick_s, wait_s=wait_s)
    return qr_id, updates


def test_follow_yields_each_newer_state_heartbeats_and_ends_after_the_final(
    svc: Services,
) -> None:
    qr_id, updates = following(svc, tick_s=0.2)
    got: list[Published | Signal] = []
    steps = iter(["SCAN", "VERIFY"])

    def next_step() -> None:
        gevent.sleep(0.5)
        svc.store.step(qr_id, next(steps), ALICE, NO_ACTOR)

    with gevent.Timeout(margin(PROMPT_S)):
        for update in updates:
            got.append(update)
            if isinstance(update, Published) or len(got) == 1:
                gevent.spawn(next_step)
    events = [u.snapshot for u in got if isinstance(u, Published)]
    assert [(s.version, s.status) for s in events] == [(2, SCANNED), (3, SUCCESS)]
    assert Signal.TICK in got  # heartbeats while nothing happened
    assert svc.hub.waiting == 0


def test_a_greenlet_streams_first_heartbeat_comes_where_the_draw_puts_it(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Drawn near the interval's start: the first TICK long before a whole 30 s interval.
    monkeypatch.setattr("qrlogin.waiting.random.random", lambda: 0.99)
    started = time.monotonic()
    _, updates = following(svc, tick_s=30)
    with gevent.Timeout(margin(PROMPT_S)):
        assert next(updates) is Signal.TICK
    assert time.monotonic() - started >= 0.29  # and not before it
    updates.close()


def test_a_long_poll_ends_after_its_wait_and_a_gone_state_ends_it_at_once(
    svc: Services,
) -> None:
    started = time.monotonic()
    qr_id, updates = following(svc, wait_s=0.5)
    assert list(updates) == []
    assert time.monotonic() - started >= 0.5
    qr_id, gone = following(svc, wait_s=30)
    svc.redis.delete(Keys.qr(qr_id))
    gevent.spawn_later(0.3, svc.redis.spublish, Keys.channel(qr_id), "re-read")
    with gevent.Timeout(margin(PROMPT_S)):
        assert list(gone) == []


def test_follow_many_reports_each_channel_and_a_gone_one(svc: Services) -> None:
    qrs = [new_qr(svc) for _ in range(3)]
    ids = [q.view["id"] for q in qrs]
    of_channel = {Keys.channel(i): i for i in ids}
    first = {Keys.channel(i): q for i, q in zip(ids, qrs, strict=True)}
    updates = follow_many(
        svc.hub, first, lambda channel: svc.store.read(of_channel[channel], BIND), tick_s=30
    )

    def happen() -> None:
        gevent.sleep(0.5)
        svc.store.step(ids[0], "SCAN", ALICE, NO_ACTOR)
        svc.store.step(ids[0], "VERIFY", ALICE, NO_ACTOR)
        svc.store.step(ids[1], "SCAN", ALICE, NO_ACTOR)
        svc.store.step(ids[1], "CANCEL", ALICE, NO_ACTOR)
        svc.redis.delete(Keys.qr(ids[2]))
        svc.redis.spublish(Keys.channel(ids[2]), "re-read")

    gevent.spawn(happen)
    got: list[tuple[str, int | None]] = []
    with gevent.Timeout(margin(PROMPT_S)):
        for update in updates:
            assert not isinstance(update, Signal)
            channel, event = update
            got.append((of_channel[channel], event.snapshot.version if event else None))
    # The final state of each (the newest wins: a state passed meanwhile may be skipped),
    # once, and the gone one as gone.
    finals = [g for g in got if g[1] != 2]
    assert sorted(finals, key=str) == sorted([(ids[0], 3), (ids[1], 3), (ids[2], None)], key=str)
    assert svc.hub.waiting == 0
