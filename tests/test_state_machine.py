"""Random sequences of scans, confirmations, cancels, redemptions and regenerations from
several users and browsers, with a moving clock, against real Redis; the invariants hold."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from qrlogin import create_app
from qrlogin.models import TERMINAL, bind_digest
from tests.conftest import shift_clock, svc
from tests.live import SECRET

USERS = ("u-ann", "u-ben", "u-cat")
TTL_S = 120


@dataclass
class Known:
    """What the test has seen of one QR."""

    id: str
    owner: int
    expire: int
    bind: str  # the binding cookie the QR was created with (redemption rotates the browser's)
    scanner: str | None = None
    terminal: tuple[str, str | None] | None = None
    tokens: list[str] = field(default_factory=list)


class LoginMachine(RuleBasedStateMachine):
    qrs = Bundle("qrs")

    def __init__(self) -> None:
        super().__init__()
        self.app: Flask = LoginMachine.app_for_run
        svc(self.app).redis.flushdb()
        self.skew_s = 0
        shift_clock(self.app, 0)
        self.browsers: list[FlaskClient] = [self.app.test_client() for _ in range(3)]
        self.tokens = {u: svc(self.app).tokens.mint_user(u, u.upper()) for u in USERS}
        self.known: dict[str, Known] = {}
        #: Each login token handed out, and whether its session was ended since.
        self.logins: dict[str, bool] = {}

    app_for_run: Flask

    def now(self) -> float:
        return time.time() + self.skew_s

    def binding(self, browser: int) -> str:
        cookie = self.browsers[browser].get_cookie("qrlogin_bind")
        return "" if cookie is None else cookie.value

    def accepts(self, browser: int, qr: Known) -> bool:
        """Whether the browser's binding is the QR's, or the one it replaced at its last
        login (the cookie's signed text names that one's digest after a ``~``)."""
        cookie = self.binding(browser)
        previous = cookie.rsplit(".", 1)[0].partition("~")[2]
        return cookie == qr.bind or (previous != "" and previous == bind_digest(qr.bind))

    def state(self, qr: Known) -> dict[str, Any]:
        return svc(self.app).store.read(qr.id, bind_digest(qr.bind)).view

    def observe(self, qr: Known, view: dict[str, Any]) -> None:
        """Check one answer against what was seen before, then remember it."""
        status, reason = view["status"], view.get("reason")
        if qr.terminal is not None:
            assert (status, reason) == qr.terminal, "a QR left a terminal state"
        if status in TERMINAL:
            qr.terminal = (status, reason)
        user = view.get("user")
        if user is not None:
            assert qr.scanner in (None, user["id"]), "a second scanner won"
            qr.scanner = user["id"]
        if self.now() >= qr.expire + 1 and qr.terminal is None:
            raise AssertionError(f"expired QR still {status}")

    @rule(target=qrs, browser=st.integers(0, 2))
    def create(self, browser: int) -> Known:
        response = self.browsers[browser].post("/v1/accounts/qrcode/", json={"platform": "web"})
        assert response.status_code == 201
        data = response.json["data"]
        qr = Known(data["id"], browser, data["expire"], self.binding(browser))
        self.known[qr.id] = qr
        return qr

    @rule(target=qrs, old=qrs)
    def regenerate(self, old: Known) -> Known:
        before = self.state(old)
        still_bound = self.accepts(old.owner, old)
        response = self.browsers[old.owner].post(
            "/v1/accounts/qrcode/", json={"platform": "web", "code": old.id}
        )
        assert response.status_code == 201
        after = self.state(old)
        if before["status"] not in TERMINAL and still_bound:
            assert (after["status"], after.get("reason")) == ("QRCODE_ERROR", "replaced")
        if not still_bound:  # a browser with a new binding cannot replace its old QRs
            assert (after["status"], after.get("reason")) in {
                (before["status"], before.get("reason")),
                ("QRCODE_EXPIRE", None),
            }
        self.observe(old, after)
        data = response.json["data"]
        qr = Known(data["id"], old.owner, data["expire"], self.binding(old.owner))
        self.known[qr.id] = qr
        return qr

    @rule(qr=qrs, user=st.sampled_from(USERS), step=st.sampled_from(["SCAN", "VERIFY", "CANCEL"]))
    def phone(self, qr: Known, user: str, step: str) -> None:
        expired_before = self.now() >= qr.expire + 0.5
        response = self.browsers[0].post(
            "/v1/accounts/qrcode_fill",
            json={"id": qr.id, "step": step},
            headers={"Authorization": f"Bearer {self.tokens[user]}"},
        )
        code = response.status_code
        assert code in (200, 409, 410), response.json
        if code == 200:
            repeat_cancel = step == "CANCEL" and qr.terminal == ("QRCODE_CANCEL", None)
            # Only repeating a cancel that already happened (a no-op) may answer 200 late.
            assert not expired_before or repeat_cancel, "a step succeeded after the deadline"
            assert qr.scanner in (None, user)
            assert qr.terminal is None or repeat_cancel
        if code == 410:
            assert self.now() >= qr.expire - 0.5
        self.observe(qr, self.state(qr))

    @rule(qr=qrs, user=st.sampled_from(USERS))
    def log_in(self, qr: Known, user: str) -> None:
        """The usual path as one rule (scan, confirm, the owner redeems), so that runs
        reach redemption and the binding's rotation often."""
        for step in ("SCAN", "VERIFY"):
            self.phone(qr, user, step)
        self.redeem(qr, qr.owner)

    @rule(qr=qrs, browser=st.integers(0, 2))
    def redeem(self, qr: Known, browser: int) -> None:
        bound = self.accepts(browser, qr)
        by_previous = bound and self.binding(browser) != qr.bind
        before = self.binding(browser)
        response = self.browsers[browser].post("/v1/passport/guest", json={"code": qr.id})
        if not bound:
            assert response.status_code == 403
            assert "token" not in response.get_data(as_text=True)
            return
        data = response.json["data"]
        if "token" in data:
            qr.tokens.append(data["token"])
            self.logins[data["token"]] = False
            if by_previous:  # renewed at an earlier login already: not again
                assert self.binding(browser) == before, "the binding rotated twice"
            else:
                assert self.binding(browser) != qr.bind, "the binding did not rotate"
            assert data["status"] == "QRCODE_SUCCESS"
            assert self.now() < qr.expire + 0.5, "redeemed after the deadline"
        else:
            self.observe(qr, {**data, "id": qr.id})

    @rule(seconds=st.sampled_from([1, 5, 30, 60, 119, 121]))
    def wait(self, seconds: int) -> None:
        self.skew_s += seconds
        shift_clock(self.app, self.skew_s)

    def pick(self, index: int) -> str | None:
        tokens = sorted(self.logins)
        return tokens[index % len(tokens)] if tokens else None

    @rule(index=st.integers(0, 20))
    def log_out(self, index: int) -> None:
        token = self.pick(index)
        if token is None:
            return
        answer = self.app.test_client().post(
            "/v1/passport/logout", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200
        assert answer.json["data"]["session"]["status"] == "ended"
        self.logins[token] = True

    @rule(index=st.integers(0, 20), user=st.sampled_from(USERS))
    def end_on_the_phone(self, index: int, user: str) -> None:
        token = self.pick(index)
        if token is None:
            return
        login = svc(self.app).tokens.check_login(token)
        answer = self.app.test_client().delete(
            f"/v1/accounts/sessions/{login.sid}",
            headers={"Authorization": f"Bearer {self.tokens[user]}"},
        )
        if user == login.user.id:
            assert answer.status_code == 200
            self.logins[token] = True
        else:
            assert answer.status_code == 404, "another user's session is not theirs to see"

    @invariant()
    def sessions_end_when_ended_and_only_then(self) -> None:
        client = self.app.test_client()
        for token, ended in self.logins.items():
            me = client.get("/v1/passport/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == (401 if ended else 200), me.json

    @invariant()
    def redeemed_at_most_once(self) -> None:
        for qr in self.known.values():
            assert len(qr.tokens) <= 1, "a login token was handed out twice"
            if qr.tokens:
                assert svc(self.app).tokens.check_login(qr.tokens[0]).qr_id == qr.id


@pytest.mark.slow
def test_login_state_machine(redis_url: str) -> None:
    LoginMachine.app_for_run = create_app(
        {"SECRET_KEY": SECRET, "REDIS_URL": redis_url, "QRLOGIN_RATE_LIMITS": "off"}
    )
    run = LoginMachine.TestCase
    run.settings = settings(
        max_examples=40,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        # No shrinking in CI: it can take minutes; a failure prints its whole sequence.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        report_multiple_bugs=False,
    )
    run().runTest()
