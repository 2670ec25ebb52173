"""What the hub delivers to: a ``Waiter`` per client waiting in a greenlet, or any
``Listener`` (a stream parked in the lot is one)."""

from __future__ import annotations

from typing import Any, Protocol

import gevent.event

from qrlogin.messages import Published


class Listener(Protocol):
    """What the hub delivers a channel's events to: its owner keeps ``version`` at the
    newest state it has."""

    channel: str
    version: int

    def _push(self, event: Published) -> None: ...

    def _wake(self) -> None: ...

    def _close(self) -> None: ...


class Waiter:
    """One client waiting on one channel: the newest event seen, and whether to re-read.

    ``version`` is the newest state version its owner has; the owner keeps it current.
    """

    __slots__ = ("_event", "channel", "closed", "latest", "poked", "resync", "version")

    def __init__(self, channel: str, version: int, event: Any = None) -> None:
        self.channel = channel
        self.version = version
        self.latest: Published | None = None
        self.resync = False
        self.closed = False
        self.poked = False  # its client's socket became readable: perhaps it went away
        # Waiters of one client (a stream of many QRs) may share one event.
        self._event = event if event is not None else gevent.event.Event()

    def wait(self, timeout: float | None) -> bool:
        """Block until something happens or ``timeout`` passes; True when something did."""
        fired = bool(self._event.wait(timeout))
        self._event.clear()
        return fired

    def take(self) -> tuple[Published | None, bool]:
        """The newest event and the re-read flag, both reset."""
        latest, resync = self.latest, self.resync
        self.latest, self.resync = None, False
        return latest, resync

    def _push(self, event: Published) -> None:
        if self.latest is None or event.snapshot.version > self.latest.snapshot.version:
            self.latest = event
        self._event.set()

    def poke(self) -> None:
        """Wake the owner to look at its client's socket (from an io watcher)."""
        self.poked = True
        self._event.set()

    def _wake(self) -> None:
        self.resync = True
        self._event.set()

    def _close(self) -> None:
        self.closed = True
        self._event.set()
