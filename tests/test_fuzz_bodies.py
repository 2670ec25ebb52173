"""Generated bodies for every JSON endpoint, with what schemathesis does not send: lone
surrogates, deep nesting, any value in any field. The answer is never a 500, always
the envelope."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import bearer, create_qr
from tests.live import user_token

#: Any text, lone surrogates included (Hypothesis's text leaves them out).
SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
ANY_TEXT = st.lists(st.characters() | SURROGATES, max_size=40).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
DEEP = st.integers(1, 5000).map(lambda depth: "[" * depth + "]" * depth)
FIELDS = {
    "/v1/accounts/qrcode/": ("platform", "code"),
    "/v1/accounts/qrcode_fill": ("id", "step", "verify_code"),
    "/v1/passport/guest": ("code", "wait", "since"),
}
#: A valid body for each path (``<id>``: a live QR's id); the test changes some fields.
VALID = {
    "/v1/accounts/qrcode/": {"platform": "web"},
    "/v1/accounts/qrcode_fill": {"id": "<id>", "step": "SCAN"},
    "/v1/passport/guest": {"code": "<id>"},
}
FIELD_NAMES = sorted({f for fields in FIELDS.values() for f in fields})
BODIES = st.one_of(
    st.tuples(
        st.sampled_from(sorted(FIELDS)),
        st.dictionaries(st.sampled_from(FIELD_NAMES), st.just("<id>") | JSON_VALUES, max_size=3),
    ),
    st.tuples(st.sampled_from(sorted(FIELDS)), JSON_VALUES),
)
RAW = st.tuples(
    st.sampled_from(sorted(FIELDS)),
    DEEP | DEEP.map(lambda nested: '{"platform": ' + nested + "}") | ANY_TEXT,
)


def check(response: Any) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    assert set(response.json) == {"code", "msg", "data"}


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=BODIES)
def test_generated_json_bodies_get_4xx_or_2xx(app: Flask, request: tuple[str, Any]) -> None:
    path, body = request
    client = app.test_client()
    qr_id = create_qr(client)["id"]
    if isinstance(body, dict):
        body = {k: (qr_id if v == "<id>" else v) for k, v in {**VALID[path], **body}.items()}
    check(client.post(path, data=json.dumps(body), headers=bearer(user_token())))


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=RAW)
def test_generated_raw_bodies_get_4xx_or_2xx(app: Flask, request: tuple[str, str]) -> None:
    path, raw = request
    client = app.test_client()
    answer = client.post(
        path,
        data=raw.encode("utf-8", "surrogatepass"),
        headers={**bearer(user_token()), "Content-Type": "application/json"},
    )
    check(answer)
