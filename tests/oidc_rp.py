"""What the OpenID Connect tests share: a relying party's back-channel endpoint, the
clients they register, and a browser that signs in through the authorization page."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from queue import Queue
from typing import Any
from urllib.parse import parse_qs

import requests

from tests.live import Browser, margin, phone_step, user_token

CALLBACK = "http://127.0.0.1:8765/callback"
SECRET_OF_RP = "rp-secret-0123456789-abcdefghij-XYZ"


class Receiver:
    """An RP's back-channel logout endpoint on loopback: what it was sent, in order.
    ``status`` is what it answers (a failing RP answers 500)."""

    def __init__(self) -> None:
        self.tokens: Queue[str] = Queue()
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                if receiver.status == 200:
                    receiver.tokens.put(parse_qs(body)["logout_token"][0])
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/backchannel"


@contextmanager
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()


def clients_json(backchannel: str | None = None, **extra: Any) -> str:
    """A confidential client ``web`` and a public one ``spa``, both with CALLBACK."""
    web: dict[str, Any] = {
        "client_id": "web",
        "client_secret": SECRET_OF_RP,
        "name": "Web App",
        "redirect_uris": [CALLBACK],
        "post_logout_redirect_uris": [CALLBACK],
    }
    spa: dict[str, Any] = {
        "client_id": "spa",
        "redirect_uris": [CALLBACK],
        "id_token_signed_response_alg": "ES256",
    }
    if backchannel:
        web["backchannel_logout_uri"] = backchannel
        spa["backchannel_logout_uri"] = backchannel
    return json.dumps([web | extra, spa])


def sign_in(
    authorize_url: str, user: str = "u-alice", name: str = "Alice", browser: Browser | None = None
) -> tuple[Browser, requests.Response]:
    """What the authorization page does in a browser: shown, its QR created, scanned and
    confirmed on the phone, redeemed, and the page loaded again; that last answer (the
    redirect to the relying party, not followed)."""
    origin = authorize_url.split("/oidc/", 1)[0]
    browser = browser or Browser(origin)
    page = browser.session.get(authorize_url, timeout=margin(30), allow_redirects=False)
    assert page.status_code == 200, page.text
    assert "qrlogin.js" in page.text
    qr_id = browser.create(platform="web")["id"]
    token = user_token(user, name)
    assert phone_step(origin, token, qr_id, "SCAN").status_code == 200
    assert phone_step(origin, token, qr_id, "VERIFY").status_code == 200
    assert "token" in browser.guest(qr_id).json()["data"]
    back = browser.session.get(authorize_url, timeout=margin(30), allow_redirects=False)
    return browser, back


def query_of(response: requests.Response) -> dict[str, str]:
    """The parameters of a redirect's Location."""
    location = response.headers["Location"]
    return {k: v[0] for k, v in parse_qs(location.split("?", 1)[1]).items()}
