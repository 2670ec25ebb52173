"""qrlogin as an OpenID Connect provider, against a real gunicorn and Redis, with
Authlib's client as the relying party (Node's openid-client: test_oidc_node.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet

from servers.service import Service
from tests.conftest import StartService
from tests.live import NO_LIMITS, margin, user_token
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
