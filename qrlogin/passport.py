"""The browser's poll and one-time redemption, and who is logged in."""

from __future__ import annotations

import time

from flask import Blueprint, Response, g, request

from qrlogin.accounts import bearer_token
from qrlogin.browser import SESSION_COOKIE, actor, bound_digest, set_cookie
from qrlogin.config import MAX_WAIT_S, RECHECK_S
from qrlogin.envelope import int_field, json_body, ok, string_field
from qrlogin.exceptions import BadRequest, Unauthorized
from qrlogin.services import Services, services
from qrlogin.store import STATUSES, TERMINAL, Actor, GuestResult, check_qr_id

bp = Blueprint("passport", __name__)


@bp.post("/v1/passport/guest")
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
        g.long_poll_held = True  # a held long poll does not count against the poll rate
        result = _long_poll(svc, qr_id, bind, caller, since=baseline, wait_s=wait_s, first=result)

    data = {k: v for k, v in result.snapshot.view.items() if k != "id"}
    data["interval"] = svc.settings.poll_interval_s
    token = None
    if result.login is not None:
        token = svc.tokens.mint_login(result.login)
        data["token"] = token
    response = ok(data)
    if token is not None:
        set_cookie(response, request, SESSION_COOKIE, token, svc.settings.login_token_max_age_s)
    return response


def _unchanged(result: GuestResult, since: str) -> bool:
    return result.login is None and result.snapshot.status == since and since not in TERMINAL


def _long_poll(
    svc: Services,
    qr_id: str,
    bind: str,
    caller: Actor,
    *,
    since: str,
    wait_s: int,
    first: GuestResult,
) -> GuestResult:
    """Hold the answer until the status differs from ``since`` or ``wait_s`` pass."""
    deadline = time.monotonic() + wait_s
    result = first
    with svc.hub.watch(qr_id, first.snapshot.version) as waiter:
        while True:
            remaining = deadline - time.monotonic()
            if not _unchanged(result, since) or remaining <= 0 or waiter.closed:
                return result
            expire_in = int(result.snapshot.view["expire"]) - time.time()
            woken = waiter.wait(min(remaining, max(expire_in, RECHECK_S)))
            if woken or time.time() >= int(result.snapshot.view["expire"]):
                # Woken (or at the deadline): the store is the truth, read it again.
                waiter.take()
                result = svc.store.guest(qr_id, bind, caller)
                waiter.version = result.snapshot.version


@bp.get("/v1/passport/me")
def me() -> Response:
    svc = services()
    if request.headers.get("Authorization"):
        token = bearer_token()
    else:
        token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        raise Unauthorized("not logged in")
    login = svc.tokens.check_login(token)
    user = login.user
    return ok(
        {
            "user": {"id": user.id, "name": user.name, "avatar": user.avatar},
            "qr_id": login.qr_id,
            "platform": login.platform,
            "issued_at": login.issued_at,
        }
    )
