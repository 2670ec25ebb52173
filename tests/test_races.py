"""Races with real concurrency against Redis: the Lua transitions keep them honest."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest
from flask import Flask

from qrlogin import create_app
from tests.conftest import create_qr, fill, guest, snapshot_of, svc, with_cookie
from tests.live import user_token

ROUNDS = 60


def run_together(*calls: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(len(calls))

    def go(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(go, calls))


#: The races run on one Redis and on a Redis Cluster.
ENGINES = pytest.mark.parametrize("engine", ["redis", "cluster"])


@ENGINES
def test_two_users_scanning_at_once_exactly_one_wins(app: Flask) -> None:
    browser = app.test_client()
    tokens = [user_token(f"u-{n}", f"User {n}") for n in range(2)]
    phones = [app.test_client() for _ in tokens]
    winners = []
    for _ in range(ROUNDS):
        qr_id = create_qr(browser)["id"]
        answers = run_together(
            *(partial(fill, p, t, qr_id, "SCAN") for p, t in zip(phones, tokens, strict=True))
        )
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 409], codes
        winner = next(a for a in answers if a.status_code == 200).json["data"]["card_id"]
        loser = next(a for a in answers if a.status_code == 409)
        assert loser.json["data"]["status"] == "QRCODE_SCANNED"
        assert guest(browser, qr_id).json["data"]["user"]["id"] == winner
        assert snapshot_of(app, browser, qr_id).version == 2
        winners.append(winner)
    assert len(winners) == ROUNDS


@ENGINES
def test_many_browsers_redeeming_at_once_get_one_token(app: Flask) -> None:
    browser = app.test_client()
    token = user_token()
    for _ in range(20):
        qr_id = create_qr(browser)["id"]
        fill(browser, token, qr_id, "SCAN")
        fill(browser, token, qr_id, "VERIFY")
        answers = run_together(*(partial(guest, browser, qr_id) for _ in range(4)))
        # A request that starts after the redemption carries the browser's new binding.
        assert {a.status_code for a in answers} <= {200, 403}
        assert sum("token" in (a.json["data"] or {}) for a in answers) == 1


@pytest.mark.slow
def test_verify_racing_expiry_succeeds_before_or_fails_after_never_both(
    env: dict[str, str],
) -> None:
    env["QRLOGIN_QR_TTL"] = "2"
    app = create_app(env)
    svc(app).redis.flushdb()
    browser = app.test_client()
    token = user_token()
    time.sleep(1 - time.time() % 1)  # start at a second boundary: deadlines are whole seconds
    qrs = []
    for _ in range(24):
        qr = create_qr(browser)
        assert fill(browser, token, qr["id"], "SCAN").status_code == 200
        qrs.append(qr)
    binding = browser.get_cookie("qrlogin_bind")
    assert binding is not None  # a redemption gives the browser a new one: keep this one
    deadline = min(q["expire"] for q in qrs)
    qrs = [q for q in qrs if q["expire"] == deadline]  # all created in the same second

    def verify_at(qr_id: str, at: float) -> int:
        time.sleep(max(0.0, at - time.time()))
        return int(fill(app.test_client(), token, qr_id, "VERIFY").status_code)

    def poll_at(qr_id: str, at: float) -> None:
        time.sleep(max(0.0, at - time.time()))
        guest(with_cookie(app, binding.value), qr_id)

    spread = 0.15
    calls: list[Callable[[], Any]] = []
    for n, qr in enumerate(qrs):
        at = deadline - spread + 2 * spread * n / max(1, len(qrs) - 1)
        calls.append(partial(verify_at, qr["id"], at))
        calls.append(partial(poll_at, qr["id"], at))
    results = run_together(*calls)[0::2]
    time.sleep(max(0.0, deadline - time.time()) + 0.1)

    for qr, code in zip(qrs, results, strict=True):
        assert code in (200, 410), code
        snapshot = snapshot_of(app, with_cookie(app, binding.value), qr["id"])
        # WAIT(1) -> SCANNED(2) -> [SUCCESS(3)] -> EXPIRE or redeemed: a 200 means SUCCESS
        # happened first; a 410 means it never did.
        if code == 200:
            assert (snapshot.status, snapshot.version) in {
                ("QRCODE_EXPIRE", 4),
                ("QRCODE_ERROR", 4),
            }
        else:
            assert (snapshot.status, snapshot.version) == ("QRCODE_EXPIRE", 3)
    print("verify outcomes around the deadline:", sorted(results))
