"""Browser asks for a QR code; the mobile app scans, confirms or cancels it."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from qrlogin import geo, qrimage
from qrlogin.auth import signed_in_user
from qrlogin.browser import (
    actor,
    browser_secret,
    new_browser_secret,
    previous_of,
    requester,
    set_bind_cookie,
)
from qrlogin.envelope import ok
from qrlogin.exceptions import BadRequest
from qrlogin.geo import Place
from qrlogin.inputs import check_qr_id, json_body, string_field
from qrlogin.limits import client_ip, create_limit, limiter, limits_off, step_limit, user_key
from qrlogin.models import CODE_DIGITS, CODE_RE, PLATFORM_RE, QR_ID_RE, STEPS, bind_digest
from qrlogin.services import services

bp = Blueprint("accounts", __name__)


@bp.post("/v1/accounts/qrcode/")
@bp.post("/v1/accounts/qrcode")
@limiter.limit(create_limit, key_func=client_ip, exempt_when=limits_off)
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
        svc.store.replace(previous, bind, actor(request), prev=previous_of(secret))

    asking = requester(request)
    snapshot = svc.store.create(platform, bind, asking, svc.locator.locate(asking.ip))
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
            "app_link": qrimage.app_link(svc.settings.prefix, content),
        },
        status=201,
    )
    if fresh_secret:
        set_bind_cookie(response, request, secret)
    return response


@bp.post("/v1/accounts/qrcode_fill")
@limiter.limit(step_limit, key_func=user_key, exempt_when=limits_off)
def qrcode_fill() -> Response:
    svc = services()
    user = signed_in_user()
    body = json_body()
    qr_id = check_qr_id(string_field(body, "id", max_chars=64))
    step = string_field(body, "step", max_chars=16)
    if step not in STEPS:
        raise BadRequest(f"step must be one of {', '.join(STEPS)}")
    verify_code = code_field(body)
    phone = actor(request)
    result = svc.store.step(
        qr_id,
        step,
        user,
        phone,
        verify_code=verify_code,
        matching=svc.settings.number_matching,
    )
    location = result.client.get("location")
    place = Place(**location) if isinstance(location, dict) else None
    network = geo.compare(result.client["ip"], place, phone.ip, svc.locator.locate(phone.ip))
    data = {
        "id": qr_id,
        "step": step,
        "card_id": user.id,
        "status": result.snapshot.status,
        "expire": result.snapshot.view["expire"],
        "client": result.client,
        "network": network,
    }
    if step == "SCAN":
        # Whether VERIFY needs the browser's code: the QR has one (never the code itself).
        required = bool(result.snapshot.view.get("verify_code"))
        data["matching"] = {"required": required, "length": CODE_DIGITS}
    return ok(data)


def code_field(body: dict[str, Any]) -> str | None:
    """``verify_code`` as the browser shows it: the digits of a string, spaces around them
    trimmed, or a number written with its leading zeros; 400 for anything else (which
    does not end the QR, as a wrong code does)."""
    value = body.get("verify_code")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**CODE_DIGITS:
        return f"{value:0{CODE_DIGITS}d}"
    found = CODE_RE.match(value) if isinstance(value, str) else None
    if found is None:
        raise BadRequest(f'verify_code is the {CODE_DIGITS} digits the browser shows, such as "07"')
    return found.group(1)
