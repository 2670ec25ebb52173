"""The provider's endpoints in ``/openapi.json``. Their answers are the formats their
specifications define (OpenID Connect Discovery, RFC 7517's JWK Set, RFC 6749's token
answer and errors, OpenID Connect's userinfo), not the service's envelope."""

from __future__ import annotations

from typing import Any

from qrlogin.oidc.clients import ALGORITHMS, SCOPES


def _json(name: str, description: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, description: str, *, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": {"type": "string"},
        "description": description,
    }


_OAUTH_ERROR = _json("OAuthError", "An OAuth 2.0 error (RFC 6749 5.2), not the envelope")
_TAG = ["OpenID Connect"]
_AUTHORIZE_PARAMETERS = [
    _query("response_type", "`code`", required=True),
    _query("client_id", "A client of QRLOGIN_OIDC_CLIENTS", required=True),
    _query("redirect_uri", "One of the client's redirect_uris, exactly"),
    _query("scope", f"Space separated: {', '.join(SCOPES)} (`openid` for an ID token)"),
    _query("state", "Given back with the code"),
    _query("nonce", "Put in the ID token; a nonce used before is refused"),
    _query("code_challenge", "PKCE (RFC 7636): required of public clients"),
    _query("code_challenge_method", "`S256` (plain is refused)"),
    _query(
        "prompt",
        "`login` (every sign-in is a fresh scan anyway) or `none` (answered with `login_required`)",
    ),
]
_TOKEN_FORM = {
    "type": "object",
    "required": ["grant_type", "code"],
    "properties": {
        "grant_type": {"type": "string", "enum": ["authorization_code"]},
        "code": {"type": "string"},
        "redirect_uri": {"type": "string"},
        "code_verifier": {"type": "string"},
        "client_id": {"type": "string", "description": "Public clients, and client_secret_post"},
        "client_secret": {"type": "string", "description": "client_secret_post"},
    },
}
_LOGOUT_PARAMETERS = [
    _query("id_token_hint", "An ID token of ours: its session ends (expired ones too)"),
    _query("client_id", "Must be the ID token's audience when both are sent"),
    _query("post_logout_redirect_uri", "One of the client's post_logout_redirect_uris"),
    _query("state", "Given back on that redirect"),
]
_LOGOUT_ANSWERS = {
    "200": {
        "description": "A page: signed out, or (without id_token_hint) asking the "
        "browser's user to confirm",
        "content": {"text/html": {}},
    },
    "302": {"description": "Signed out: to the post_logout_redirect_uri, with state"},
    "400": _OAUTH_ERROR,
}
_BEARER: list[dict[str, list[str]]] = [{"oidcAccessToken": []}]

PATHS: dict[str, dict[str, Any]] = {
    "/.well-known/openid-configuration": {
        "get": {
            "operationId": "openidConfiguration",
            "tags": _TAG,
            "summary": "OpenID Connect Discovery: the provider's endpoints and what it supports",
            "responses": {"200": _json("ProviderMetadata", "The provider's metadata")},
        }
    },
    "/oidc/jwks": {
        "get": {
            "operationId": "oidcJwks",
            "tags": _TAG,
            "summary": "The public keys the ID and logout tokens are signed with",
            "responses": {"200": _json("JwkSet", "A JWK Set (RFC 7517)")},
        }
    },
    "/oidc/authorize": {
        "get": {
            "operationId": "oidcAuthorize",
            "tags": _TAG,
            "summary": "The authorization endpoint: the QR login page",
            "description": "Checks the request, then shows the QR through the SDK. Once this "
            "browser has redeemed a login newer than the page, the same URL "
            "redirects to redirect_uri with a one-time code (60 s) and state.",
            "parameters": _AUTHORIZE_PARAMETERS,
            "responses": {
                "200": {"description": "The QR page", "content": {"text/html": {}}},
                "302": {
                    "description": "To redirect_uri with `code` and `state`, or with "
                    "`error` (RFC 6749 4.1.2.1)"
                },
                "400": _OAUTH_ERROR,
            },
        }
    },
    "/oidc/token": {
        "post": {
            "operationId": "oidcToken",
            "tags": _TAG,
            "summary": "The token endpoint: a code for an ID token and an access token",
            "description": "Confidential clients authenticate with client_secret_basic or "
            "client_secret_post; public clients send client_id and the PKCE "
            "verifier. No refresh token is issued.",
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": _TOKEN_FORM}},
            },
            "responses": {
                "200": _json("TokenResponse", "The tokens"),
                "400": _OAUTH_ERROR,
                "401": _OAUTH_ERROR,
            },
        }
    },
    "/oidc/userinfo": {
        op: {
            "operationId": f"oidcUserinfo{op.title()}",
            "tags": _TAG,
            "security": _BEARER,
            "summary": "Who signed in, while the session is active",
            "responses": {
                "200": _json("UserInfo", "The user's claims"),
                "401": _json("OAuthError", "invalid_token, with WWW-Authenticate"),
            },
        }
        for op in ("get", "post")
    },
    "/oidc/logout": {
        "get": {
            "operationId": "oidcEndSession",
            "tags": _TAG,
            "parameters": _LOGOUT_PARAMETERS,
            "summary": "RP-initiated logout: ends the session",
            "responses": _LOGOUT_ANSWERS,
        },
        "post": {
            "operationId": "oidcEndSessionPost",
            "tags": _TAG,
            "summary": "RP-initiated logout, as a form",
            "requestBody": {
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                p["name"]: {"type": "string"} for p in _LOGOUT_PARAMETERS
                            },
                        }
                    }
                }
            },
            "responses": _LOGOUT_ANSWERS,
        },
    },
}

_STRINGS = {"type": "array", "items": {"type": "string"}}
SCHEMAS: dict[str, Any] = {
    "OAuthError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "error_description": {"type": "string"},
            "error_uri": {"type": "string"},
            "state": {"type": "string"},
        },
    },
    "ProviderMetadata": {
        "type": "object",
        "required": [
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "response_types_supported",
            "subject_types_supported",
            "id_token_signing_alg_values_supported",
        ],
        "properties": {
            **{
                name: {"type": "string"}
                for name in (
                    "issuer",
                    "authorization_endpoint",
                    "token_endpoint",
                    "userinfo_endpoint",
                    "jwks_uri",
                    "end_session_endpoint",
                )
            },
            **dict.fromkeys(
                (
                    "response_types_supported",
                    "response_modes_supported",
                    "grant_types_supported",
                    "subject_types_supported",
                    "scopes_supported",
                    "claims_supported",
                    "token_endpoint_auth_methods_supported",
                    "code_challenge_methods_supported",
                    "prompt_values_supported",
                ),
                _STRINGS,
            ),
            "id_token_signing_alg_values_supported": {
                "type": "array",
                "items": {"type": "string", "enum": list(ALGORITHMS)},
            },
            **{
                name: {"type": "boolean"}
                for name in (
                    "backchannel_logout_supported",
                    "backchannel_logout_session_supported",
                    "frontchannel_logout_supported",
                    "request_parameter_supported",
                    "claims_parameter_supported",
                )
            },
        },
    },
    "JwkSet": {
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kty", "kid", "alg", "use"],
                    "properties": {"kty": {"type": "string"}},
                },
            }
        },
    },
    "TokenResponse": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string", "description": "Opaque; for userinfo, 1 h at most"},
            "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_in": {"type": "integer"},
            "scope": {"type": "string"},
            "id_token": {
                "type": "string",
                "description": "A JWT: iss, sub, aud, exp, iat, "
                'auth_time, nonce, sid, amr (`["qr"]`), name, picture',
            },
        },
    },
    "UserInfo": {
        "type": "object",
        "required": ["sub"],
        "properties": {
            "sub": {"type": "string"},
            "name": {"type": "string"},
            "picture": {"type": "string"},
        },
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "oidcAccessToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "an access token from /oidc/token",
    },
    "openIdConnect": {
        "type": "openIdConnect",
        "openIdConnectUrl": "/.well-known/openid-configuration",
    },
}
