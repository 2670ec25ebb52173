"""Clients outside a browser keep the binding cookie themselves: the documented examples
(docs/examples) run against a real service while the test plays the phone."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from servers.process import ROOT
from tests.conftest import StartService
from tests.live import margin, phone_step, user_token

pytestmark = pytest.mark.slow

EXAMPLES = ROOT / "docs" / "examples"


def node() -> str:
    found = shutil.which("node")
    if found is None or not (EXAMPLES / "node_modules" / "eventsource").is_dir():
        pytest.fail(
            "The Node client test needs Node.js and the example's packages: "
            "apt-get install nodejs npm, then ./dev test (it runs npm ci in docs/examples)"
        )
    return found


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("client", ["node eventsource", "python httpx"])
def test_example_client_logs_in(
    start_service: StartService, request: pytest.FixtureRequest, client: str, scheme: str
) -> None:
    """Over plain HTTP, and over HTTPS (gunicorn serving TLS), where the binding cookie is
    named __Host-qrlogin_bind."""
    tls = request.getfixturevalue("trust") if scheme == "https" else None
    service = start_service(tls=tls, QRLOGIN_RATE_LIMITS="off")
    if client == "node eventsource":
        argv = [node(), str(EXAMPLES / "node_login.mjs"), service.url]
    else:
        argv = [sys.executable, str(EXAMPLES / "httpx_login.py"), service.url]
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=EXAMPLES
    )
    assert process.stdout is not None
    try:
        lines = [process.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("qr "), lines
        assert lines[1].startswith("content {"), lines
        assert lines[2].strip() == "status QRCODE_WAIT", lines  # the stream is open
        qr_id = lines[0].split()[1]
        token = user_token()
        assert phone_step(service.url, token, qr_id, "SCAN").status_code == 200
        assert phone_step(service.url, token, qr_id, "VERIFY").status_code == 200
        rest, _ = process.communicate(timeout=margin(60))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, rest
    statuses = [line.split()[1] for line in rest.splitlines() if line.startswith("status ")]
    # Steps this quick may be coalesced on the stream: the newest state always arrives.
    assert statuses[-1] == "QRCODE_SUCCESS", rest
    assert rest.splitlines()[-1] == "logged in as Alice"
