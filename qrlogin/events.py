"""The browser's Server-Sent Events stream of one QR's status."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

from flask import Blueprint, Response, request
from flask_sse import Message

from qrlogin.browser import bound_digest
from qrlogin.config import RECHECK_S, SSE_RETRY_MS
from qrlogin.engine import UNAVAILABLE_ERRORS
from qrlogin.exceptions import Forbidden, NotFound
from qrlogin.hub import Hub
from qrlogin.metrics import DELIVERY
from qrlogin.services import services
from qrlogin.store import SUCCESS, TERMINAL, Snapshot, Store, check_qr_id

bp = Blueprint("events", __name__)

#: Statuses after which a stream ends (the browser redeems SUCCESS at /v1/passport/guest).
FINAL = TERMINAL | {SUCCESS}
#: On shutdown, browsers are told to come back after a random delay in this range (ms).
SHUTDOWN_RETRY_MS = (250, 2000)


def frame(snapshot: Snapshot, retry: bool = False) -> str:
    """One ``event: status`` in flask-sse's framing; never carries a token."""
    return str(
        Message(
            snapshot.view,
            type="status",
            id=snapshot.version,
            retry=SSE_RETRY_MS if retry else None,
        )
    )


@bp.get("/v1/accounts/qrcode/<qr_id>/events")
def stream(qr_id: str) -> Response:
    svc = services()
    check_qr_id(qr_id)
    bind = bound_digest(request)
    first = svc.store.read(qr_id, bind)  # 403, 404 or 503 before the stream starts
    resumed = request.headers.get("Last-Event-ID", "").strip() == str(first.version)
    if resumed and first.status in FINAL:
        # Nothing more will come: 204 tells EventSource to stop reconnecting.
        return Response(status=204, headers={"Cache-Control": "no-store"})
    body = _events(
        svc.hub,
        svc.store,
        qr_id=qr_id,
        bind=bind,
        first=first,
        resumed=resumed,
        heartbeat_s=svc.settings.sse_heartbeat_s,
    )
    return Response(
        body,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _events(
    hub: Hub,
    store: Store,
    *,
    qr_id: str,
    bind: str,
    first: Snapshot,
    resumed: bool,
    heartbeat_s: int,
) -> Iterator[str]:
    with hub.watch(qr_id, first.version) as waiter:
        yield f"retry: {SSE_RETRY_MS}\n\n" if resumed else frame(first, retry=True)
        sent = first
        next_ping = time.monotonic() + heartbeat_s
        while sent.status not in FINAL:
            expire_in = int(sent.view["expire"]) - time.time()
            timeout = min(next_ping - time.monotonic(), max(expire_in, RECHECK_S))
            waiter.wait(max(timeout, 0.0))
            if waiter.closed:
                yield f"retry: {random.randint(*SHUTDOWN_RETRY_MS)}\n: reconnect\n\n"  # noqa: S311
                return
            latest, resync = waiter.take()
            current: Snapshot | None = None
            published_ms = 0  # when the event was made in Redis, if it came from the hub
            if resync or time.time() >= int(sent.view["expire"]):
                try:
                    current = store.read(qr_id, bind)
                except UNAVAILABLE_ERRORS:
                    current = None  # the hub wakes us again once Redis is back
                except (NotFound, Forbidden):
                    return
            elif latest is not None:
                current = Snapshot(latest[1], latest[0])
                published_ms = waiter.published_ms
            if current is not None and current.version > sent.version:
                yield frame(current)
                if published_ms:
                    DELIVERY.observe(max(0.0, time.time() - published_ms / 1000))
                sent = current
                waiter.version = current.version
            elif time.monotonic() >= next_ping:
                yield ": ping\n\n"
                next_ping = time.monotonic() + heartbeat_s
