"""The pages' language: English, or Simplified Chinese (the product's origin), chosen by
``Accept-Language``. Flask-Babel translates the templates; the pages' scripts get their
strings, translated the same way, in a JSON block of the page (``page_messages``). The
SDK carries its own catalogue (static/qrlogin.js) and follows the page's ``lang``.

The catalogue is ``translations/<language>/LC_MESSAGES/messages.po``; it is compiled
when the process starts, into the temporary folder. A string without a translation is
shown in English.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, request
from flask_babel import Babel, get_locale, gettext

from qrlogin.derived import derived_folder

SOURCES = Path(__file__).resolve().parent / "translations"
#: The languages the pages speak, the first the default; and how each is named in
#: ``<html lang>``.
LANGUAGES = ("en", "zh")
HTML_LANG = {"en": "en", "zh": "zh-CN"}

#: What the pages' scripts say, by key (English is the msgid): mobile.js and app.js read
#: them from the page.
PAGE_MESSAGES = {
    "signed_in": "Signed in as %(name)s. Scan a QR code.",
    "link_asks": "A page asks to log you in. Nothing is sent until you choose.",
    "nothing_sent": "Nothing was sent.",
    "log_out": "Log out",
    "nowhere": "Nowhere right now.",
    "new_login": "New login: %(session)s",
    "logged_out_line": "Logged out: %(session)s",
    "busy": "The service is busy; trying again.",
    "not_a_code": "That is not a login QR code.",
    "asks": "A computer asks to log in as you: %(who)s. Confirm only if it is yours.",
    "unreachable": "Cannot reach the login service.",
    "confirmed": "Confirmed. The computer is logging in.",
    "cancelled": "Cancelled. Nobody was logged in.",
    "no_code_in_photo": "No QR code found in that photo. Try again, closer.",
    "no_camera": "No camera here: paste the QR text instead.",
    "camera_unavailable": "The camera is not available: paste the QR text instead.",
    "location_unknown": "location unknown",
    "on": "%(browser)s on %(os)s",
    "seconds_ago": "%(n)s s ago",
    "minutes_ago": "%(n)s min ago",
    "since": "since %(time)s",
    "logged_out_by_phone": "Logged out from the phone.",
    "logged_out": "Logged out.",
}


def select_locale() -> str:
    return request.accept_languages.best_match(LANGUAGES, default=LANGUAGES[0]) or "en"


@cache
def compiled() -> Path:
    """The catalogues compiled (``.mo``; ``qrlogin.derived``)."""
    return derived_folder("translations", SOURCES, _compile_into)


def _compile_into(folder: Path) -> None:
    for po in SOURCES.rglob("*.po"):
        mo = folder / po.relative_to(SOURCES).with_suffix(".mo")
        mo.parent.mkdir(parents=True, exist_ok=True)
        with po.open("rb") as source, mo.open("wb") as out:
            write_mo(out, read_po(source))


def init_app(app: Flask) -> None:
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(compiled())
    app.config["BABEL_DEFAULT_LOCALE"] = LANGUAGES[0]
    Babel(app, locale_selector=select_locale)

    @app.context_processor
    def _language() -> dict[str, Any]:
        language = str(get_locale() or LANGUAGES[0])  # as Flask-Babel chose it, once
        messages = {key: gettext(english) for key, english in PAGE_MESSAGES.items()}
        return {"html_lang": HTML_LANG[language], "page_messages": messages}
