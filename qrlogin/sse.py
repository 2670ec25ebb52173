"""The browser streams' text and responses: the text shared by the streams a greenlet
serves and the streams parked in the process's lot (``qrlogin.lot``), and the streaming
responses of the views."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Generator, Iterator

from flask import Response, request
from flask_sse import Message

from qrlogin.config import SSE_RETRY_MS
from qrlogin.messages import EVENT_TYPE, Published
from qrlogin.metrics import DELIVERY
from qrlogin.models import Snapshot
from qrlogin.waiting import Signal

#: On shutdown, browsers are told to come back after a random delay in this range (ms),
#: widened for a worker that ends many streams: about RESUME_PER_S come back each second,
#: up to MAX_SPREAD_MS. Re-admitting a browser costs the other streams CPU time,
#: and a burst of them all at once would starve the stopping worker's own exit. For the
#: same reason none comes back before the worker has told them all: it ends about
#: ENDS_PER_S a second (a write and a close each), up to a quarter of MAX_SPREAD_MS.
SHUTDOWN_RETRY_MS = (250, 2000)
RESUME_PER_S = 1000
ENDS_PER_S = 10_000
MAX_SPREAD_MS = 20_000
HEARTBEAT = ": ping\n\n"


def frame(snapshot: Snapshot, retry: bool = False, event: str = EVENT_TYPE) -> str:
    """One event (``status`` unless said) in flask-sse's framing; never carries a token."""
    return str(
        Message(
            snapshot.view,
            type=event,
            id=snapshot.version,
            retry=SSE_RETRY_MS if retry else None,
        )
    )


def opening(first: Snapshot | None, *, resumed: bool, event: str = EVENT_TYPE) -> str:
    """What a stream starts with: ``first`` as an event, or only ``retry:`` when the
    client has it already (or there is none)."""
    if resumed or first is None:
        return f"retry: {SSE_RETRY_MS}\n\n"
    return frame(first, retry=True, event=event)


def reconnect_hint(ending: int = 0) -> str:
    """The last words of a stopping process that ends ``ending`` streams: come back after
    a random delay."""
    first = max(SHUTDOWN_RETRY_MS[0], min(MAX_SPREAD_MS // 4, ending * 1000 // ENDS_PER_S))
    spread = min(MAX_SPREAD_MS, max(SHUTDOWN_RETRY_MS[1], first + ending * 1000 // RESUME_PER_S))
    return f"retry: {random.randint(first, spread)}\n: reconnect\n\n"  # noqa: S311


def delivered(update: Published) -> None:
    """Count how long an event took from its transition to its stream."""
    if update.at_ms:
        DELIVERY.observe(max(0.0, time.time() - update.at_ms / 1000))


def event_stream(body: Iterator[str], release: Callable[[], None] = lambda: None) -> Response:
    """The streaming response, with the headers every stream has; ``release`` runs when
    the connection ends."""
    response = Response(
        body,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    response.call_on_close(release)
    return response


def no_more_events() -> Response:
    """204: EventSource stops reconnecting."""
    return Response(status=204, headers={"Cache-Control": "no-store"})


def last_event_id() -> int | None:
    """The version the client saw last (``Last-Event-ID``), if it sent a number."""
    raw = request.headers.get("Last-Event-ID", "").strip()
    return int(raw) if raw.isdigit() and len(raw) <= 18 else None


def signal_text(signal: Signal) -> str:
    """A heartbeat, or the reconnect hint of a stopping process."""
    return HEARTBEAT if signal is Signal.TICK else reconnect_hint()


def frames(
    first: Snapshot | None,
    *,
    resumed: bool,
    updates: Generator[Published | Signal, None, None],
    event: str = EVENT_TYPE,
    each: Callable[[Published], Iterator[str]] | None = None,
) -> Iterator[str]:
    """A stream's text: the opening (``first`` as an event, or only ``retry:`` when the
    client has it), then one event per update (or what ``each`` makes of it),
    heartbeats, and a reconnect hint when the process stops."""
    with contextlib.closing(updates):
        yield opening(first, resumed=resumed, event=event)
        for update in updates:
            if isinstance(update, Signal):
                yield signal_text(update)
            else:
                yield from (each(update) if each else [frame(update.snapshot, event=event)])
                delivered(update)
