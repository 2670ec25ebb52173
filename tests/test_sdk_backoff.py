"""The SDK in Chromium, told "not now" (503 OVERLOADED with Retry-After, as admission
control answers): it asks again after the Retry-After, with jitter, and the page still
gets its QR."""

from __future__ import annotations

import itertools
import json
import time

import pytest
from playwright.sync_api import Page, Route, expect

from servers.service import Service

pytestmark = pytest.mark.slow

SHED = 2


def test_the_sdk_backs_off_by_retry_after_with_jitter(page: Page, service: Service) -> None:
    asked: list[float] = []

    def overloaded(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        asked.append(time.monotonic())
        if len(asked) <= SHED:
            body = {"code": "OVERLOADED", "msg": "the service is busy: try again", "data": None}
            headers = {"Retry-After": "1", "Content-Type": "application/json"}
            route.fulfill(status=503, headers=headers, body=json.dumps(body))
        else:
            route.continue_()

    page.route("**/v1/accounts/qrcode/", overloaded)
    page.goto(service.url + "/")
    expect(page.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_WAIT", timeout=30_000)
    assert len(asked) == SHED + 1
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    # Retry-After 1 s, times a jitter in [0.5, 1.5): never sooner than half of it.
    assert all(gap >= 0.5 for gap in gaps), gaps
