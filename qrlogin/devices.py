"""The phone's view of the user's logins: list the live sessions, end one or all, and a
stream of notices (a new login, a login ended) for the signed-in user."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator

from flask import Blueprint, Response, request

from qrlogin.auth import signed_in_user
from qrlogin.browser import client_group, client_socket
from qrlogin.envelope import ok
from qrlogin.exceptions import SessionNotFound
from qrlogin.keys import Keys
from qrlogin.limits import limiter, limits_off, step_limit, user_key
from qrlogin.messages import Published
from qrlogin.services import services
from qrlogin.sse import event_stream, frames
from qrlogin.waiting import follow

bp = Blueprint("devices", __name__)

#: What session ids look like (``secrets.token_urlsafe``); anything else is 404.
SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{16,64}\Z")
#: The notice stream's opening event.
READY_EVENT = "ready"
#: What notice ids look like (Redis stream ids), for Last-Event-ID.
NOTICE_ID_RE = re.compile(r"[0-9]{1,20}-[0-9]{1,20}\Z")
#: The largest part of a Redis stream id (an unsigned 64-bit number).
MAX_STREAM_ID_PART = 2**64 - 1


def is_notice_id(text: str) -> bool:
    """Whether ``text`` can be a notice id: two parts that Redis takes (twenty digits may
    be past 64 bits). Anything else is a fresh start, as no Last-Event-ID is."""
    if not NOTICE_ID_RE.match(text):
        return False
    return all(int(part) <= MAX_STREAM_ID_PART for part in text.split("-"))


@bp.get("/v1/accounts/sessions")
def list_sessions() -> Response:
    user = signed_in_user()
    sessions = services().sessions.of_user(user.id)
    return ok({"sessions": [s.view for s in sessions]})


@bp.delete("/v1/accounts/sessions/<sid>")
@limiter.limit(step_limit, key_func=user_key, exempt_when=limits_off)
def end_session(sid: str) -> Response:
    """End one of the user's sessions; another user's is 404, never 403."""
    user = signed_in_user()
    svc = services()
    if not SESSION_ID_RE.match(sid):
        raise SessionNotFound()
    # Sessions are kept under their user: another user's id is simply not found here.
    return ok({"session": svc.sessions.end(sid, user.id, "revoked").view})


@bp.post("/v1/accounts/sessions/end_all")
@limiter.limit(step_limit, key_func=user_key, exempt_when=limits_off)
def end_all_sessions() -> Response:
    user = signed_in_user()
    svc = services()
    ended = [s.view for s in svc.sessions.end_all(user.id, "revoked")]
    return ok({"ended": len(ended), "sessions": ended})


@bp.get("/v1/accounts/events")
def user_events() -> Response:
    """Server-Sent Events for the signed-in user (``Authorization: Bearer``, as native
    apps send it): ``ready`` at once, then ``session_created`` and ``session_ended``, each
    with the session. Event ids are notice ids; a reconnect with ``Last-Event-ID`` gets
    what it missed."""
    user = signed_in_user()
    svc = services()
    sessions = svc.sessions
    raw = request.headers.get("Last-Event-ID", "").strip()
    cursor = raw if is_notice_id(raw) else sessions.last_notice_id(user.id)
    first = sessions.notices_version(user.id)
    read = functools.partial(sessions.notices_version, user.id)
    updates = follow(
        svc.hub,
        Keys.user_channel(user.id),
        first,
        read,
        tick_s=svc.settings.sse_heartbeat_s,
        client=client_socket(request),
    )
    last = [cursor]

    def notices(_: Published | None = None) -> Iterator[str]:
        for notice in sessions.notices_since(user.id, last[0]):
            last[0] = notice.id
            data = json.dumps(notice.session, separators=(",", ":"))
            yield f"event: {notice.type}\nid: {notice.id}\ndata: {data}\n\n"

    def body() -> Iterator[str]:
        # The opening: the stream is live from here (no id: it moves no Last-Event-ID).
        opening = json.dumps({"user_id": user.id, "after": cursor}, separators=(",", ":"))
        yield f"event: {READY_EVENT}\ndata: {opening}\n\n"
        yield from notices()  # what a reconnecting client missed
        yield from frames(None, resumed=True, updates=updates, each=notices)

    # Counted last: nothing can fail between here and the response that releases it.
    held = svc.holds.take(None, None, client_group(request), user=user.id)
    return event_stream(body(), svc.holds.release_of(held))
