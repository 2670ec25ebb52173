"""The relying parties' list (QRLOGIN_OIDC_CLIENTS) and the CLI that writes it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qrlogin.config import Settings
from qrlogin.exceptions import ConfigError
from qrlogin.oidc import clients
from servers.process import ROOT
from tests.live import SECRET

GOOD = {"client_id": "web", "client_secret": "s" * 32, "redirect_uris": ["https://app.example/cb"]}


def settings_with(raw: str) -> Settings:
    return Settings.from_env({"SECRET_KEY": SECRET, "QRLOGIN_OIDC_CLIENTS": raw})


def test_a_list_or_a_file_of_it(tmp_path: Path) -> None:
    assert settings_with(json.dumps([GOOD])).oidc_clients.get("web") is not None
    listed = tmp_path / "clients.json"
    listed.write_text(
        json.dumps([GOOD, {"client_id": "spa", "redirect_uris": ["com.example.app:/cb"]}])
    )
    registry = settings_with(str(listed)).oidc_clients
    assert len(registry) == 2 and registry.get("spa").public
    assert not settings_with("").oidc_clients.clients


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({**GOOD, "redirect_uris": ["http://app.example/cb"]}, "must be https://"),
        ({**GOOD, "redirect_uris": ["https://app.example/cb#x"]}, "without a fragment"),
        ({**GOOD, "redirect_uris": []}, "not empty"),
        ({**GOOD, "client_secret": "short"}, "at least 24"),
        ({**GOOD, "client_id": "no spaces"}, "client_id"),
        ({**GOOD, "id_token_signed_response_alg": "none"}, "id_token_signed_response_alg"),
        ({**GOOD, "grant_types": ["implicit"]}, "unknown field"),
        ({**GOOD, "backchannel_logout_uri": "com.example.app:/x"}, "http(s)"),
        ("web", "must be an object"),
    ],
)
def test_a_bad_entry_stops_the_start_naming_what_is_wrong(entry: object, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        settings_with(json.dumps([entry]))


def test_loopback_redirects_are_allowed_as_rfc_8252_allows() -> None:
    for uri in ("http://127.0.0.1:9000/cb", "http://localhost/cb", "http://[::1]:8000/cb"):
        assert settings_with(json.dumps([{**GOOD, "redirect_uris": [uri]}])).oidc_clients.get("web")


def test_twice_the_same_id_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="twice"):
        settings_with(json.dumps([GOOD, GOOD]))
    with pytest.raises(ConfigError, match="cannot read"):
        settings_with(str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="not valid JSON"):
        settings_with("[{")


def test_the_cli_adds_clients_to_a_file_and_lists_them_without_secrets(tmp_path: Path) -> None:
    path = tmp_path / "clients.json"
    env = {"PATH": "/usr/bin:/bin", "SECRET_KEY": SECRET, "QRLOGIN_DEMO": "1"}

    def flask(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    added = flask(
        "clients",
        "add",
        "Grafana",
        "--redirect-uri",
        "https://grafana.example/login/generic_oauth",
        "--backchannel-logout-uri",
        "https://grafana.example/bc",
        "--file",
        str(path),
    )
    assert added.returncode == 0, added.stderr
    assert (
        flask(
            "clients",
            "add",
            "Phone app",
            "--public",
            "--redirect-uri",
            "com.example.app:/cb",
            "--file",
            str(path),
        ).returncode
        == 0
    )
    registry = clients.parse(str(path))
    grafana, app = list(registry)
    assert (
        grafana.name == "Grafana"
        and len(grafana.client_secret or "") >= 32
        and not app.client_secret
    )
    assert grafana.backchannel_logout_uri == "https://grafana.example/bc"
    listed = flask("clients", "list", "--file", str(path))
    assert grafana.client_id in listed.stdout and "public" in listed.stdout
    assert grafana.client_secret not in listed.stdout
    refused = flask(
        "clients", "add", "Bad", "--redirect-uri", "http://evil.example/cb", "--file", str(path)
    )
    assert refused.returncode != 0 and "must be https://" in refused.stderr
