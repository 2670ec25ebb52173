"""The provider's endpoints. They answer in the formats their specifications define
(discovery, JWKS, token, userinfo and OAuth errors are plain JSON, not the envelope),
so that standard client libraries work unchanged.

The authorization endpoint is the QR login page: it checks the request, shows the QR
through the SDK, and once the page's browser has redeemed a login it loads the same URL
again, which then issues the code. Every authorization is a fresh scan: the login must
be newer than the page that asked for it, and come from the browser that showed it (a
cookie of the page's own, and the session cookie the redemption set)."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from typing import Any

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, current_app, jsonify, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from qrlogin.auth import SESSION_COOKIE, login_token, session_cookie
from qrlogin.browser import clear_cookie, cookie_name, set_cookie
from qrlogin.engine import UNAVAILABLE_ERRORS
from qrlogin.envelope import unavailable
from qrlogin.exceptions import QRLoginError, SessionNotFound
from qrlogin.keys import Keys
from qrlogin.oidc.clients import ALGORITHMS, SCOPES
from qrlogin.oidc.provider import EXTENSION, Person, digest, issuer, user_info
from qrlogin.security import own_origins
from qrlogin.services import services

bp = Blueprint("oidc", __name__)

#: The authorization page's own cookie: which pending authorization this browser shows.
PENDING_COOKIE = "qrlogin_authorize"
#: How long a shown authorization page may wait for its scan (seconds).
PENDING_TTL_S = 600
#: The endpoints a relying party's page or server calls from another origin.
CROSS_SITE = frozenset({"oidc.token", "oidc.userinfo", "oidc.end_session", "oidc.discovery",
                        "oidc.jwks"})  # fmt: skip


@bp.errorhandler(HTTPException)
@bp.errorhandler(QRLoginError)
def _oauth_error(error: HTTPException | QRLoginError) -> Response:
    """The service's own refusals (a body too large, Redis unavailable) in OAuth's error
    format, which these endpoints' clients read."""
    if isinstance(error, HTTPException):
        status, description = error.code or 400, error.description or "bad request"
    else:
        status, description = error.status, error.msg
    name = "temporarily_unavailable" if status >= 500 else "invalid_request"
    response = jsonify({"error": name, "error_description": description})
    response.status_code = status
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return _open(response)


for _exc in UNAVAILABLE_ERRORS:
    bp.register_error_handler(_exc, lambda error: _oauth_error(unavailable(error)))


def server() -> Any:
    return current_app.extensions[EXTENSION]


def _open(response: Response) -> Response:
    """Readable from any origin: these answers carry no cookie-based secret."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    base = issuer()
    return _open(jsonify({
        "issuer": base,
        "authorization_endpoint": base + url_for("oidc.authorize"),
        "token_endpoint": base + url_for("oidc.token"),
        "userinfo_endpoint": base + url_for("oidc.userinfo"),
        "jwks_uri": base + url_for("oidc.jwks"),
        "end_session_endpoint": base + url_for("oidc.end_session"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "scopes_supported": list(SCOPES),
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid",
                             "amr", "name", "picture"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post",
                                                  "none"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["login", "none"],
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
        "request_parameter_supported": False,
        "claims_parameter_supported": False,
    }))  # fmt: skip


@bp.get("/oidc/jwks")
def jwks() -> Response:
    response = _open(jsonify(services().oidc.keys.published()))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _fingerprint() -> str:
    return digest(json.dumps(sorted(request.args.items(multi=True))))


def _fresh_login(since: int) -> Person | None:
    """The login this browser redeemed after ``since``, when its session is active."""
    if not session_cookie():
        return None
    try:
        login = login_token()
        session = services().sessions.check(login.sid, login.user.id)
    except QRLoginError:
        return None
    if login.issued_at < since:
        return None
    user = login.user
    return Person(user.id, user.name, user.avatar, login.sid, int(session.view["created_at"]))


@bp.get("/oidc/authorize")
def authorize() -> Response | tuple[str, int]:
    oauth = server()
    try:
        grant = oauth.get_consent_grant(end_user=None)
    except OAuth2Error as error:
        return oauth.handle_error_response(None, error)  # type: ignore[no-any-return]
    redis = services().redis
    fingerprint = _fingerprint()
    shown = request.cookies.get(PENDING_COOKIE)
    if shown:
        key = Keys.oidc("pending", digest(shown))
        pending = json.loads(str(redis.get(key) or "{}"))
        person = _fresh_login(pending["at"]) if pending.get("fp") == fingerprint else None
        if person is not None and redis.delete(key):
            response: Response = oauth.create_authorization_response(grant_user=person, grant=grant)
            clear_cookie(response, request, PENDING_COOKIE)
            return response
    rid = secrets.token_urlsafe(24)
    pending_now = json.dumps({"fp": fingerprint, "at": int(time.time())})
    redis.set(Keys.oidc("pending", digest(rid)), pending_now, ex=PENDING_TTL_S)
    page = render_template("authorize.html", client=grant.client)
    response = Response(page, mimetype="text/html")
    set_cookie(response, request, PENDING_COOKIE, rid, PENDING_TTL_S)
    return response


@bp.post("/oidc/token")
def token() -> Response:
    response: Response = server().create_token_response()
    return _open(response)


def _bearer_error(description: str) -> Response:
    response = jsonify({"error": "invalid_token", "error_description": description})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = (
        f'Bearer error="invalid_token", error_description="{description}"'
    )
    return _open(response)


@bp.route("/oidc/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip() or len(value) > 512:
        return _bearer_error("send the access token as 'Authorization: Bearer <token>'")
    svc = services()
    person = svc.oidc.records.access_token(value.strip())
    if person is None:
        return _bearer_error("the access token is unknown or has expired")
    try:
        svc.sessions.check(person.sid, person.sub)
    except QRLoginError:
        return _bearer_error("the session this token belongs to has ended")
    return _open(jsonify(dict(user_info(person))))


@bp.route("/oidc/logout", methods=["GET", "POST"])
def end_session() -> Response | tuple[str, int]:
    """RP-initiated logout: ends the session the ``id_token_hint`` names; without one,
    the browser's own session once its user confirms on our page."""
    oauth = server()
    try:
        validated = oauth.validate_endpoint_request("end_session")
    except OAuth2Error as error:
        return oauth.handle_error_response(None, error)  # type: ignore[no-any-return]
    claims = validated.id_token_claims
    confirmed = (
        request.method == "POST"
        and request.form.get("confirm") == "1"
        and (request.headers.get("Origin", "").rstrip("/") in own_origins(services().settings))
    )
    if claims is None and not confirmed and session_cookie():
        return render_template("logout.html", fields=request.values.items(multi=True)), 200
    if claims is not None:
        _end(str(claims.get("sid", "")), str(claims.get("sub", "")))
    elif confirmed and session_cookie():
        try:
            login = login_token()
            _end(login.sid, login.user.id)
        except QRLoginError:
            pass
    answer = oauth.create_endpoint_response("end_session", validated)
    response = (
        answer
        if answer is not None
        else Response(render_template("logged_out.html"), mimetype="text/html")
    )
    clear_cookie(response, request, cookie_name(request, SESSION_COOKIE))
    return response


def _end(sid: str, user_id: str) -> None:
    if sid and user_id:
        with contextlib.suppress(SessionNotFound):
            services().sessions.end(sid, user_id, "logout")
