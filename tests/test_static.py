"""Static files as gunicorn serves them: compressed, with validators and cache headers,
and a favicon, so that no page of the service asks for anything that is not there."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import brotli
import pytest
import requests
from playwright.sync_api import Browser

from qrlogin.static_files import MAX_AGE_S, STATIC
from servers.process import ROOT
from servers.service import Service
from tests.conftest import StartService
from tests.live import CHROMIUM, CHROMIUM_ARGS, margin

pytestmark = pytest.mark.slow


@pytest.fixture
def service(start_service: StartService) -> Service:
    return start_service(QRLOGIN_DEMO="1")


@pytest.mark.parametrize("path", ["qrlogin.js", "vendor/jsQR.js", "style.css"])
@pytest.mark.parametrize("encoding", ["br", "gzip", None])
def test_static_files_are_compressed_and_validated(
    service: Service, path: str, encoding: str | None
) -> None:
    url = f"{service.url}/static/{path}"
    headers = {"Accept-Encoding": encoding or "identity"}
    answer = requests.get(url, headers=headers, stream=True, timeout=margin(30))
    body = answer.raw.read()  # as sent, not decoded
    original = (STATIC / path).read_bytes()
    assert answer.status_code == 200
    assert answer.headers.get("Content-Encoding") == encoding
    decoded = {"br": brotli.decompress, "gzip": gzip.decompress}.get(encoding or "", bytes)(body)
    assert decoded == original
    if encoding:
        assert len(body) < len(original) / 2, (path, encoding, len(body))
        assert "Accept-Encoding" in answer.headers["Vary"]
    assert answer.headers["Cache-Control"] == f"max-age={MAX_AGE_S}, public"
    assert answer.headers["ETag"] and answer.headers["Last-Modified"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    again = requests.get(url, timeout=margin(30),
                         headers={**headers, "If-None-Match": answer.headers["ETag"]})  # fmt: skip
    assert again.status_code == 304 and not again.content


def test_the_favicon(service: Service) -> None:
    answer = requests.get(service.url + "/favicon.ico", timeout=margin(30))
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("image/svg")
    assert answer.content == (STATIC / "favicon.svg").read_bytes()


def test_no_page_asks_for_what_is_not_there(service: Service, chromium: Browser) -> None:
    context = chromium.new_context()
    page = context.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400
            and r.request.resource_type != "document" else None)  # fmt: skip
    for path in ("/", "/m", "/app"):
        page.goto(service.url + path)
        page.wait_for_load_state("networkidle")
    assert failed == [], failed
    context.close()


LIGHTHOUSE = ROOT / "tests" / "lighthouse" / "node_modules" / ".bin" / "lighthouse"


@pytest.mark.parametrize("path", ["/", "/m", "/app"])
def test_lighthouse_scores_best_practices_100(service: Service, path: str, tmp_path: Path) -> None:
    """Lighthouse (tests/lighthouse, pinned) in Debian's Chromium: every best practice met
    on the login page, the phone stand-in and, logged in, /app."""
    from tests.live import log_in

    if not LIGHTHOUSE.exists() or CHROMIUM is None:
        pytest.fail("Lighthouse runs from tests/lighthouse (./dev test installs it) in chromium")
    headers = {}
    if path == "/app":
        cookie = log_in(service).session.cookies["qrlogin_session"]
        headers = {"Cookie": f"qrlogin_session={cookie}"}
    report = tmp_path / "report.json"
    done = subprocess.run(
        [str(LIGHTHOUSE), service.url + path, "--only-categories=best-practices",
         "--output=json", f"--output-path={report}", "--quiet",
         f"--extra-headers={json.dumps(headers)}",
         "--chrome-flags=" + " ".join(["--headless", *CHROMIUM_ARGS])],
        env={**os.environ, "CHROME_PATH": CHROMIUM}, capture_output=True, text=True,
        timeout=margin(180), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result.get("runtimeError") is None, result["runtimeError"]
    category = result["categories"]["best-practices"]
    missed = [ref["id"] for ref in category["auditRefs"]
              if (result["audits"][ref["id"]]["score"] or 1) < 1]  # fmt: skip
    print(
        f"Lighthouse {result['lighthouseVersion']} best practices on {path}: "
        f"{category['score'] * 100:.0f}"
    )
    assert category["score"] == 1, missed
