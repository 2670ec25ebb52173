"""The browser's poll and one-time redemption, and who is logged in."""

from __future__ import annotations

import contextlib
import functools

from flask import Blueprint, Response, g, request

from qrlogin.auth import SESSION_COOKIE, logged_in
from qrlogin.browser import (
    actor,
    bound_digest,
    client_socket,
    new_browser_secret,
    set_bind_cookie,
    set_cookie,
)
from qrlogin.config import MAX_WAIT_S
from qrlogin.envelope import ok
from qrlogin.exceptions import BadRequest
from qrlogin.inputs import check_qr_id, int_field, json_body, string_field
from qrlogin.limits import (
    limiter,
    limits_off,
    poll_key,
    poll_limit,
    refused_key,
    refused_limit,
    was_refused,
)
from qrlogin.messages import Published
from qrlogin.models import STATUSES, TERMINAL, GuestResult
from qrlogin.services import services
from qrlogin.store import Keys
from qrlogin.waiting import follow

bp = Blueprint("passport", __name__)


def _counted_poll(response: Response) -> bool:
    """The owner's answered polls count; a long poll that was held (see ``guest``) does
    not, and neither does a refused one (``was_refused`` counts those per IP)."""
    return response.status_code == 200 and not g.get("long_poll_held", False)


@bp.post("/v1/passport/guest")
@limiter.limit(poll_limit, key_func=poll_key, exempt_when=limits_off, deduct_when=_counted_poll)
@limiter.limit(refused_limit, key_func=refused_key, exempt_when=limits_off, deduct_when=was_refused)
def guest() -> Response:
    svc = services()
    body = json_body()
    qr_id = check_qr_id(string_field(body, "code", max_chars=64))
    wait_s = int_field(body, "wait", 0, MAX_WAIT_S) or 0
    since = string_field(body, "since", required=False, max_chars=32)
    if since is not None and since not in STATUSES:
        raise BadRequest("since must be one of the contract's statuses")
    bind = bound_digest(request)
    caller = actor(request)
    result = svc.store.guest(qr_id, bind, caller)
    baseline = since or result.snapshot.status
    if wait_s and _unchanged(result, baseline):
        g.long_poll_held = True
        read = functools.partial(svc.store.read, qr_id, bind)
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
        result = svc.store.guest(qr_id, bind, caller)

    data = {k: v for k, v in result.snapshot.view.items() if k != "id"}
    data["interval"] = svc.settings.poll_interval_s
    token = None
    if result.login is not None:
        token = svc.tokens.mint_login(result.login)
        data["token"] = token
    response = ok(data)
    if token is not None:
        set_cookie(response, request, SESSION_COOKIE, token, svc.settings.login_token_max_age_s)
        # A new binding after each login: whoever learned the old one (a planted or
        # copied cookie) cannot bind this browser's next QR to it.
        set_bind_cookie(response, request, new_browser_secret())
    return response


def _unchanged(result: GuestResult, since: str) -> bool:
    return result.login is None and result.snapshot.status == since and since not in TERMINAL


@bp.get("/v1/passport/me")
def me() -> Response:
    login = logged_in()
    user = login.user
    return ok(
        {
            "user": {"id": user.id, "name": user.name, "avatar": user.avatar},
            "qr_id": login.qr_id,
            "platform": login.platform,
            "issued_at": login.issued_at,
        }
    )
