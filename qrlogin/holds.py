"""Connections this process holds open (SSE streams and held long polls), counted per QR,
per browser binding and per client IP, each with a cap.

What a flood of held connections exhausts is a worker's connection slots, so the counts
are kept per process, with no Redis round trip: an address can hold up to the cap in
each worker. A request over a cap gets 429 ``SLOW_DOWN`` before its stream starts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from qrlogin.exceptions import SlowDown
from qrlogin.metrics import HELD

#: What one held connection counts against: (kind, value) pairs.
Held = tuple[tuple[str, str], ...]
#: When a refused browser should try again (seconds).
RETRY_AFTER_S = 5


class Holds:
    """The held connections of this process; ``0`` as a cap means no cap."""

    def __init__(self, per_qr: int, per_binding: int, per_ip: int) -> None:
        self.caps = {"qr": per_qr, "binding": per_binding, "ip": per_ip}
        self.counts: Counter[tuple[str, str]] = Counter()

    def acquire(self, qr_id: str | None, binding: str | None, ip: str) -> Callable[[], None]:
        """Count one more held connection; the function that releases it, once.

        Raises ``SlowDown`` when any of the three is at its cap. A stream that is not a
        QR's (a session's, a user's) counts against its address only.
        """
        keys = self.take(qr_id, binding, ip)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.give_back(keys)

        return release

    def take(self, qr_id: str | None, binding: str | None, ip: str) -> Held:
        """``acquire`` without the function: what ``give_back`` needs, once. A parked
        stream keeps this (a tuple of strings, which the garbage collector skips)."""
        named = (("qr", qr_id), ("binding", binding), ("ip", ip))
        keys = tuple((kind, value) for kind, value in named if value is not None)
        for kind, value in keys:
            cap = self.caps[kind]
            if cap and self.counts[(kind, value)] >= cap:
                raise SlowDown(
                    RETRY_AFTER_S,
                    f"too many open connections for this {kind.replace('qr', 'QR code')}; "
                    "close some (one stream per QR code is enough)",
                )
        for key in keys:
            self.counts[key] += 1
        HELD.inc()
        return keys

    def give_back(self, keys: Held) -> None:
        """Count one held connection less (what ``take`` gave)."""
        HELD.dec()
        for key in keys:
            self.counts[key] -= 1
            if self.counts[key] <= 0:
                del self.counts[key]

    @contextmanager
    def hold(self, qr_id: str, binding: str, ip: str) -> Iterator[None]:
        release = self.acquire(qr_id, binding, ip)
        try:
            yield
        finally:
            release()
