"""The pages and the widget in English and in Simplified Chinese, chosen by the
browser's Accept-Language (Chromium's locale), and English for anything missing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from qrlogin import i18n
from servers.service import Service
from tests.live import phone_step, user_token

pytestmark = pytest.mark.slow

#: What each page says first, and the widget while it waits, by Chromium's locale.
WORDS = {
    "en-US": ("Log in with your phone", "Scan the QR code with the app to log in.",
              "Phone stand-in", "Signed in as Alice Example", "You are logged in"),
    "zh-CN": ("用手机登录", "请用应用扫描二维码登录。", "模拟手机", "已以 Alice Example 的身份登录",
              "您已登录"),
    "fr-FR": ("Log in with your phone", "Scan the QR code with the app to log in.",
              "Phone stand-in", "Signed in as Alice Example", "You are logged in"),
}  # fmt: skip


@pytest.fixture(scope="module")
def service(redis_url: str, server_logs: Path) -> Iterator[Service]:
    from tests.live import SECRET

    env = {"SECRET_KEY": SECRET, "REDIS_URL": redis_url, "QRLOGIN_DEMO": "1"}
    with Service(env, server_logs).start() as started:
        yield started


@pytest.mark.parametrize("locale", list(WORDS))
def test_the_pages_speak_the_browsers_language(
    chromium: Browser, service: Service, locale: str
) -> None:
    title, waiting, stand_in, signed_in, logged_in = WORDS[locale]
    context = chromium.new_context(locale=locale)
    page = context.new_page()
    page.goto(service.url + "/")
    expect(page.locator("h1")).to_have_text(title)
    expect(page.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_WAIT")
    expect(page.locator(".qrlogin-status")).to_have_text(waiting)
    qr_id = page.locator("#qrlogin").get_attribute("data-qr-id")
    assert qr_id

    phone = context.new_page()
    phone.goto(service.url + "/m")
    expect(phone.locator("h1")).to_have_text(stand_in)
    phone.get_by_role("button", name="Alice Example").click()
    expect(phone.locator("#announce")).to_contain_text(signed_in)

    token = user_token("u-alice", "Alice Example")
    for step in ("SCAN", "VERIFY"):
        assert phone_step(service.url, token, qr_id, step).status_code == 200
    page.wait_for_url("**/app")
    expect(page.locator("h1")).to_have_text(logged_in)
    context.close()


def test_the_widget_follows_its_locale_option(chromium: Browser, service: Service) -> None:
    """An English page may still show the widget in Chinese (and a language the widget
    does not have is English)."""
    context = chromium.new_context(locale="en-US")
    page = context.new_page()
    page.goto(service.url + "/")
    for locale, waiting in (("zh-CN", "请用应用扫描二维码登录。"), ("de", WORDS["en-US"][1])):
        page.evaluate(
            """locale => { const box = document.createElement("div"); box.id = "other";
               document.body.append(box);
               QRLogin.mount(box, {platform: "web", locale, share: false}); }""",
            locale,
        )
        expect(page.locator("#other .qrlogin-status")).to_have_text(waiting)
        page.evaluate("document.getElementById('other').remove()")
    context.close()


def test_a_missing_translation_is_english(env: dict[str, str], tmp_path: Path) -> None:
    """A catalogue that lacks a string: the page says it in English."""
    from qrlogin import create_app

    missing = "Log in with your phone"
    source = tmp_path / "translations"
    shutil.copytree(i18n.SOURCES, source)
    po = source / "zh" / "LC_MESSAGES" / "messages.po"
    text = po.read_text()
    start = text.index(f'msgid "{missing}"')
    end = text.index("\n\n", start)
    po.write_text(text[:start] + text[end + 2 :])
    i18n.compiled.cache_clear()
    original = i18n.SOURCES
    i18n.SOURCES = source
    try:
        page = create_app(env).test_client().get("/", headers={"Accept-Language": "zh-CN"})
    finally:
        i18n.SOURCES = original
        i18n.compiled.cache_clear()
    html = page.get_data(as_text=True)
    assert f"<h1>{missing}</h1>" in html  # the missing one, in English
    assert "扫描二维码，并确认是谁在请求登录。" in html  # the others, translated
