"""The local run (`python app.py`): gevent, the embedded engine, and a working stream."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from itsdangerous import URLSafeTimedSerializer

from qrlogin import create_app
from qrlogin.exceptions import HubError
from qrlogin.keycheck import DEMO_SECRET_KEY
from servers.process import ROOT, free_port, http_answers
from tests.live import SECRET, Browser, margin, phone_step, wait_until


def test_hub_refuses_to_start_without_gevent(redis_url: str) -> None:
    app = create_app({"SECRET_KEY": SECRET, "REDIS_URL": redis_url})
    with pytest.raises(HubError, match="socket module is not patched"):
        app.extensions["qrlogin"].hub.start()


@pytest.fixture
def local_run() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SECRET_KEY")}
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT, env={**env, "PORT": str(port)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: process.poll() is not None or http_answers(url + "/healthz"),
            60,
            "python app.py answers",
        )
        assert process.poll() is None, "python app.py exited while starting"
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(margin(10))


@pytest.mark.slow
def test_local_run_uses_embedded_engine_loudly_and_streams(
    local_run: tuple[str, subprocess.Popen[str]],
) -> None:
    url, process = local_run
    browser = Browser(url)
    qr = browser.create()
    events = browser.stream(qr["id"]).events()
    assert next(events).json["status"] == "QRCODE_WAIT"
    token = URLSafeTimedSerializer(DEMO_SECRET_KEY, salt="qrlogin.user").dumps(
        {"sub": "demo", "name": "Demo"}
    )
    phone_step(url, str(token), qr["id"], "SCAN")
    assert next(events).json["status"] == "QRCODE_SCANNED"
    process.terminate()
    output, _ = process.communicate(timeout=margin(30))
    assert "EMBEDDED single-process" in output and "NOT FOR PRODUCTION" in output
