"""User tokens a main application signs as JWTs (HS256 with a shared key, or RS256,
ES256, EdDSA with its JWKS), and SECRET_KEY rotation with SECRET_KEY_FALLBACKS."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer

from qrlogin import create_app, userjwt
from qrlogin.config import Settings
from qrlogin.exceptions import ConfigError
from servers.process import ROOT
from tests.conftest import StartService, create_qr, fill, guest
from tests.live import SECRET, Browser, margin, phone_step, user_token

JWT_KEY = "main-app-hs256-Kq8Vn3Zp7Wd2Rx6Hb4Tf9Lm5Yc1"
ISSUER, AUDIENCE = "https://app.example.com", "qrlogin"


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "u-jwt", "name": "Jo Wu", "picture": "https://app.example.com/jo.png",
            "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, **extra}  # fmt: skip


class Jwks:
    """A main application's JWKS endpoint, on loopback, with keys the test may change."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, private: Any, kid: str) -> None:
        """Publish the public half of ``private`` under ``kid``."""
        public = json.loads(
            pyjwt.algorithms.get_default_algorithms()[_alg(private)].to_jwk(private.public_key())
        )
        self.keys.append({**public, "kid": kid})


def _alg(private: Any) -> str:
    if isinstance(private, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return "ES256"
    return "EdDSA"


def sign(private: Any, kid: str, **extra: Any) -> str:
    return pyjwt.encode(claims(**extra), private, algorithm=_alg(private), headers={"kid": kid})


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    found = Jwks()
    yield found
    found.server.shutdown()


@pytest.fixture
def jwt_app(env: dict[str, str], jwks: Jwks, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setattr(userjwt, "JWKS_REFETCH_S", 0)
    env = {**env, "QRLOGIN_USER_JWT_KEY": JWT_KEY, "QRLOGIN_USER_JWKS_URL": jwks.url,
           "QRLOGIN_USER_JWT_ISSUER": ISSUER, "QRLOGIN_USER_JWT_AUDIENCE": AUDIENCE}  # fmt: skip
    return create_app(env)


def hs(key: str = JWT_KEY, drop: str = "", **extra: Any) -> str:
    """An HS256 token with ``key``, the claims changed by ``extra``, less ``drop``."""
    return pyjwt.encode({k: v for k, v in claims(**extra).items() if k != drop}, key, "HS256")


def log_in_with(client: FlaskClient, token: str) -> dict[str, Any]:
    """SCAN and VERIFY with ``token``; what the browser then sees."""
    qr_id = create_qr(client)["id"]
    scan = fill(client, token, qr_id, "SCAN")
    assert scan.status_code == 200, scan.json
    assert fill(client, token, qr_id, "VERIFY").status_code == 200
    data: dict[str, Any] = guest(client, qr_id).json["data"]
    return data


def test_an_hs256_jwt_from_pyjwt_scans_and_confirms(jwt_app: Flask) -> None:
    seen = log_in_with(jwt_app.test_client(), hs())
    assert seen["status"] == "QRCODE_SUCCESS" and "token" in seen
    assert seen["user"] == {
        "id": "u-jwt",
        "name": "Jo Wu",
        "avatar": "https://app.example.com/jo.png",
    }


RSA_KEY = rsa.generate_private_key(65537, 2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
OTHER_RSA = rsa.generate_private_key(65537, 2048)


@pytest.mark.parametrize("key", [RSA_KEY, EC_KEY, ED_KEY], ids=["RS256", "ES256", "EdDSA"])
def test_jwts_signed_with_a_key_of_the_jwks(jwt_app: Flask, jwks: Jwks, key: Any) -> None:
    jwks.add(key, "k1")
    assert log_in_with(jwt_app.test_client(), sign(key, "k1"))["status"] == "QRCODE_SUCCESS"


def test_an_unknown_kid_fetches_the_jwks_again(jwt_app: Flask, jwks: Jwks) -> None:
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    jwks.add(old, "old")
    client = jwt_app.test_client()
    assert log_in_with(client, sign(old, "old"))["status"] == "QRCODE_SUCCESS"
    fetched = jwks.fetches
    jwks.add(new, "new")  # the main application rotates its key
    assert log_in_with(client, sign(new, "new"))["status"] == "QRCODE_SUCCESS"
    assert jwks.fetches == fetched + 1
    answer = fill(client, sign(ec.generate_private_key(ec.SECP256R1()), "nobody"), "q", "SCAN")
    assert answer.status_code == 401 and "unknown key" in answer.json["msg"]


def rsa_public_pem(key: rsa.RSAPrivateKey) -> bytes:
    info = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.PEM, info)


def forged_hs256_with_the_public_key() -> str:
    """HS/RS confusion: an HS256 token whose HMAC secret is the JWKS key's public PEM."""
    import base64
    import hashlib
    import hmac

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing = f"{part({'alg': 'HS256', 'kid': 'k1'})}.{part(claims())}"
    mac = hmac.new(rsa_public_pem(RSA_KEY), signing.encode(), hashlib.sha256).digest()
    return signing + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def unsigned() -> str:
    import base64

    head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=").decode()
    return f"{head}.{body}."


BAD_TOKENS = [
    ("alg none", unsigned, "algorithm ('none') is not accepted"),
    ("HS256 with the public key", forged_hs256_with_the_public_key, "signature does not verify"),
    ("another HS256 key", lambda: hs("x" * 40), "signature does not verify"),
    ("expired", lambda: hs(exp=int(time.time()) - 120), "expired"),
    ("another audience", lambda: hs(aud="elsewhere"), "'aud'"),
    ("another issuer", lambda: hs(iss="https://evil.example"), "'iss'"),
    ("no exp", lambda: hs(drop="exp"), "'exp'"),
    ("no sub", lambda: hs(drop="sub"), "'sub'"),
    ("a name that is a number", lambda: hs(name=7), "must be strings"),
    ("RS256 with a key not in the JWKS", lambda: sign(RSA_KEY, "k9"), "unknown key"),
    ("ES256 under an RSA key's kid", lambda: sign(EC_KEY, "k1"), "does not fit the key"),
    ("RS256, another key, same kid", lambda: sign(OTHER_RSA, "k1"), "signature does not verify"),
    ("oversized", lambda: hs(pad="x" * 5000), "longer than 4096 characters"),
    ("a header that is not JSON", lambda: "eyJhbGciOiJIUzI1NiI.e30.sig", "malformed"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "make", "said"), BAD_TOKENS, ids=[b[0] for b in BAD_TOKENS])
def test_bad_jwts_are_refused_in_the_envelope(
    jwt_app: Flask, jwks: Jwks, what: str, make: Any, said: str
) -> None:
    jwks.add(RSA_KEY, "k1")
    client = jwt_app.test_client()
    qr_id = create_qr(client)["id"]
    answer = fill(client, make(), qr_id, "SCAN")
    assert answer.status_code == 401, (what, answer.json)
    assert answer.json["code"] == "UNAUTHORIZED" and said in answer.json["msg"], answer.json
    assert guest(client, qr_id).json["data"]["status"] == "QRCODE_WAIT"  # nothing changed


def test_a_jwt_when_jwts_are_off_says_how_to_turn_them_on(client: FlaskClient) -> None:
    answer = fill(
        client, pyjwt.encode(claims(), JWT_KEY, algorithm="HS256"), create_qr(client)["id"], "SCAN"
    )
    assert answer.status_code == 401 and "QRLOGIN_USER_JWT_KEY" in answer.json["msg"]


def test_itsdangerous_tokens_still_work_beside_jwts(jwt_app: Flask) -> None:
    assert log_in_with(jwt_app.test_client(), user_token())["status"] == "QRCODE_SUCCESS"


@pytest.mark.parametrize(
    ("env", "message"),
    [({"QRLOGIN_USER_JWT_KEY": "short"}, "QRLOGIN_USER_JWT_KEY must be at least"),
     ({"QRLOGIN_USER_JWKS_URL": "http://app.example.com/jwks"}, "https:// URL"),
     ({"QRLOGIN_USER_JWKS_URL": "ftp://127.0.0.1/jwks"}, "https:// URL"),
     ({"SECRET_KEY_FALLBACKS": "changeme-now-Zq8Vn3Kp7Wd2Rx6Hb4Tf9"}, "FALLBACKS looks like")],
)  # fmt: skip
def test_weak_or_wrong_jwt_and_fallback_settings_are_refused(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"SECRET_KEY": SECRET, **env})


OLD_KEY = "old-key-Pq2Wm8Xz4Rb7Nt5Yc3Vh6Jd9Ks1"


def test_rotating_secret_key_keeps_everyone_signed_in(env: dict[str, str]) -> None:
    """Tokens and binding cookies signed with the old key verify while it is a fallback;
    what the service signs now uses the new key only."""
    before = create_app({**env, "SECRET_KEY": OLD_KEY})
    browser = before.test_client()
    qr_id = create_qr(browser)["id"]  # bound to a cookie signed with the old key
    old_user = URLSafeTimedSerializer(OLD_KEY, salt="qrlogin.user").dumps(
        {"sub": "u-1", "name": "Ann"}
    )
    fill(browser, old_user, qr_id, "SCAN")
    fill(browser, old_user, qr_id, "VERIFY")

    rotated = create_app({**env, "SECRET_KEY": SECRET, "SECRET_KEY_FALLBACKS": OLD_KEY})
    browser.application = rotated  # the same browser, its cookies, after the deploy
    redeemed = guest(browser, qr_id).json["data"]
    assert redeemed["status"] == "QRCODE_SUCCESS" and "token" in redeemed
    assert (
        URLSafeTimedSerializer(SECRET, salt="qrlogin.login").loads(redeemed["token"])["sub"]
        == "u-1"
    )
    second = create_qr(browser)["id"]
    assert fill(browser, old_user, second, "SCAN").status_code == 200

    after = create_app({**env, "SECRET_KEY": SECRET})  # the old key dropped
    assert (
        fill(
            after.test_client(), old_user, create_qr(after.test_client())["id"], "SCAN"
        ).status_code
        == 401
    )


@pytest.mark.slow
def test_an_es256_jwt_from_nodes_jose_with_its_jwks(
    start_service: StartService, jwks: Jwks
) -> None:
    """A Node main application: jose signs the token with a key it made, and the service
    (gunicorn, as deployed) checks it against the JWKS the application publishes."""
    made = subprocess.run(
        ["node", "sign-user-token.mjs", json.dumps(claims(sub="u-node", name="Nod E"))],
        cwd=ROOT / "tests" / "node", capture_output=True, text=True, check=True, timeout=margin(60),
    )  # fmt: skip
    signed = json.loads(made.stdout)
    jwks.keys = signed["jwks"]["keys"]
    service = start_service(QRLOGIN_USER_JWKS_URL=jwks.url, QRLOGIN_USER_JWT_ISSUER=ISSUER,
                            QRLOGIN_USER_JWT_AUDIENCE=AUDIENCE)  # fmt: skip
    browser = Browser(service.url)
    qr_id = browser.create()["id"]
    for step in ("SCAN", "VERIFY"):
        assert phone_step(service.url, signed["token"], qr_id, step).status_code == 200
    seen = browser.guest(qr_id).json()["data"]
    assert seen["status"] == "QRCODE_SUCCESS" and seen["user"]["id"] == "u-node"
    assert jwks.fetches == 1
