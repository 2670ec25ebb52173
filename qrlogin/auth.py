"""Who is calling: the phone's user token and the browser's login token."""

from __future__ import annotations

from flask import g, request

from qrlogin.browser import only_cookie
from qrlogin.exceptions import Unauthorized
from qrlogin.models import Snapshot, User
from qrlogin.services import services
from qrlogin.tokens import Login

#: The cookie that holds the browser's login token after redemption.
SESSION_COOKIE = "qrlogin_session"


def bearer_token() -> str:
    """The token of an ``Authorization: Bearer`` header; 401 when there is none."""
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


def login_token() -> Login:
    """The browser's login token (Bearer, or the session cookie), checked for its
    signature and age only; 401 without one."""
    token = bearer_token() if request.headers.get("Authorization") else session_cookie()
    if not token:
        raise Unauthorized("not logged in")
    return services().tokens.check_login(token)


def session_cookie() -> str | None:
    """The session cookie (``__Host-qrlogin_session`` over HTTPS, which no sibling host can
    plant), when one value is sent: with two different ones the caller is not logged in."""
    return only_cookie(request, SESSION_COOKIE)


def logged_in() -> tuple[Login, Snapshot]:
    """The browser's login and its session, which must be active: 401 ``SESSION_ENDED``
    once it was ended (logout, the phone, idle, its deadline). The request counts as a
    use of the session."""
    login = login_token()
    return login, services().sessions.check(login.sid, login.user.id)
