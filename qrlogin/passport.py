"""The browser's poll and one-time redemption, its session (who is logged in, logout,
the session's events), and token introspection for the main application."""

from __future__ import annotations

import contextlib
import functools
import hmac
from typing import Any

from flask import Blueprint, Response, g, request

from qrlogin import admission
from qrlogin.auth import SESSION_COOKIE, bearer_token, logged_in, login_token
from qrlogin.browser import (
    actor,
    bindings,
    clear_cookie,
    client_group,
    client_socket,
    cookie_name,
    requester,
    rotated_secret,
    set_bind_cookie,
    set_cookie,
)
from qrlogin.config import MAX_WAIT_S
from qrlogin.envelope import ok
from qrlogin.exceptions import BadRequest, SessionEnded, SessionNotFound, Unauthorized
from qrlogin.inputs import check_qr_id, form_or_json_field, int_field, json_body, string_field
from qrlogin.keys import Keys
from qrlogin.limits import (
    limiter,
    limits_off,
    owner_or_limits_off,
    poll_key,
    poll_limit,
    refused_budget,
)
from qrlogin.messages import Published
from qrlogin.models import STATUSES, TERMINAL, GuestResult, User
from qrlogin.services import services
from qrlogin.sessions import LOST, SESSION_EVENT, SESSION_FINAL
from qrlogin.sse import event_stream, frames, last_event_id, no_more_events
from qrlogin.waiting import follow

bp = Blueprint("passport", __name__)


def _counted_poll(response: Response) -> bool:
    """The owner's answered polls count; a long poll that was held (see ``guest``) does
    not, and neither does a refused one (``was_refused`` counts those per IP)."""
    return response.status_code == 200 and not g.get("long_poll_held", False)


@bp.post("/v1/passport/guest")
@limiter.limit(poll_limit, key_func=poll_key, exempt_when=limits_off, deduct_when=_counted_poll)
@refused_budget(exempt_when=owner_or_limits_off)
def guest() -> Response:
    svc = services()
    body = json_body()
    qr_id = check_qr_id(string_field(body, "code", max_chars=64))
    wait_s = int_field(body, "wait", 0, MAX_WAIT_S) or 0
    since = string_field(body, "since", required=False, max_chars=32)
    if since is not None and since not in STATUSES:
        raise BadRequest("since must be one of the contract's statuses")
    bind, prev = bindings(request)
    caller = actor(request)
    result = svc.store.guest(qr_id, bind, caller, prev=prev)
    baseline = since or result.snapshot.status
    if wait_s and _unchanged(result, baseline):
        g.long_poll_held = True
        admission.waiting()
        read = functools.partial(svc.store.read, qr_id, bind, prev=prev)
        updates = follow(
            svc.hub,
            Keys.channel(qr_id),
            result.snapshot,
            read,
            wait_s=wait_s,
            client=client_socket(request),
        )
        with svc.holds.hold(qr_id, bind, caller.ip), contextlib.closing(updates):
            for update in updates:
                if isinstance(update, Published):
                    break  # a newer state (each transition changes the status): answer it
        result = svc.store.guest(qr_id, bind, caller, prev=prev)

    data = {k: v for k, v in result.snapshot.view.items() if k != "id"}
    data["interval"] = svc.settings.poll_interval_s
    token = None
    if result.login is not None:
        token = open_session(result.login)
        data["token"] = token
    response = ok(data)
    if token is not None:
        name = cookie_name(request, SESSION_COOKIE)
        set_cookie(response, request, name, token, svc.settings.login_token_max_age_s)
        # A new binding after each login: whoever learned the old one (a planted or
        # copied cookie) cannot bind this browser's next QR to it. A QR of the previous
        # binding (another tab's, shown before that login) logs in without renewing again.
        if not result.by_previous:
            set_bind_cookie(response, request, rotated_secret(request))
    return response


def open_session(login: dict[str, Any]) -> str:
    """A session for a redeemed login, with the redeeming browser's context; its token."""
    svc = services()
    browser = requester(request)
    user = User(str(login["sub"]), str(login["name"]), login.get("avatar") or None)
    session = svc.sessions.create(
        user,
        browser,
        svc.locator.locate(browser.ip),
        qr_id=str(login["qr"]),
        platform=str(login["platform"]),
    )
    return svc.tokens.mint_login({**login, "sid": session.view["id"]})


def _unchanged(result: GuestResult, since: str) -> bool:
    return result.login is None and result.snapshot.status == since and since not in TERMINAL


@bp.get("/v1/passport/me")
def me() -> Response:
    login, session = logged_in()
    user = login.user
    return ok(
        {
            "user": {"id": user.id, "name": user.name, "avatar": user.avatar},
            "qr_id": login.qr_id,
            "platform": login.platform,
            "issued_at": login.issued_at,
            "session": session.view,
        }
    )


@bp.post("/v1/passport/logout")
def logout() -> Response:
    """End the caller's session and clear its cookie; repeating it is harmless."""
    login = login_token()
    svc = services()
    try:
        session = svc.sessions.end(login.sid, login.user.id, "logout")
    except SessionNotFound:
        raise SessionEnded(data={"reason": LOST}) from None
    response = ok({"session": session.view})
    clear_cookie(response, request, cookie_name(request, SESSION_COOKIE))
    return response


@bp.get("/v1/passport/session/events")
def session_events() -> Response:
    """The caller's session as Server-Sent Events: its state now, and its end."""
    svc = services()
    login = login_token()
    try:
        first = svc.sessions.read(login.sid, login.user.id, touch=True)
    except SessionNotFound:
        return no_more_events()
    if first.status in SESSION_FINAL:
        return no_more_events()  # it ended already: EventSource stops reconnecting
    read = functools.partial(svc.sessions.read_or_lost, login.sid, login.user.id, first)
    updates = follow(
        svc.hub,
        Keys.session_channel(login.user.id, login.sid),
        first,
        read,
        final=SESSION_FINAL,
        tick_s=svc.settings.sse_heartbeat_s,
        client=client_socket(request),
    )
    resumed = last_event_id() == first.version
    body = frames(first, resumed=resumed, updates=updates, event=SESSION_EVENT)
    # Counted last: nothing can fail between here and the response that releases it.
    held = svc.holds.take(None, None, client_group(request), session=login.sid, user=login.user.id)
    return event_stream(body, svc.holds.release_of(held))


@bp.post("/v1/passport/introspect")
def introspect() -> Response:
    """RFC 7662 token introspection for the main application (service credential)."""
    svc = services()
    key = svc.settings.introspect_key
    if not key:
        raise Unauthorized("introspection is not configured: set QRLOGIN_INTROSPECT_KEY")
    if not hmac.compare_digest(bearer_token().encode(), key.encode()):
        raise Unauthorized("send the service credential as 'Authorization: Bearer <key>'")
    token = form_or_json_field("token")
    try:
        login = svc.tokens.check_login(token)
        session = svc.sessions.check(login.sid, login.user.id)
    except (Unauthorized, SessionEnded, SessionNotFound):
        return ok({"active": False})
    view = session.view
    return ok(
        {
            "active": True,
            "token_type": "login",
            "sub": login.user.id,
            "name": login.user.name,
            "sid": login.sid,
            "iat": login.issued_at,
            "exp": view["expire"],
            "platform": login.platform,
        }
    )
