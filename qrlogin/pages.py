"""The pages people see: the login page, the main page after login, the phone stand-in."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, render_template, request

from qrlogin.auth import logged_in, session_cookie
from qrlogin.exceptions import SessionEnded, Unauthorized
from qrlogin.services import services

bp = Blueprint("pages", __name__)

#: The users offered by the stand-in's demo sign-in (demo mode only).
DEMO_USERS = (
    ("u-alice", "Alice Example", "/static/avatars/alice.svg"),
    ("u-bob", "Bob Example", "/static/avatars/bob.svg"),
)


@bp.get("/")
def login() -> str:
    return render_template("login.html", platform=request.args.get("platform", "Rxx_PC"))


@bp.get("/app")
def main_app() -> tuple[str, int]:
    if not session_cookie():
        return render_template("app.html", login=None), 401
    try:
        login, session = logged_in()
    except (Unauthorized, SessionEnded):
        return render_template("app.html", login=None), 401
    issued = datetime.fromtimestamp(login.issued_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return render_template("app.html", login=login, issued=issued, session=session.view), 200


@bp.get("/m")
def mobile() -> str:
    svc = services()
    demo_users = []
    if svc.settings.demo:
        demo_users = [
            {
                "id": uid,
                "name": name,
                "avatar": avatar,
                "token": svc.tokens.mint_user(uid, name, avatar),
            }
            for uid, name, avatar in DEMO_USERS
        ]
    return render_template("mobile.html", demo_users=demo_users)
