"""qrlogin as an OpenID Connect provider, against a real gunicorn and Redis, with
Authlib's client as the relying party (Node's openid-client: test_oidc_node.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt as pyjwt
import pytest
import redis
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet
from playwright.sync_api import Page, expect

from qrlogin.keys import Keys
from qrlogin.oidc.provider import digest
from qrlogin.oidc.signing import CACHE_S
from servers.cluster import LocalCluster
from servers.nginx import BARE, DOCUMENTED, ProxyNginx
from servers.process import ROOT
from servers.redis_server import RedisServer
from servers.service import Service
from tests.conftest import StartService
from tests.live import DEMO_ALICE, NO_LIMITS, margin, phone_step, read_qr, user_token
from tests.oidc_rp import (
    CALLBACK,
    SECRET_OF_RP,
    Receiver,
    clients_json,
    query_of,
    receiver,
    sign_in,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def backchannel() -> Iterator[Receiver]:
    with receiver() as found:
        yield found


@pytest.fixture
def provider(start_service: StartService, backchannel: Receiver) -> Service:
    return start_service(QRLOGIN_OIDC_CLIENTS=clients_json(backchannel.url), **NO_LIMITS)


def discover(service: Service) -> dict[str, Any]:
    answer = requests.get(service.url + "/.well-known/openid-configuration", timeout=margin(30))
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    found: dict[str, Any] = answer.json()
    return found


def verified(service: Service, token: str) -> dict[str, object]:
    """The token's claims, its signature checked against the provider's JWKS."""
    keys = requests.get(discover(service)["jwks_uri"], timeout=margin(30)).json()
    claims: dict[str, object] = jwt.decode(token, KeySet.import_key_set(keys)).claims
    return claims


def test_discovery_and_keys(provider: Service) -> None:
    meta = discover(provider)
    assert meta["issuer"] == provider.url
    for name in ("authorization", "token", "userinfo", "end_session"):
        assert meta[f"{name}_endpoint"].startswith(provider.url + "/oidc/")
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["backchannel_logout_supported"] is True
    keys = requests.get(meta["jwks_uri"], timeout=margin(30)).json()["keys"]
    assert sorted(k["alg"] for k in keys) == ["ES256", "RS256"]
    assert all("d" not in k for k in keys)  # public halves only


def test_authlib_client_signs_in_with_pkce_reads_userinfo_and_logs_out(provider: Service) -> None:
    meta = discover(provider)
    rp = OAuth2Session(
        "web",
        SECRET_OF_RP,
        scope="openid profile",
        redirect_uri=CALLBACK,
        code_challenge_method="S256",
    )
    verifier = "v" * 64
    url, state = rp.create_authorization_url(
        meta["authorization_endpoint"], nonce="n-123", code_verifier=verifier
    )
    _, back = sign_in(url, "u-bob", "Bob")
    assert back.status_code == 302 and back.headers["Location"].startswith(CALLBACK)
    assert query_of(back)["state"] == state

    token = rp.fetch_token(
        meta["token_endpoint"],
        authorization_response=back.headers["Location"],
        code_verifier=verifier,
    )
    assert "refresh_token" not in token
    claims = verified(provider, token["id_token"])
    assert claims["iss"] == provider.url and claims["aud"] == "web" and claims["sub"] == "u-bob"
    assert claims["nonce"] == "n-123" and claims["name"] == "Bob" and claims["amr"] == ["qr"]
    assert claims["sid"] and int(str(claims["exp"])) > time.time() > int(str(claims["iat"])) - 5
    assert int(str(claims["auth_time"])) <= time.time()

    info = rp.get(meta["userinfo_endpoint"]).json()
    assert info == {"sub": "u-bob", "name": "Bob"}

    # RP-initiated logout ends the session: userinfo refuses its token afterwards.
    out = requests.get(
        meta["end_session_endpoint"],
        params={
            "id_token_hint": token["id_token"],
            "post_logout_redirect_uri": CALLBACK,
            "state": "s1",
        },
        allow_redirects=False,
        timeout=margin(30),
    )
    assert out.status_code == 302 and out.headers["Location"] == CALLBACK + "?state=s1"
    refused = rp.get(meta["userinfo_endpoint"])
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"


def code_for(service: Service, client_id: str = "web", **extra: str) -> tuple[str, str]:
    """A code from a whole sign-in, with PKCE; the code and its verifier."""
    verifier = "x" * 50
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "scope": "openid",
        "state": "st",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
        **extra,
    }
    url = requests.Request("GET", service.url + "/oidc/authorize", params=params).prepare().url
    _, back = sign_in(str(url))
    assert back.status_code == 302, back.text
    return query_of(back)["code"], verifier


def exchange(
    service: Service,
    code: str,
    verifier: str | None,
    *,
    auth: tuple[str, str] | None = ("web", SECRET_OF_RP),
    **form: str,
) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, **form}
    if verifier:
        data["code_verifier"] = verifier
    return requests.post(service.url + "/oidc/token", data=data, auth=auth, timeout=margin(30))


def test_a_public_client_with_pkce_and_client_secret_post(provider: Service) -> None:
    code, verifier = code_for(provider, "spa")
    answer = exchange(provider, code, verifier, auth=None, client_id="spa")
    assert answer.status_code == 200, answer.text
    assert verified(provider, answer.json()["id_token"])["aud"] == "spa"
    assert (
        jwt.decode(
            answer.json()["id_token"],
            KeySet.import_key_set(
                requests.get(provider.url + "/oidc/jwks", timeout=margin(30)).json()
            ),
        ).header["alg"]
        == "ES256"
    )  # this client's choice

    code, verifier = code_for(provider)
    posted = exchange(
        provider, code, verifier, auth=None, client_id="web", client_secret=SECRET_OF_RP
    )
    assert posted.status_code == 200 and posted.json()["token_type"].lower() == "bearer"


def test_back_channel_logout_reaches_the_rp_when_the_phone_logs_out(
    provider: Service, backchannel: Receiver
) -> None:
    code, verifier = code_for(provider)
    token = exchange(provider, code, verifier).json()
    sid = verified(provider, token["id_token"])["sid"]
    ended = requests.post(
        provider.url + "/v1/accounts/sessions/end_all",
        headers={"Authorization": f"Bearer {user_token()}"},
        timeout=margin(30),
    )
    assert ended.status_code == 200 and ended.json()["data"]["ended"] == 1
    logout = verified(provider, backchannel.tokens.get(timeout=margin(1)))
    assert logout["sid"] == sid and logout["sub"] == "u-alice" and logout["aud"] == "web"
    assert "http://schemas.openid.net/event/backchannel-logout" in logout["events"]  # type: ignore[operator]
    assert "nonce" not in logout and logout["jti"]


def test_back_channel_logout_is_retried_until_the_rp_answers(
    provider: Service, backchannel: Receiver
) -> None:
    code, verifier = code_for(provider)
    exchange(provider, code, verifier)
    backchannel.status = 500
    browser_logout = requests.post(
        provider.url + "/v1/accounts/sessions/end_all",
        headers={"Authorization": f"Bearer {user_token()}"},
        timeout=margin(30),
    )
    assert browser_logout.status_code == 200
    time.sleep(1.5)  # the first tries fail (1 s, then 2 s apart)
    backchannel.status = 200
    assert verified(provider, backchannel.tokens.get(timeout=margin(10)))["sub"] == "u-alice"


def test_an_idle_session_ends_by_itself_and_the_rp_hears_of_it(
    start_service: StartService, backchannel: Receiver
) -> None:
    service = start_service(
        QRLOGIN_OIDC_CLIENTS=clients_json(backchannel.url), QRLOGIN_SESSION_IDLE="2", **NO_LIMITS
    )
    code, verifier = code_for(service)
    exchange(service, code, verifier)
    assert verified(service, backchannel.tokens.get(timeout=margin(10)))["sub"] == "u-alice"


def test_the_code_is_bound_to_the_browser_that_showed_the_qr(provider: Service) -> None:
    """Another browser that loads the same authorization URL gets the QR page, not a
    code, even after this one's login."""
    url = str(
        requests.Request(
            "GET",
            provider.url + "/oidc/authorize",
            params={
                "response_type": "code",
                "client_id": "web",
                "redirect_uri": CALLBACK,
                "scope": "openid",
                "state": "st",
            },
        )
        .prepare()
        .url
    )
    _, back = sign_in(url)
    assert back.status_code == 302
    other = requests.get(url, allow_redirects=False, timeout=margin(30))
    assert other.status_code == 200 and "qrlogin.js" in other.text


def authorize_url(service: Service, **params: str) -> str:
    base = {
        "response_type": "code",
        "client_id": "web",
        "redirect_uri": CALLBACK,
        "scope": "openid",
        "state": "st",
    }
    return str(
        requests.Request("GET", service.url + "/oidc/authorize", params=base | params).prepare().url
    )


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"client_id": "nobody"}, "invalid_client"),
        ({"redirect_uri": CALLBACK + "/other"}, "invalid_request"),
        ({"redirect_uri": "http://127.0.0.1:8765/callback?x=1"}, "invalid_request"),
    ],
)
def test_an_unknown_client_or_redirect_is_refused_without_redirecting(
    provider: Service, params: dict[str, str], error: str
) -> None:
    answer = requests.get(
        authorize_url(provider, **params), allow_redirects=False, timeout=margin(30)
    )
    assert answer.status_code in (400, 401) and answer.json()["error"] == error, answer.text
    assert "Location" not in answer.headers


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"client_id": "spa"}, "invalid_request"),  # public without PKCE
        ({"code_challenge": "a" * 43, "code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "a" * 43}, "invalid_request"),  # no method means plain
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"prompt": "none"}, "login_required"),
    ],
)
def test_a_bad_request_goes_back_to_the_client_with_its_error(
    provider: Service, params: dict[str, str], error: str
) -> None:
    answer = requests.get(
        authorize_url(provider, **params), allow_redirects=False, timeout=margin(30)
    )
    assert answer.status_code == 302, answer.text
    assert answer.headers["Location"].startswith(CALLBACK)
    assert query_of(answer)["error"] == error


def test_codes_are_spent_once_and_a_replay_revokes_the_token(provider: Service) -> None:
    code, verifier = code_for(provider)
    first = exchange(provider, code, verifier)
    assert first.status_code == 200
    access = first.json()["access_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    assert requests.get(provider.url + "/oidc/userinfo", headers=bearer, timeout=margin(30)).ok
    replay = exchange(provider, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    after = requests.get(provider.url + "/oidc/userinfo", headers=bearer, timeout=margin(30))
    assert after.status_code == 401 and "invalid_token" in after.headers["WWW-Authenticate"]


def test_pkce_the_client_and_the_code_must_all_match(provider: Service, redis_url: str) -> None:
    code, verifier = code_for(provider)
    wrong = exchange(provider, code, "y" * 50)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    code, verifier = code_for(provider)
    missing = exchange(provider, code, None)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    code, verifier = code_for(provider)
    bad_secret = exchange(provider, code, verifier, auth=("web", "not-the-secret-0123456789"))
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    other_client = exchange(provider, code, verifier, auth=None, client_id="spa")
    assert other_client.status_code == 400 and other_client.json()["error"] == "invalid_grant"
    code, verifier = code_for(provider)
    redirect = exchange(provider, code, verifier, redirect_uri=CALLBACK + "/x")
    assert redirect.status_code == 400 and redirect.json()["error"] == "invalid_grant"

    # A code past its 60 s: Redis expired it.
    code, verifier = code_for(provider)
    key = Keys.oidc("code", digest(code))
    assert redis.Redis.from_url(redis_url).pexpire(key, 1)
    time.sleep(0.05)
    expired = exchange(provider, code, verifier)
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "password", "username": "a", "password": "b"},
        {"grant_type": "authorization_code"},
        {"grant_type": "authorization_code", "code": "x" * 100_000},
        {},
    ],
)
def test_malformed_token_requests_get_oauth_errors(provider: Service, form: dict[str, str]) -> None:
    answer = requests.post(
        provider.url + "/oidc/token", data=form, auth=("web", SECRET_OF_RP), timeout=margin(30)
    )
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"] in ("invalid_request", "unsupported_grant_type")


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer nope", "Basic d2ViOng=", "Bearer " + "x" * 3000],
)
def test_userinfo_refuses_what_is_not_a_live_access_token(
    provider: Service, authorization: str
) -> None:
    answer = requests.get(
        provider.url + "/oidc/userinfo",
        headers={"Authorization": authorization},
        timeout=margin(30),
    )
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_token"


def test_a_forged_or_foreign_id_token_hint_ends_nothing(provider: Service) -> None:
    browser, _ = sign_in(authorize_url(provider))
    forged = pyjwt.encode(
        {"sub": "u-alice", "sid": "x", "aud": "web", "iss": provider.url},
        "k" * 32,
        algorithm="HS256",
    )
    for hint in (forged, "not.a.jwt", forged.split(".")[0] + ".e30."):
        answer = requests.get(
            provider.url + "/oidc/logout",
            params={"id_token_hint": hint},
            allow_redirects=False,
            timeout=margin(30),
        )
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    me = browser.session.get(provider.url + "/v1/passport/me", timeout=margin(30))
    assert me.status_code == 200  # still signed in


def test_logout_without_a_hint_asks_the_browser_first(provider: Service) -> None:
    browser, _ = sign_in(authorize_url(provider))
    asked = browser.session.get(provider.url + "/oidc/logout", timeout=margin(30))
    assert asked.status_code == 200 and 'name="confirm"' in asked.text
    assert browser.session.get(provider.url + "/v1/passport/me", timeout=margin(30)).ok
    done = browser.session.post(
        provider.url + "/oidc/logout",
        data={"confirm": "1"},
        headers={"Origin": provider.url},
        timeout=margin(30),
    )
    assert done.status_code == 200
    me = browser.session.get(provider.url + "/v1/passport/me", timeout=margin(30))
    assert me.status_code == 401


def test_keys_rotate_and_the_old_key_stays_published(provider: Service) -> None:
    code, verifier = code_for(provider)
    old_token = exchange(provider, code, verifier).json()["id_token"]
    before = {
        k["kid"]
        for k in requests.get(provider.url + "/oidc/jwks", timeout=margin(30)).json()["keys"]
    }
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "keys", "rotate"]
    rotated = subprocess.run(
        command, capture_output=True, text=True, env=provider.env, cwd=ROOT, check=False
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "new signing keys" in rotated.stdout
    after = {
        k["kid"]
        for k in requests.get(provider.url + "/oidc/jwks", timeout=margin(30)).json()["keys"]
    }
    assert before < after
    assert verified(provider, old_token)["sub"] == "u-alice"  # still checks
    time.sleep(CACHE_S + 0.5)  # the worker reads the keys again
    code, verifier = code_for(provider)
    new_token = exchange(provider, code, verifier).json()["id_token"]
    keys = requests.get(provider.url + "/oidc/jwks", timeout=margin(30)).json()
    new_kid = jwt.decode(new_token, KeySet.import_key_set(keys)).header["kid"]
    assert new_kid in after - before


def test_in_chromium_the_page_shows_the_qr_and_goes_back_with_a_code(
    provider: Service, page: Page
) -> None:
    """The authorization page in a real browser: the SDK's QR, read off the screen and
    confirmed by the phone; the page loads itself again and lands on the client."""
    page.goto(authorize_url(provider, nonce="n-page"))
    expect(page.locator("h1")).to_contain_text("Web App")
    expect(page.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_WAIT")
    qr = read_qr(page)
    token = user_token(*DEMO_ALICE)
    assert phone_step(provider.url, token, qr["id"], "SCAN").status_code == 200
    with page.expect_request(lambda r: r.url.startswith(CALLBACK)) as landing:
        assert phone_step(provider.url, token, qr["id"], "VERIFY").status_code == 200
    query = parse_qs(landing.value.url.split("?", 1)[1])
    assert query["state"] == ["st"]
    answer = exchange(provider, query["code"][0], None)
    assert answer.status_code == 200, answer.text
    claims = verified(provider, answer.json()["id_token"])
    assert claims["sub"] == DEMO_ALICE[0] and claims["nonce"] == "n-page"


def test_the_readmes_relying_party_signs_in(
    start_service: StartService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/examples/relying_party.py (Authlib's Flask client), as the README shows it."""
    web = {
        "client_id": "example",
        "client_secret": SECRET_OF_RP,
        "redirect_uris": ["http://localhost/callback"],
    }
    service = start_service(QRLOGIN_OIDC_CLIENTS=json.dumps([web]), **NO_LIMITS)
    for name, value in {
        "APP_SECRET_KEY": "k" * 32,
        "QRLOGIN_ISSUER": service.url,
        "CLIENT_ID": "example",
        "CLIENT_SECRET": SECRET_OF_RP,
    }.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        "relying_party", ROOT / "docs" / "examples" / "relying_party.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    app = example.app.test_client()
    assert "Sign in with qrlogin" in app.get("/").text
    to_provider = app.get("/login")
    assert to_provider.status_code == 302
    _, back = sign_in(to_provider.headers["Location"], "u-dave", "Dave")
    landed = app.get(back.headers["Location"].removeprefix("http://localhost"))
    assert landed.status_code == 302, landed.text
    assert app.get("/").text == "Hello, Dave"


@pytest.mark.parametrize("mode", ["documented", "bare + public origin"])
def test_through_nginx_the_issuer_is_the_origin_browsers_see(
    mode: str, start_service: StartService, server_logs: Path, backchannel: Receiver
) -> None:
    """Behind nginx (forwarded headers trusted, or a bare proxy with the public origin
    set), every URL of the discovery and the ID token's iss are the proxy's."""
    settings = {"QRLOGIN_OIDC_CLIENTS": clients_json(backchannel.url), **NO_LIMITS}
    nginx = ProxyNginx(DOCUMENTED if mode == "documented" else BARE, server_logs)
    if mode == "documented":
        service = start_service(QRLOGIN_TRUSTED_PROXIES="1", **settings)
    else:
        service = start_service(QRLOGIN_PUBLIC_ORIGIN=nginx.url, **settings)
    with nginx.proxy_to(service.port):
        meta = requests.get(
            nginx.url + "/.well-known/openid-configuration", timeout=margin(30)
        ).json()
        assert meta["issuer"] == nginx.url and meta["token_endpoint"] == nginx.url + "/oidc/token"
        verifier = "z" * 60
        rp = OAuth2Session(
            "web", SECRET_OF_RP, scope="openid", redirect_uri=CALLBACK, code_challenge_method="S256"
        )
        url, _ = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier)
        _, back = sign_in(url)
        assert back.status_code == 302, back.text
        token = rp.fetch_token(
            meta["token_endpoint"],
            authorization_response=back.headers["Location"],
            code_verifier=verifier,
        )
        keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=margin(30)).json())
        assert jwt.decode(token["id_token"], keys).claims["iss"] == nginx.url


def test_a_nonce_the_client_used_before_is_refused(provider: Service) -> None:
    code, verifier = code_for(provider, nonce="once")
    assert exchange(provider, code, verifier).status_code == 200
    again = requests.get(
        authorize_url(provider, nonce="once"), allow_redirects=False, timeout=margin(30)
    )
    assert again.status_code == 302 and query_of(again)["error"] == "invalid_request"


def test_on_a_redis_cluster(
    start_service: StartService, redis_cluster: LocalCluster, backchannel: Receiver
) -> None:
    """Keys, codes, tokens, the watch and the outbox on a Redis Cluster: a whole sign-in,
    then the phone's logout reaches the party."""
    redis_cluster.flush()
    service = start_service(
        redis_url=redis_cluster.url,
        QRLOGIN_REDIS_MODE="cluster",
        QRLOGIN_OIDC_CLIENTS=clients_json(backchannel.url),
        **NO_LIMITS,
    )
    code, verifier = code_for(service)
    token = exchange(service, code, verifier)
    assert token.status_code == 200, token.text
    claims = verified(service, token.json()["id_token"])
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert requests.get(service.url + "/oidc/userinfo", headers=bearer, timeout=margin(30)).ok
    ended = requests.post(
        service.url + "/v1/accounts/sessions/end_all",
        headers={"Authorization": f"Bearer {user_token()}"},
        timeout=margin(30),
    )
    assert ended.status_code == 200
    assert verified(service, backchannel.tokens.get(timeout=margin(5)))["sid"] == claims["sid"]


def test_the_keys_each_script_or_transaction_touches_share_a_slot() -> None:
    def slot(key: str) -> int:
        return int(redis.crc.key_slot(key.encode()))

    assert slot(Keys.oidc_outbox()) == slot(Keys.oidc_outbox() + ":jobs")  # the claim script
    assert slot(Keys.oidc_keys()) == slot(Keys.oidc_keys() + ":rotating")
    assert slot(Keys.oidc_parties("u-1", "s")) == slot(Keys.session("u-1", "s"))


def test_a_redis_that_does_not_answer_is_an_oauth_error(
    start_service: StartService, own_redis: RedisServer
) -> None:
    service = start_service(
        redis_url=own_redis.url, QRLOGIN_OIDC_CLIENTS=clients_json(), **NO_LIMITS
    )
    own_redis.stop()
    answer = requests.post(
        service.url + "/oidc/token",
        data={"grant_type": "authorization_code", "code": "x"},
        auth=("web", SECRET_OF_RP),
        timeout=margin(60),
    )
    assert answer.status_code == 503 and answer.json()["error"] == "temporarily_unavailable"
    assert answer.headers["Retry-After"] == "5"
