"""The browser's poll and one-time redemption, and who is logged in."""

from __future__ import annotations

from flask import Blueprint, Response, request

from qrlogin.accounts import bearer_token
from qrlogin.browser import SESSION_COOKIE, bound_digest, set_cookie
from qrlogin.config import MAX_WAIT_S
from qrlogin.envelope import int_field, json_body, ok, string_field
from qrlogin.exceptions import BadRequest, Unauthorized
from qrlogin.services import services
from qrlogin.store import STATUSES, check_qr_id

bp = Blueprint("passport", __name__)


@bp.post("/v1/passport/guest")
def guest() -> Response:
    svc = services()
    body = json_body()
    qr_id = check_qr_id(string_field(body, "code", max_chars=64))
    int_field(body, "wait", 0, MAX_WAIT_S)
    since = string_field(body, "since", required=False, max_chars=32)
    if since is not None and since not in STATUSES:
        raise BadRequest("since must be one of the contract's statuses")
    result = svc.store.guest(qr_id, bound_digest(request))

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
