"""Node's openid-client (panva's, OpenID-certified for relying parties) signs in to the
service with the code flow and PKCE, as a Node application would: discovery and the
redirect; the QR scanned and confirmed by the phone through the API; the code
exchanged, the ID token verified against the JWKS; userinfo; RP-initiated logout; then
a phone's "log out" reaches the party's back-channel endpoint within a second."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from queue import Queue
from typing import Any

import pytest
import requests

from servers.process import ROOT
from servers.service import Service
from tests.conftest import StartService
from tests.live import NO_LIMITS, margin, user_token
from tests.oidc_rp import CALLBACK, SECRET_OF_RP, clients_json, sign_in

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RelyingParty:
    """tests/node/relying-party.mjs, spoken to a JSON line at a time."""

    def __init__(self, service: Service, port: int) -> None:
        self.process = subprocess.Popen(
            ["node", "relying-party.mjs", service.url, "web", SECRET_OF_RP, CALLBACK, str(port)],
            cwd=ROOT / "tests" / "node", stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.said: Queue[dict[str, Any]] = Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.next("ready")["ready"]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.said.put(json.loads(line))

    def next(self, key: str, seconds: float = 30) -> dict[str, Any]:
        message = self.said.get(timeout=margin(seconds))
        assert key in message, message
        return message

    def ask(self, key: str, **command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.next(key)

    def sign_in(self, user: str, name: str) -> tuple[requests.Session, dict[str, Any]]:
        url = self.ask("url", cmd="authorize")["url"]
        browser, back = sign_in(url, user, name)
        assert back.status_code == 302, back.text
        return browser.session, self.ask("claims", cmd="callback", url=back.headers["Location"])


@pytest.fixture
def relying_party(start_service: StartService) -> Iterator[tuple[Service, RelyingParty]]:
    port = free_port()
    backchannel = f"http://127.0.0.1:{port}/backchannel"
    service = start_service(QRLOGIN_OIDC_CLIENTS=clients_json(backchannel), **NO_LIMITS)
    party = RelyingParty(service, port)
    yield service, party
    party.process.kill()
    party.process.wait()


def test_openid_client_signs_in_reads_userinfo_logs_out_and_hears_the_phone(
    relying_party: tuple[Service, RelyingParty],
) -> None:
    service, party = relying_party
    browser, signed_in = party.sign_in("u-carol", "Carol")
    claims = signed_in["claims"]
    assert claims["iss"] == service.url and claims["aud"] == "web" and claims["sub"] == "u-carol"
    assert claims["name"] == "Carol" and claims["amr"] == ["qr"] and claims["sid"]
    assert signed_in["userinfo"] == {"sub": "u-carol", "name": "Carol"}
    assert signed_in["refresh"] is None

    # RP-initiated logout: our session ends, and the browser goes back with the state.
    out = browser.get(signed_in["logout"], allow_redirects=False, timeout=margin(30))
    assert out.status_code == 302 and out.headers["Location"] == CALLBACK + "?state=bye"
    assert browser.get(service.url + "/v1/passport/me", timeout=margin(30)).status_code == 401
    assert party.next("backchannel")["backchannel"]["sid"] == claims["sid"]

    # Signed in again, then logged out from the phone: the party hears of it at once.
    _, again = party.sign_in("u-carol", "Carol")
    sid = again["claims"]["sid"]
    phone_says = time.monotonic()
    ended = requests.delete(service.url + f"/v1/accounts/sessions/{sid}",
                            headers={"Authorization": f"Bearer {user_token('u-carol', 'Carol')}"},
                            timeout=margin(30))  # fmt: skip
    assert ended.status_code == 200
    heard = party.next("backchannel", seconds=1)
    took = time.monotonic() - phone_says
    assert heard["backchannel"]["sid"] == sid and heard["backchannel"]["sub"] == "u-carol"
    assert heard["alg"] == "RS256" and took <= margin(1), took
