"""Browser asks for a QR code; the mobile app scans, confirms or cancels it."""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from qrlogin import qrimage
from qrlogin.browser import (
    BIND_COOKIE,
    BIND_COOKIE_MAX_AGE_S,
    actor,
    browser_secret,
    new_browser_secret,
    requester,
    set_cookie,
)
from qrlogin.config import PLATFORM_RE
from qrlogin.envelope import json_body, ok, string_field
from qrlogin.exceptions import BadRequest, Unauthorized
from qrlogin.services import services
from qrlogin.store import QR_ID_RE, STEPS, User, bind_digest, check_qr_id

bp = Blueprint("accounts", __name__)


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the token as 'Authorization: Bearer <token>'")
    return token.strip()


def signed_in_user() -> User:
    """The user of the Bearer token, verified once per request (the step limit keys on it)."""
    user: User | None = g.get("qrlogin_user")
    if user is None:
        user = g.qrlogin_user = services().tokens.check_user(bearer_token())
    return user


@bp.post("/v1/accounts/qrcode/")
@bp.post("/v1/accounts/qrcode")
def create_qrcode() -> Response:
    svc = services()
    body = json_body()
    platform = string_field(body, "platform", max_chars=32) or ""
    if not PLATFORM_RE.match(platform):
        raise BadRequest("platform must be 1 to 32 characters of A-Z a-z 0-9 _ . -")
    if svc.settings.platforms and platform not in svc.settings.platforms:
        raise BadRequest(f"platform {platform!r} is not allowed here")
    previous = string_field(body, "code", required=False, max_chars=64)

    secret = browser_secret(request)
    fresh_secret = secret is None
    if secret is None:
        secret = new_browser_secret()
    bind = bind_digest(secret)
    if previous and not fresh_secret and QR_ID_RE.match(previous):
        svc.store.replace(previous, bind, actor(request))

    snapshot = svc.store.create(platform, bind, requester(request))
    view = snapshot.view
    content = qrimage.content(view, svc.settings.prefix, platform)
    response = ok(
        {
            "id": view["id"],
            "png": qrimage.png_base64(content),
            "content": content,
            "expire": view["expire"],
            "expires_in": svc.settings.qr_ttl_s,
            "prefix": svc.settings.prefix,
            "platform": platform,
            "status": snapshot.status,
            "interval": svc.settings.poll_interval_s,
            "events": f"/v1/accounts/qrcode/{view['id']}/events",
        },
        status=201,
    )
    if fresh_secret:
        set_cookie(response, request, BIND_COOKIE, secret, BIND_COOKIE_MAX_AGE_S)
    return response


@bp.post("/v1/accounts/qrcode_fill")
def qrcode_fill() -> Response:
    svc = services()
    user = signed_in_user()
    body = json_body()
    qr_id = check_qr_id(string_field(body, "id", max_chars=64))
    step = string_field(body, "step", max_chars=16)
    if step not in STEPS:
        raise BadRequest("step must be one of SCAN, VERIFY, CANCEL")
    verify_code = string_field(body, "verify_code", required=False, max_chars=8)
    result = svc.store.step(
        qr_id,
        step,
        user,
        actor(request),
        verify_code=verify_code,
        matching=svc.settings.number_matching,
    )
    return ok(
        {
            "id": qr_id,
            "step": step,
            "card_id": user.id,
            "status": result.snapshot.status,
            "expire": result.snapshot.view["expire"],
            "client": result.client,
        }
    )
