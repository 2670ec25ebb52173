"""The SDK's TypeScript declarations, checked by the TypeScript compiler against a small
front end that uses them, and the SDK as an ES module in Chromium."""

from __future__ import annotations

import subprocess

import pytest
from playwright.sync_api import Page, expect

from servers.process import ROOT
from servers.service import Service
from tests.live import margin

EXAMPLES = ROOT / "docs" / "examples"
TSC = EXAMPLES / "node_modules" / ".bin" / "tsc"


def tsc(*args: str) -> subprocess.CompletedProcess[str]:
    if not TSC.exists():
        pytest.fail(
            "The type check needs the TypeScript compiler: ./dev test runs npm ci in docs/examples"
        )
    return subprocess.run(
        [str(TSC), "-p", "tsconfig.json", *args],
        cwd=EXAMPLES, capture_output=True, text=True, timeout=margin(120), check=False,
    )  # fmt: skip


def test_the_declarations_type_check_a_front_end() -> None:
    result = tsc()
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_declarations_catch_a_wrong_use(tmp_path: object) -> None:
    """The check has teeth: a front end that gets a type wrong does not compile."""
    wrong = EXAMPLES / "sdk_wrong.ts"
    wrong.write_text(
        'import { mount } from "../../static/qrlogin.mjs";\n'
        'mount(document.body, { platform: "web", transport: "websocket" });\n'
    )
    try:
        result = subprocess.run(
            [str(TSC), "--ignoreConfig", "--noEmit", "--strict", "--lib", "ES2020,DOM",
             "--module", "ES2020", "--moduleResolution", "bundler", str(wrong)],
            cwd=EXAMPLES, capture_output=True, text=True, timeout=margin(120), check=False,
        )  # fmt: skip
    finally:
        wrong.unlink()
    assert result.returncode != 0 and "websocket" in result.stdout, result.stdout


@pytest.mark.slow
def test_the_es_module_mounts_a_login(page: Page, service: Service) -> None:
    page.goto(service.url + "/")
    expect(page.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_WAIT")
    exported = page.evaluate(
        """async () => {
            const sdk = await import("/static/qrlogin.mjs");
            const root = document.createElement("div");
            root.id = "from-module";
            document.body.appendChild(root);
            sdk.mount(root, { platform: "module" });
            return Object.keys(sdk).sort();
        }"""
    )
    assert exported == ["default", "logout", "mount", "watchSession"]
    expect(page.locator("#from-module")).to_have_attribute("data-status", "QRCODE_WAIT")
