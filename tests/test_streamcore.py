"""The stream rules (``qrlogin.streamcore``), driven directly: no gevent, no Redis."""

from __future__ import annotations

import math

import pytest

from qrlogin import streamcore as core
from qrlogin.config import RECHECK_S
from qrlogin.models import EXPIRE, FINAL, SCANNED, SUCCESS, WAIT, Snapshot
from qrlogin.streamcore import Action, Gone

NOW = 1_000_000  # a wall clock: the states' deadlines are near it


def state(version: int, status: str = WAIT, expire: int = NOW + 120) -> Snapshot:
    return Snapshot({"id": "q", "status": status, "expire": expire}, version=version)


def test_a_newer_state_is_sent_and_remembered() -> None:
    seen = core.Seen(state(1))
    assert core.on_event(seen, state(2, SCANNED)) is Action.SEND
    assert (seen.version, seen.done) == (2, False)


@pytest.mark.parametrize("version", [0, 1])
def test_an_older_or_the_same_state_is_not_sent_again(version: int) -> None:
    seen = core.Seen(state(1))
    assert core.on_event(seen, state(version)) is Action.NONE
    assert seen.version == 1


def test_the_same_state_with_a_later_deadline_moves_the_deadline_only() -> None:
    seen = core.Seen(state(1, expire=NOW + 10))
    assert core.on_event(seen, state(1, expire=NOW + 60)) is Action.NONE
    assert seen.expire == NOW + 60
    # An older state moves nothing, not even the deadline.
    assert core.on_event(seen, state(0, expire=NOW + 999)) is Action.NONE
    assert seen.expire == NOW + 60


@pytest.mark.parametrize("status", sorted(FINAL))
def test_a_final_state_is_the_last_and_nothing_follows(status: str) -> None:
    seen = core.Seen(state(1))
    assert core.on_event(seen, state(3, status)) is Action.LAST
    assert seen.done
    assert core.on_event(seen, state(4, SCANNED)) is Action.NONE
    assert not core.must_read(seen, NOW + 999, resync=True)


def test_a_stream_that_starts_final_is_done() -> None:
    assert core.Seen(state(2, SUCCESS)).done
    # What is final is the caller's to say: a session's stream ends on its own statuses.
    assert not core.Seen(state(2, SUCCESS), final=frozenset({"ended"})).done
    seen = core.Seen(state(1, "active"), final=frozenset({"ended"}))
    assert core.on_event(seen, state(2, "ended"), final=frozenset({"ended"})) is Action.LAST


def test_the_store_is_read_at_the_deadline_or_when_the_hub_asks() -> None:
    seen = core.Seen(state(1, expire=NOW + 5))
    assert not core.must_read(seen, NOW)
    assert core.must_read(seen, NOW, resync=True)
    assert core.must_read(seen, NOW + 5)


def test_what_a_read_gives() -> None:
    seen = core.Seen(state(1, expire=NOW))
    assert core.on_read(seen, Gone.UNAVAILABLE) is Action.RETRY
    assert not seen.done
    # Read past the deadline by our clock, but Redis has not expired it yet: again soon.
    assert core.on_read(seen, state(1, expire=NOW)) is Action.NONE
    assert core.overdue(seen, NOW + 1)
    assert core.on_read(seen, state(2, EXPIRE, expire=NOW)) is Action.LAST
    assert not core.overdue(seen, NOW + 1)
    gone = core.Seen(state(1))
    assert core.on_read(gone, Gone.MISSING) is Action.END
    assert gone.done


def test_the_first_heartbeat_falls_where_the_draw_puts_it_in_the_first_interval() -> None:
    assert core.first_beat(100.0, 15, draw=0.0) == 115.0
    assert core.first_beat(100.0, 15, draw=0.5) == 107.5
    assert 100.0 < core.first_beat(100.0, 15, draw=0.999999) < 100.001
    assert core.first_beat(100.0, None, draw=0.5) == math.inf  # no heartbeats


def test_heartbeats_keep_their_cadence_even_when_the_stream_fell_behind() -> None:
    assert core.next_beat(due=100.0, now=100.2, every=15) == 115.0
    # Behind: the missed beats are skipped, and the next keeps the stream's own cadence.
    assert core.next_beat(due=100.0, now=131.0, every=15) == 145.0
    assert core.next_beat(due=100.0, now=115.0, every=15) == 130.0
    assert core.next_beat(due=100.0, now=114.9, every=15) == 115.0


def test_streams_that_fell_behind_together_do_not_beat_together_after() -> None:
    # A late driver handles many streams at one ``now``; their beats stay spread.
    dues = [100.0 + n * 0.5 for n in range(30)]  # due over 15 s
    later = {core.next_beat(due, now=140.0, every=15) for due in dues}
    assert len(later) == len(dues)
    assert max(later) - min(later) == max(dues) - min(dues)
    assert all(140.0 < beat <= 155.0 for beat in later)


def test_the_pause_ends_at_the_first_thing_due() -> None:
    # The heartbeat first, then the end of a long poll, then the state's deadline.
    assert core.pause(NOW + 60, NOW, beat_due=5.0, until=math.inf, now=0.0) == 5.0
    assert core.pause(NOW + 60, NOW, beat_due=core.NEVER, until=3.0, now=0.0) == 3.0
    assert core.pause(NOW + 2, NOW, beat_due=core.NEVER, until=core.NEVER, now=0.0) == 2.0
    # Past the deadline by our clock: never a busy loop, a look every RECHECK_S.
    assert core.pause(NOW - 1, NOW, beat_due=core.NEVER, until=core.NEVER, now=0) == RECHECK_S
    assert core.pause(NOW + 60, NOW, beat_due=-1.0, until=core.NEVER, now=0.0) == 0.0
