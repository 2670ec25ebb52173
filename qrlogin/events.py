"""The browser's Server-Sent Events stream of one QR's status."""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import Callable, Generator, Iterator

from flask import Blueprint, Response, request
from flask_sse import Message

from qrlogin.browser import bound_digest, client_ip, client_socket
from qrlogin.config import SSE_RETRY_MS
from qrlogin.inputs import check_qr_id
from qrlogin.messages import EVENT_TYPE, Published
from qrlogin.metrics import DELIVERY
from qrlogin.models import Snapshot
from qrlogin.services import services
from qrlogin.store import Keys
from qrlogin.waiting import Signal, follow

bp = Blueprint("events", __name__)

#: On shutdown, browsers are told to come back after a random delay in this range (ms).
SHUTDOWN_RETRY_MS = (250, 2000)
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


@bp.get("/v1/accounts/qrcode/<qr_id>/events")
def stream(qr_id: str) -> Response:
    svc = services()
    check_qr_id(qr_id)
    bind = bound_digest(request)
    first = svc.store.read(qr_id, bind)  # 403, 404 or 503 before the stream starts
    seen = last_event_id()
    if seen is not None and first.final_version and seen >= first.final_version:
        # The client saw a final state: nothing more concerns it.
        return no_more_events()
    read = functools.partial(svc.store.read, qr_id, bind)
    updates = follow(
        svc.hub,
        Keys.channel(qr_id),
        first,
        read,
        tick_s=svc.settings.sse_heartbeat_s,
        client=client_socket(request),
    )
    body = frames(first, resumed=seen == first.version, updates=updates)
    # Counted last (429 before the stream): nothing can fail between here and the
    # response that releases it.
    return event_stream(body, svc.holds.acquire(qr_id, bind, client_ip(request)))


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
        if resumed or first is None:
            yield f"retry: {SSE_RETRY_MS}\n\n"
        else:
            yield frame(first, retry=True, event=event)
        for update in updates:
            if update is Signal.TICK:
                yield HEARTBEAT
            elif update is Signal.CLOSING:
                yield f"retry: {random.randint(*SHUTDOWN_RETRY_MS)}\n: reconnect\n\n"  # noqa: S311
            elif isinstance(update, Published):
                yield from (each(update) if each else [frame(update.snapshot, event=event)])
                if update.at_ms:
                    DELIVERY.observe(max(0.0, time.time() - update.at_ms / 1000))
