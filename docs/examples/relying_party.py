"""A Flask application that signs its users in with qrlogin, by OpenID Connect (the
README's "Sign in with qrlogin"). Run: QRLOGIN_ISSUER=https://login.example.com
CLIENT_ID=... CLIENT_SECRET=... flask --app relying_party run"""

import os

from authlib.integrations.flask_client import OAuth
from flask import Flask, redirect, session, url_for

app = Flask(__name__)
app.secret_key = os.environ["APP_SECRET_KEY"]
oauth = OAuth(app)
oauth.register(
    "qrlogin",
    server_metadata_url=os.environ["QRLOGIN_ISSUER"] + "/.well-known/openid-configuration",
    client_id=os.environ["CLIENT_ID"],
    client_secret=os.environ["CLIENT_SECRET"],
    client_kwargs={"scope": "openid profile", "code_challenge_method": "S256"},
)


@app.get("/login")
def login():
    return oauth.qrlogin.authorize_redirect(url_for("callback", _external=True))


@app.get("/callback")
def callback():
    session["user"] = oauth.qrlogin.authorize_access_token()["userinfo"]  # checked ID token
    return redirect("/")


@app.get("/")
def home() -> str:
    user = session.get("user")
    return f"Hello, {user['name']}" if user else '<a href="/login">Sign in with qrlogin</a>'
