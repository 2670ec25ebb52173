"""The token command an operator or the main application's developer runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flask import Flask
from flask.testing import FlaskCliRunner
from itsdangerous import URLSafeTimedSerializer

from tests.conftest import create_qr, fill
from tests.live import SECRET

ROOT = Path(__file__).resolve().parent.parent


def test_mint_user_token_works_for_scanning(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(
        args=["mint-user-token", "u-42", "--name", "Ada", "--avatar", "https://example.com/a.png"]
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    payload = URLSafeTimedSerializer(SECRET, salt="qrlogin.user").loads(token)
    assert payload == {"sub": "u-42", "name": "Ada", "avatar": "https://example.com/a.png"}
    client = app.test_client()
    qr_id = create_qr(client)["id"]
    scan = fill(client, token, qr_id, "SCAN")
    assert scan.status_code == 200 and scan.json["data"]["card_id"] == "u-42"


def test_mint_user_token_needs_a_name(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["mint-user-token", "u-42"])
    assert result.exit_code != 0 and "--name" in result.output


def test_flask_command_line_as_documented(redis_url: str) -> None:
    env = {**os.environ, "SECRET_KEY": SECRET, "REDIS_URL": redis_url}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "mint-user-token", "u-1", "--name", "Bo"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    token = result.stdout.strip()
    assert URLSafeTimedSerializer(SECRET, salt="qrlogin.user").loads(token)["sub"] == "u-1"
