"""Connections this process holds open (SSE streams and held long polls), counted per QR,
per browser binding, per client address, per login session and per user, each with a
cap, and all together against the process's file descriptors.

What a flood of held connections exhausts is a worker's connection slots, so the counts
are kept per process, with no Redis round trip: an address can hold up to the cap in
each worker. A request over a cap gets 429 ``SLOW_DOWN`` before its stream starts. When
the process's held connections come near its descriptor limit, new streams get 503 with
``Retry-After`` instead, keeping a reserve of descriptors for ordinary requests (and for
the browsers to come back on another worker).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from qrlogin.exceptions import SlowDown, Unavailable
from qrlogin.metrics import HELD, HELD_LIMIT, STREAMS_REFUSED

#: What one held connection counts against: (kind, value) pairs.
Held = tuple[tuple[str, str], ...]
#: When a refused browser should try again (seconds).
RETRY_AFTER_S = 5


def descriptor_budget(limit: int) -> int:
    """How many connections a process with ``limit`` file descriptors may hold open: all
    but a reserve of a tenth (at least 256) for ordinary requests, Redis and the rest."""
    return max(0, limit - max(256, limit // 10))


_WORDS = {
    "qr": "QR code", "binding": "browser", "ip": "address", "session": "session",
    "user": "user",
}  # fmt: skip


class Holds:
    """The held connections of this process; ``0`` as a cap means no cap. ``most`` bounds
    them all together (the descriptor budget), whatever the other caps say."""

    def __init__(
        self,
        per_qr: int,
        per_binding: int,
        per_ip: int,
        *,
        per_session: int = 0,
        per_user: int = 0,
        most: int = 0,
    ) -> None:
        self.caps = {
            "qr": per_qr, "binding": per_binding, "ip": per_ip,
            "session": per_session, "user": per_user,
        }  # fmt: skip
        self.most = most
        HELD_LIMIT.set(most)
        self.total = 0
        self.counts: Counter[tuple[str, str]] = Counter()

    def release_of(self, keys: Held) -> Callable[[], None]:
        """The function that gives back what ``take`` counted, once (a stream's response
        calls it when it ends)."""
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.give_back(keys)

        return release

    def take(
        self,
        qr_id: str | None,
        binding: str | None,
        ip: str,
        *,
        session: str | None = None,
        user: str | None = None,
    ) -> Held:
        """Count one more held connection: what ``give_back`` (or ``release_of``) needs,
        once. A parked stream keeps this (a tuple of strings, which the garbage collector
        skips).

        Raises ``SlowDown`` when any count it adds to is at its cap, ``Unavailable`` when
        the process is at its descriptor budget. A session's stream counts against its
        session and its user, the notices against the user.
        """
        if self.most and self.total >= self.most:
            STREAMS_REFUSED.labels("descriptors").inc()
            raise Unavailable("this server holds as many connections as it may; try again")
        named = (
            ("qr", qr_id), ("binding", binding), ("ip", ip), ("session", session),
            ("user", user),
        )  # fmt: skip
        keys = tuple((kind, value) for kind, value in named if value is not None)
        for kind, value in keys:
            cap = self.caps[kind]
            if cap and self.counts[(kind, value)] >= cap:
                STREAMS_REFUSED.labels(kind).inc()
                raise SlowDown(
                    RETRY_AFTER_S,
                    f"too many open connections for this {_WORDS[kind]}; "
                    "close some (one stream per QR code, one per session is enough)",
                )
        for key in keys:
            self.counts[key] += 1
        self.total += 1
        HELD.inc()
        return keys

    def give_back(self, keys: Held) -> None:
        """Count one held connection less (what ``take`` gave)."""
        HELD.dec()
        self.total -= 1
        for key in keys:
            self.counts[key] -= 1
            if self.counts[key] <= 0:
                del self.counts[key]

    @contextmanager
    def hold(self, qr_id: str, binding: str, ip: str) -> Iterator[None]:
        release = self.release_of(self.take(qr_id, binding, ip))
        try:
            yield
        finally:
            release()
