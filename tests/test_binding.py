"""Only the browser that created a QR may read, regenerate or redeem it."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import (
    BOTH_ENGINES,
    create_qr,
    fill,
    guest,
    snapshot_of,
    with_cookie,
)
from tests.live import user_token

pytestmark = BOTH_ENGINES


def confirm(app: Flask, qr_id: str) -> None:
    phone = app.test_client()
    token = user_token()
    assert fill(phone, token, qr_id, "SCAN").status_code == 200
    assert fill(phone, token, qr_id, "VERIFY").status_code == 200


def test_other_browser_without_cookie_is_forbidden(app: Flask, client: FlaskClient) -> None:
    qr_id = create_qr(client)["id"]
    confirm(app, qr_id)
    thief = app.test_client()
    stolen = guest(thief, qr_id)
    assert stolen.status_code == 403 and stolen.json["code"] == "QRCODE_FORBIDDEN"
    assert "token" not in stolen.get_data(as_text=True)
    assert "token" in guest(client, qr_id).json["data"]


def test_other_browser_with_its_own_cookie_is_forbidden(app: Flask, client: FlaskClient) -> None:
    qr_id = create_qr(client)["id"]
    other = app.test_client()
    create_qr(other)  # gets a binding cookie of its own
    confirm(app, qr_id)
    assert guest(other, qr_id).status_code == 403
    assert guest(client, qr_id).json["data"]["status"] == "QRCODE_SUCCESS"


def test_forged_binding_cookie_is_forbidden(app: Flask, client: FlaskClient) -> None:
    qr_id = create_qr(client)["id"]
    forger = app.test_client()
    forger.set_cookie("qrlogin_bind", "A" * 43)
    assert guest(forger, qr_id).status_code == 403


def test_redemption_happens_once(app: Flask, client: FlaskClient) -> None:
    qr_id = create_qr(client)["id"]
    confirm(app, qr_id)
    binding = client.get_cookie("qrlogin_bind")
    assert binding is not None
    # The browser, and two copies of its binding (a retry, a copied cookie).
    copies = [with_cookie(app, binding.value) for _ in range(2)]
    answers = [guest(c, qr_id).json["data"] for c in (client, *copies)]
    assert [("token" in a) for a in answers] == [True, False, False]
    assert [a["status"] for a in answers[1:]] == ["QRCODE_ERROR", "QRCODE_ERROR"]


def test_binding_rotates_after_redemption(app: Flask, client: FlaskClient) -> None:
    qr_id = create_qr(client)["id"]
    confirm(app, qr_id)
    before = client.get_cookie("qrlogin_bind")
    assert before is not None and "token" in guest(client, qr_id).json["data"]
    after = client.get_cookie("qrlogin_bind")
    assert after is not None and after.value != before.value
    # The next QR of this browser is bound to the new value only.
    fresh = create_qr(client)["id"]
    assert guest(with_cookie(app, before.value), fresh).status_code == 403
    assert guest(client, fresh).status_code == 200


def test_other_tabs_codes_survive_a_login_but_not_two(app: Flask, client: FlaskClient) -> None:
    """Codes that other tabs showed before a login stay the browser's: one of them
    redeeming does not renew the binding again. After a second renewal they are not."""
    first, second, third = (create_qr(client)["id"] for _ in range(3))
    for qr_id in (first, second):
        confirm(app, qr_id)
    original = client.get_cookie("qrlogin_bind")
    assert original is not None and "token" in guest(client, first).json["data"]
    renewed = client.get_cookie("qrlogin_bind")
    assert renewed is not None and renewed.value != original.value
    assert guest(client, third).json["data"]["status"] == "QRCODE_WAIT"  # still its own
    assert "token" in guest(client, second).json["data"]
    assert client.get_cookie("qrlogin_bind").value == renewed.value
    # A login with a code of the renewed binding renews it again: the oldest codes go.
    fourth = create_qr(client)["id"]
    confirm(app, fourth)
    assert "token" in guest(client, fourth).json["data"]
    assert guest(client, third).status_code == 403
    # The memory of the old binding is the service's to write: a copy of the old cookie
    # cannot claim the new one's codes.
    fifth = create_qr(client)["id"]
    assert guest(with_cookie(app, original.value), fifth).status_code == 403


def test_a_tab_regenerates_its_code_after_another_tab_logged_in(
    app: Flask, client: FlaskClient
) -> None:
    shown, other = create_qr(client)["id"], create_qr(client)["id"]
    confirm(app, other)
    assert "token" in guest(client, other).json["data"]  # the other tab logs in
    create_qr(client, code=shown)  # this tab's "refresh" replaces its own code
    data = guest(client, shown).json["data"]
    assert (data["status"], data["reason"]) == ("QRCODE_ERROR", "replaced")


@pytest.mark.parametrize(
    "value",
    ["Z" * 43, "A" * 43 + ".forged-signature", ""],
    ids=["client-chosen", "bad signature", "empty"],
)
def test_only_issued_binding_cookies_are_accepted(
    app: Flask, client: FlaskClient, value: str
) -> None:
    """A value the client chose binds nothing: creating a QR with it issues a fresh one."""
    planted = with_cookie(app, value)
    response = planted.post("/v1/accounts/qrcode/", json={"platform": "web"})
    assert response.status_code == 201
    issued = planted.get_cookie("qrlogin_bind")
    assert issued is not None and issued.value != value
    # The QR is bound to the issued value, not to the planted one.
    qr_id = response.json["data"]["id"]
    assert guest(with_cookie(app, value), qr_id).status_code == 403
    assert guest(planted, qr_id).status_code == 200


def test_an_ambiguous_double_cookie_binds_nothing(app: Flask, client: FlaskClient) -> None:
    """Two binding cookies (one planted with a longer path, sent first) are refused."""
    victim_qr = create_qr(client)["id"]
    victims = client.get_cookie("qrlogin_bind")
    attacker = app.test_client()
    create_qr(attacker)
    planted = attacker.get_cookie("qrlogin_bind")
    assert victims is not None and planted is not None
    both = f"qrlogin_bind={planted.value}; qrlogin_bind={victims.value}"
    answer = app.test_client().post(
        "/v1/passport/guest", json={"code": victim_qr}, headers={"Cookie": both}
    )
    assert answer.status_code == 403
    created = app.test_client().post(
        "/v1/accounts/qrcode/", json={"platform": "web"}, headers={"Cookie": both}
    )
    assert created.status_code == 201 and "qrlogin_bind=" in created.headers["Set-Cookie"]


def test_over_https_the_cookie_is_host_prefixed_and_secure(app: Flask) -> None:
    browser = app.test_client()
    response = browser.post(
        "/v1/accounts/qrcode/", json={"platform": "web"}, base_url="https://localhost"
    )
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-qrlogin_bind=")
    assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie
    qr_id = response.json["data"]["id"]
    answer = browser.post("/v1/passport/guest", json={"code": qr_id}, base_url="https://localhost")
    assert answer.status_code == 200
    # The unprefixed name is not read over HTTPS.
    value = cookie.split(";")[0].split("=", 1)[1]
    plain = app.test_client().post(
        "/v1/passport/guest",
        json={"code": qr_id},
        base_url="https://localhost",
        headers={"Cookie": f"qrlogin_bind={value}"},
    )
    assert plain.status_code == 403


def test_cookie_is_kept_across_qr_codes(client: FlaskClient) -> None:
    first = client.post("/v1/accounts/qrcode/", json={"platform": "web"})
    assert "qrlogin_bind=" in first.headers["Set-Cookie"]
    second = client.post("/v1/accounts/qrcode/", json={"platform": "web"})
    assert "Set-Cookie" not in second.headers


def test_regenerate_replaces_the_old_qr(app: Flask, client: FlaskClient) -> None:
    old = create_qr(client)["id"]
    new = create_qr(client, code=old)["id"]
    assert new != old
    data = guest(client, old).json["data"]
    assert data["status"] == "QRCODE_ERROR" and data["reason"] == "replaced"
    assert guest(client, new).json["data"]["status"] == "QRCODE_WAIT"
    scan = fill(app.test_client(), user_token(), old, "SCAN")
    assert scan.status_code == 409 and scan.json["data"]["status"] == "QRCODE_ERROR"


def test_regenerate_ignores_foreign_unknown_and_dead_codes(app: Flask, client: FlaskClient) -> None:
    other = app.test_client()
    foreign = create_qr(other)["id"]
    create_qr(client, code=foreign)
    assert guest(other, foreign).json["data"]["status"] == "QRCODE_WAIT"

    create_qr(client, code="x" * 32)  # unknown
    create_qr(client, code="not an id!")  # cannot be an id

    used = create_qr(client)["id"]
    confirm(app, used)
    binding = client.get_cookie("qrlogin_bind")
    assert binding is not None
    guest(client, used)  # redeems, and the browser gets a new binding
    keeper = with_cookie(app, binding.value)  # the binding the used QR has
    before = snapshot_of(app, keeper, used)
    create_qr(keeper, code=used)
    after = snapshot_of(app, keeper, used)
    assert after == before and after.view["reason"] == "used"


def test_regenerate_without_binding_cookie_ignores_code(app: Flask, client: FlaskClient) -> None:
    victim = create_qr(client)["id"]
    create_qr(app.test_client(), code=victim)
    assert guest(client, victim).json["data"]["status"] == "QRCODE_WAIT"
