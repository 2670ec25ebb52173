"""Settings come from the environment; invalid ones stop the process with a clear message."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qrlogin import settings
from qrlogin.config import ServerSettings, Settings
from qrlogin.exceptions import ConfigError
from qrlogin.keycheck import DEMO_SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "kq3V9xL2mP7rT4wZ8bN1cF6hJ5dS0gYe"


def test_defaults() -> None:
    found = Settings.from_env({"SECRET_KEY": GOOD_KEY})
    assert found.qr_ttl_s == 120
    assert found.prefix == "rk://scanforpclogin/"
    assert found.platforms == frozenset()
    assert found.poll_interval_s == 2
    assert found.sse_heartbeat_s == 15
    assert found.number_matching is False
    assert found.demo is False
    assert found.user_token_max_age_s == 30 * 24 * 3600
    assert found.login_token_max_age_s == 24 * 3600
    assert found.rate_limits is True
    assert found.trusted_proxies == 0
    assert found.embedded is True
    assert found.redis_tls_verify == "required" and found.redis_ca_file is None
    assert found.redis_max_connections == 20
    assert found.ipv6_prefix == 64
    assert found.log_format == "text"


def test_demo_mode_needs_no_secret() -> None:
    assert Settings.from_env({"QRLOGIN_DEMO": "1"}).secret_key == DEMO_SECRET_KEY


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SECRET_KEY is required"),
        ({"SECRET_KEY": "short"}, "at least 32"),
        ({"SECRET_KEY": "kq3V9xL2mP7rT4wZ8bN1cF6h"}, "at least 32"),  # 24 random characters
        ({"SECRET_KEY": "a" * 40}, "too weak"),
        ({"SECRET_KEY": "ab" * 20}, "too weak"),
        ({"SECRET_KEY": "0123456789abcdef"}, "at least 32"),
        ({"SECRET_KEY": "0123456789abcdef0123456789abcdef"}, "placeholder"),
        ({"SECRET_KEY": "your-secret-key-here-please-change-it"}, "placeholder"),
        ({"SECRET_KEY": "CHANGE_ME_to_something_random_1234"}, "placeholder"),
        ({"SECRET_KEY": DEMO_SECRET_KEY}, "public demo key"),
        ({"SECRET_KEY": DEMO_SECRET_KEY + "-2026"}, "public demo key"),
        ({"SECRET_KEY": "aaaaaaaaaaaaaaaa", "QRLOGIN_DEMO": "1"}, "at least 32"),
        ({"SECRET_KEY": "x" * 40, "QRLOGIN_DEMO": "1"}, "too weak"),
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
        ({"QRLOGIN_REDIS_TLS_VERIFY": "optional"}, "QRLOGIN_REDIS_TLS_VERIFY must be one of"),
        ({"QRLOGIN_REDIS_CA_FILE": "/nonexistent/ca.pem"}, "QRLOGIN_REDIS_CA_FILE: cannot read"),
        ({"QRLOGIN_REDIS_MAX_CONNECTIONS": "1"}, "QRLOGIN_REDIS_MAX_CONNECTIONS must be between"),
        ({"QRLOGIN_IPV6_PREFIX": "129"}, "QRLOGIN_IPV6_PREFIX must be between"),
        ({"QRLOGIN_LOG_FORMAT": "xml"}, "QRLOGIN_LOG_FORMAT must be one of"),
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


def test_tls_settings_reach_every_connection(tmp_path: Path) -> None:
    """For a rediss:// URL the command pool, the hub's subscribers, the limiter and the
    sentinels are all given the same verification; a plain URL gets none of it."""
    from qrlogin.engine import tls_options

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    base = {"SECRET_KEY": GOOD_KEY, "QRLOGIN_REDIS_CA_FILE": str(ca)}
    plain = Settings.from_env({**base, "REDIS_URL": "redis://h:6379/0"})
    assert tls_options(plain) == {}
    tls = Settings.from_env({**base, "REDIS_URL": "rediss://h:6380/0"})
    assert tls_options(tls) == {"ssl_cert_reqs": "required", "ssl_ca_certs": str(ca)}
    heroku = Settings.from_env(
        {"SECRET_KEY": GOOD_KEY, "REDIS_URL": "rediss://h:6380", "QRLOGIN_REDIS_TLS_VERIFY": "none"}
    )
    assert tls_options(heroku) == {"ssl_cert_reqs": "none"}
    sentinel = Settings.from_env(
        {**base, "REDIS_URL": "rediss://s1:26379,s2:26379", "QRLOGIN_REDIS_MODE": "sentinel"}
    )
    assert tls_options(sentinel)["ssl"] is True


def test_heroku_files_agree_with_the_project() -> None:
    """.python-version names a version pyproject.toml supports, and app.json's settings
    are valid ones."""
    import json
    import tomllib

    version = (ROOT / ".python-version").read_text().strip()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11,<3.14" and version in {"3.11", "3.12", "3.13"}
    app = json.loads((ROOT / "app.json").read_text())
    env = {name: spec["value"] for name, spec in app["env"].items() if "value" in spec}
    settings = Settings.from_env({**env, "SECRET_KEY": GOOD_KEY, "REDIS_URL": "rediss://h:1"})
    assert settings.trusted_proxies == 1 and settings.redis_tls_verify == "none"


def test_the_readme_table_is_the_settings_table() -> None:
    """README.md shows every setting as ``qrlogin.settings`` defines it: the table there is
    the output of ``python -m qrlogin.settings``."""
    readme = (ROOT / "README.md").read_text()
    assert settings.markdown() in readme


#: Where code reads a variable of the service from the environment by its name.
READ_BY_NAME = r"environ(?:\.get\(|\[)\"((?:QRLOGIN_|SECRET|REDIS|PORT|WEB|HOST)[A-Z_]*)"


def test_every_setting_is_read_by_the_table() -> None:
    """Each field of Settings and ServerSettings has a row, and each row a field; no
    module reads one of the service's variables from the environment itself."""
    app_fields = {f.name for f in dataclasses.fields(Settings)}
    server_fields = {f.name for f in dataclasses.fields(ServerSettings)}
    assert {s.field for s in settings.TABLE if not s.server} == app_fields
    assert {s.field for s in settings.TABLE if s.server} == server_fields
    read_raw = set()
    for path in [*(ROOT / "qrlogin").glob("*.py"), ROOT / "app.py", ROOT / "gunicorn.conf.py"]:
        read_raw |= set(
            re.findall(
                r"environ(?:\.get\(|\[)\"((?:QRLOGIN_|SECRET|REDIS|PORT|WEB)[A-Z_]*)",
                path.read_text(),
            )
        )
    assert not read_raw


def test_server_settings_are_checked_as_the_app_settings_are() -> None:
    assert ServerSettings.from_env({}).port == 8000
    assert ServerSettings.from_env({"PORT": "5000", "QRLOGIN_GC_FREEZE": "0"}).gc_freeze is False
    with pytest.raises(ConfigError, match="QRLOGIN_WORKER_CONNECTIONS must be a whole number"):
        ServerSettings.from_env({"QRLOGIN_WORKER_CONNECTIONS": "lots"})
    with pytest.raises(ConfigError, match="WEB_CONCURRENCY must be between 1 and 256"):
        ServerSettings.from_env({"WEB_CONCURRENCY": "0"})
