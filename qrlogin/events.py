"""The browser's Server-Sent Events streams: one QR's status, or several QRs of one
browser on one connection (the SDK's tabs share it)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Generator, Iterator

from flask import Blueprint, Response, g, request
from flask_sse import Message

from qrlogin import parking
from qrlogin.browser import bindings, client_group, client_socket
from qrlogin.exceptions import BadRequest, Forbidden, NotFound
from qrlogin.inputs import check_qr_id
from qrlogin.keys import Keys
from qrlogin.limits import limits_off, refused_budget
from qrlogin.messages import EVENT_TYPE, Published
from qrlogin.models import FINAL, MAX_WATCHED, Snapshot
from qrlogin.services import services
from qrlogin.sse import (
    delivered,
    event_stream,
    frames,
    last_event_id,
    no_more_events,
    opening,
    signal_text,
)
from qrlogin.waiting import Signal, follow, follow_many

bp = Blueprint("events", __name__)

#: The event that tells a shared stream's client one of its QRs is not (or no longer) its.
GONE_EVENT = "gone"


@bp.get("/v1/accounts/qrcode/<qr_id>/events")
def stream(qr_id: str) -> Response:
    svc = services()
    check_qr_id(qr_id)
    bind, prev = bindings(request)
    first = svc.store.read(qr_id, bind, prev=prev)  # 403, 404 or 503 before the stream starts
    seen = last_event_id()
    if seen is not None and first.final_version and seen >= first.final_version:
        # The client saw a final state: nothing more concerns it.
        return no_more_events()
    read = functools.partial(svc.store.read, qr_id, bind, prev=prev)
    updates = follow(
        svc.hub,
        Keys.channel(qr_id),
        first,
        read,
        tick_s=svc.settings.sse_heartbeat_s,
        client=client_socket(request),
    )
    resumed = seen == first.version
    body = frames(first, resumed=resumed, updates=updates)
    # Counted last (429 before the stream): nothing can fail between here and the
    # response that releases it.
    held = svc.holds.take(qr_id, bind, client_group(request))
    if first.status not in FINAL:
        # The stream as the lot would serve it: where the connection allows, the
        # transport (qrlogin.parking) parks it once the head is written, the body above
        # is never read, and the lot gives the hold back.
        request.environ[parking.ENVIRON_KEY] = parking.Parkable(
            opening(first, resumed=resumed), first, qr_id, bind, prev, held
        )
    return event_stream(body, functools.partial(svc.holds.give_back, held))


@bp.get("/v1/accounts/qrcode/events")
@refused_budget(exempt_when=limits_off)
def shared_stream() -> Response:
    """The states of several QR codes of this browser on one stream: each one's state
    now, then its changes, each as ``status`` with the QR's ``id`` and ``version`` in the
    data; ``gone`` for a QR not found or not bound to this browser. Ends when every one
    is final or gone."""
    svc = services()
    ids = list(dict.fromkeys(i for i in request.args.get("ids", "").split(",") if i))
    if not 1 <= len(ids) <= MAX_WATCHED:
        raise BadRequest(f"ids must name 1 to {MAX_WATCHED} QR codes, comma-separated")
    for qr_id in ids:
        check_qr_id(qr_id)
    bind, prev = bindings(request)
    openings, first, of_channel = [], {}, {}
    for qr_id in ids:
        try:
            snapshot = svc.store.read(qr_id, bind, prev=prev)  # 503 before the stream starts
        except (NotFound, Forbidden) as gone:
            openings.append(gone_frame(qr_id, gone))
            g.refused_ids = g.get("refused_ids", 0) + 1  # spent as refused polls are
            continue
        openings.append(shared_frame(snapshot))
        first[Keys.channel(qr_id)] = snapshot
        of_channel[Keys.channel(qr_id)] = qr_id
    updates = follow_many(
        svc.hub, first, lambda channel: svc.store.read(of_channel[channel], bind, prev=prev),
        tick_s=svc.settings.sse_heartbeat_s, client=client_socket(request),
    )  # fmt: skip
    body = shared_frames(openings, updates, of_channel)
    held = svc.holds.take(None, bind, client_group(request))
    return event_stream(body, svc.holds.release_of(held))


def shared_frame(snapshot: Snapshot) -> str:
    """A QR's state on a shared stream: no ``id:`` line (one stream, many versions)."""
    return str(Message({**snapshot.view, "version": snapshot.version}, type=EVENT_TYPE))


def gone_frame(qr_id: str, why: NotFound | Forbidden) -> str:
    return str(Message({"id": qr_id, "code": why.code}, type=GONE_EVENT))


def shared_frames(
    openings: list[str],
    updates: Generator[tuple[str, Published | None] | Signal, None, None],
    of_channel: dict[str, str],
) -> Iterator[str]:
    with contextlib.closing(updates):
        yield opening(None, resumed=True)
        yield from openings
        for update in updates:
            if isinstance(update, Signal):
                yield signal_text(update)
            elif update[1] is None:
                yield gone_frame(of_channel[update[0]], NotFound())
            else:
                yield shared_frame(update[1].snapshot)
                delivered(update[1])
