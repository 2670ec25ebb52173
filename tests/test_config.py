"""Settings come from the environment; invalid ones stop the process with a clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qrlogin.config import DEMO_SECRET_KEY, Settings
from qrlogin.exceptions import ConfigError

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "kq3V9xL2mP7rT4wZ8bN1cF6hJ5dS0gYe"


def test_defaults() -> None:
    settings = Settings.from_env({"SECRET_KEY": GOOD_KEY})
    assert settings.qr_ttl_s == 120
    assert settings.prefix == "rk://scanforpclogin/"
    assert settings.platforms == frozenset()
    assert settings.poll_interval_s == 2
    assert settings.sse_heartbeat_s == 15
    assert settings.number_matching is False
    assert settings.demo is False
    assert settings.user_token_max_age_s == 30 * 24 * 3600
    assert settings.login_token_max_age_s == 24 * 3600
    assert settings.rate_limits is True
    assert settings.trusted_proxies == 0
    assert settings.embedded is True


def test_demo_mode_needs_no_secret() -> None:
    assert Settings.from_env({"QRLOGIN_DEMO": "1"}).secret_key == DEMO_SECRET_KEY


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SECRET_KEY is required"),
        ({"SECRET_KEY": "short"}, "at least 16"),
        ({"SECRET_KEY": "a" * 16}, "too weak"),
        ({"SECRET_KEY": "abababababababababababab"}, "too weak"),
        ({"SECRET_KEY": "0123456701234567"}, "too weak"),
        ({"SECRET_KEY": DEMO_SECRET_KEY}, "public demo key"),
        ({"QRLOGIN_QR_TTL": "two minutes"}, "QRLOGIN_QR_TTL must be a whole number"),
        ({"QRLOGIN_QR_TTL": "0"}, "QRLOGIN_QR_TTL must be between"),
        ({"QRLOGIN_POLL_INTERVAL": "-1"}, "QRLOGIN_POLL_INTERVAL"),
        ({"QRLOGIN_SSE_HEARTBEAT": "60"}, "QRLOGIN_SSE_HEARTBEAT"),
        ({"QRLOGIN_NUMBER_MATCHING": "maybe"}, "QRLOGIN_NUMBER_MATCHING must be 1 or 0"),
        ({"QRLOGIN_DEMO": "sure"}, "QRLOGIN_DEMO"),
        ({"QRLOGIN_PLATFORMS": "PC,bad name"}, "QRLOGIN_PLATFORMS"),
        ({"QRLOGIN_RATE_LIMITS": "sometimes"}, "QRLOGIN_RATE_LIMITS"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must start with"),
        ({"QRLOGIN_PREFIX": ""}, "QRLOGIN_PREFIX"),
        ({"QRLOGIN_TRUSTED_PROXIES": "x"}, "QRLOGIN_TRUSTED_PROXIES"),
    ],
)
def test_invalid_settings_are_refused(env: dict[str, str], message: str) -> None:
    full = {"SECRET_KEY": GOOD_KEY, **env} if "SECRET_KEY" not in env and env else env
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(full)


def test_wsgi_refuses_to_start_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "QRLOGIN_QR_TTL": "0", "SECRET_KEY": GOOD_KEY},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "QRLOGIN_QR_TTL must be between 1 and 3600" in result.stderr
