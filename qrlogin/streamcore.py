"""The rules of every stream, with no I/O: what to do with each thing that happens.

A stream (a QR's SSE stream, a long poll, a session's or a user's stream, a stream
parked in the lot) follows one channel whose states carry a version. For each stream
the core keeps what its browser has seen (``Seen``: the version, the state's
deadline, whether it ended), and for each input answers what the driver must do:

- an event from the hub (``on_event``): write it (``SEND``), write it and end after it
  (``LAST``, a final status), or nothing (older than what the browser has, or the same
  state again, perhaps with a later deadline);
- the clock (``must_read``, ``first_beat``, ``next_beat``, ``pause``): read the store
  when the hub asks for a re-read or the state's deadline passed (the store turns an
  overdue QR into QRCODE_EXPIRE), send a heartbeat when one is due, and how long to wait
  meanwhile;
- a store read (``on_read``): the state read is handled as an event; a state that is
  gone or no longer the caller's ends the stream (``END``); an unavailable Redis means
  trying again later (``RETRY``).

The drivers do the I/O: ``qrlogin.waiting`` (a greenlet per stream, one or several
channels) and ``qrlogin.lot`` (parked connections, one greenlet for all).
"""

from __future__ import annotations

import enum
import math

from qrlogin.config import RECHECK_S
from qrlogin.models import FINAL, Snapshot


class Action(enum.Enum):
    """What the driver does next."""

    #: Nothing: the input brought nothing the browser has not seen.
    NONE = "none"
    #: Write the state as an event.
    SEND = "send"
    #: Write the state as an event, the stream's last: it is final.
    LAST = "last"
    #: End the stream: its state is gone or no longer the caller's.
    END = "end"
    #: Redis did not answer: read again after ``RECHECK_S`` (or when the hub wakes it).
    RETRY = "retry"


class Gone(enum.Enum):
    """What a store read gave instead of a state."""

    #: The state is gone, or no longer the caller's (404, 403).
    MISSING = "missing"
    #: Redis did not answer.
    UNAVAILABLE = "unavailable"


class Seen:
    """What one stream's browser has seen of one channel: the newest version, the
    state's deadline (wall clock) and whether the stream ended after a final status.

    Slots and numbers only: the lot keeps one per parked stream (its ``Parked`` is one),
    and a full garbage collection visits every object that can hold others.
    """

    __slots__ = ("done", "expire", "version")

    def __init__(self, first: Snapshot, final: frozenset[str] = FINAL) -> None:
        self.version = first.version
        self.expire = first.expire
        self.done = first.status in final


def on_event(seen: Seen, snapshot: Snapshot, final: frozenset[str] = FINAL) -> Action:
    """A state arrived (from the hub or a read): what the browser must be sent."""
    if seen.done or snapshot.version < seen.version:
        return Action.NONE
    seen.expire = snapshot.expire
    if snapshot.version == seen.version:
        return Action.NONE  # the same state, perhaps with a later deadline
    seen.version = snapshot.version
    if snapshot.status in final:
        seen.done = True
        return Action.LAST
    return Action.SEND


def on_read(seen: Seen, result: Snapshot | Gone, final: frozenset[str] = FINAL) -> Action:
    """A store read returned: the state is handled as an event, a missing one ends the
    stream, an unavailable Redis is tried again."""
    if isinstance(result, Snapshot):
        return on_event(seen, result, final)
    if result is Gone.UNAVAILABLE:
        return Action.RETRY
    seen.done = True
    return Action.END


def must_read(seen: Seen, now: float, resync: bool = False) -> bool:
    """Whether to read the store: the hub asks (``resync``: a resubscription, a message
    it could not parse), or the state's deadline passed (``now``: wall clock)."""
    return not seen.done and (resync or now >= seen.expire)


def overdue(seen: Seen, now: float) -> bool:
    """After a read: the deadline passed by our clock but not yet by Redis' (the state
    read is not expired yet), so read again after ``RECHECK_S``."""
    return not seen.done and now >= seen.expire


def first_beat(now: float, every: float | None, draw: float) -> float:
    """When a stream opened at ``now`` sends its first heartbeat (monotonic clock): at a
    point of the first interval picked by ``draw`` (uniform in [0, 1), the driver's
    random draw), so that browsers that connect together (all of a worker's after a
    restart, a page full of tabs) are not pinged together, then or after. ``every``
    None: no heartbeats."""
    if every is None:
        return NEVER
    return now + every * (1.0 - draw)


def next_beat(due: float, now: float, every: float) -> float:
    """When the heartbeat after the one due at ``due`` is (monotonic clock): one
    ``every`` later, or, when the stream fell behind, the first such time after ``now``
    on its own cadence (the beats it missed are not sent). A driver late for many streams
    at once (a worker starved while thousands of browsers connect) thus leaves each where
    it was in the interval: had it started them all over from ``now``, their beats would
    go out together from then on, one burst an interval."""
    following = due + every
    if following > now:
        return following
    return due + (math.floor((now - due) / every) + 1) * every


def pause(seen_expire: float, wall: float, beat_due: float, until: float, now: float) -> float:
    """How long a driver waits for news (seconds): until the next heartbeat, the end of
    the wait (``until``) or the state's deadline, and never less than ``RECHECK_S``
    before a deadline (past it by our clock, not yet by Redis': look again soon).
    ``beat_due`` and ``until`` are monotonic (``math.inf`` for none), ``seen_expire``
    and ``wall`` the wall clock."""
    until_expiry = max(seen_expire - wall, RECHECK_S)
    return max(0.0, min(beat_due - now, until - now, until_expiry))


#: No heartbeat, no end of the wait.
NEVER = math.inf
