"""Each word of the contract is written once in models.py; the other places that must
spell it (the Lua rules, the SDK, the phone stand-in) are checked against it here."""

from __future__ import annotations

import re

from qrlogin import config, lua, models
from servers.process import ROOT

LUA = lua.SOURCE
SDK = (ROOT / "static" / "qrlogin.js").read_text()
STAND_IN = (ROOT / "static" / "mobile.js").read_text()


def lua_constants() -> dict[str, str]:
    """The ``local A, B = 'x', 'y'`` string constants at the top of the script."""
    found: dict[str, str] = {}
    for names, values in re.findall(r"^local ([A-Z_, ]+) = ('[^\n]+)$", LUA, re.M):
        for name, value in zip(names.split(","), values.split(","), strict=True):
            found[name.strip()] = value.strip().strip("'")
    return found


def lua_set(name: str) -> set[str]:
    body = re.search(rf"^local {name} = {{(.*)}}$", LUA, re.M)
    assert body is not None, name
    return set(re.findall(r"\[([A-Z]+)\] = true", body.group(1)))


def test_the_lua_statuses_are_the_python_ones() -> None:
    constants = lua_constants()
    statuses = {name: value for name, value in constants.items() if value.startswith("QRCODE_")}
    names = ("WAIT", "SCANNED", "SUCCESS", "CANCEL", "EXPIRE", "ERROR")
    assert statuses == {name: getattr(models, name) for name in names}
    assert {constants[n] for n in lua_set("TERMINAL")} == models.TERMINAL
    assert {constants[n] for n in lua_set("FINAL")} == models.FINAL


def test_the_lua_reasons_and_steps_are_the_python_ones() -> None:
    assert set(re.findall(r"reason = '([a-z_]+)'", LUA)) == set(models.REASONS)
    assert set(re.findall(r"step == '([A-Z]+)'", LUA)) == set(models.STEPS)


def test_the_sdk_knows_every_status_and_reason() -> None:
    final = re.search(r"var FINAL = \{([^}]*)\}", SDK)
    assert final is not None
    assert set(re.findall(r"(QRCODE_[A-Z]+): 1", final.group(1))) == models.FINAL
    catalogue = re.search(r"var CATALOGUE = \{(.*?)\n  \};", SDK, re.S)
    assert catalogue is not None
    languages = re.findall(r"^    ([a-z]+): \{(.*?)^    \},", catalogue.group(1), re.S | re.M)
    assert [name for name, _ in languages] == ["en", "zh"]
    for _, words in languages:  # every language has every word (English is the fallback)
        keys = set(re.findall(r"^\s+([A-Za-z_]+):", words, re.M))
        # QRCODE_ERROR is told by its reason.
        assert set(models.STATUSES) - {models.ERROR} <= keys
        assert set(models.REASONS) <= keys
    long_poll = re.search(r"var LONG_POLL_S = (\d+);", SDK)
    assert long_poll is not None and int(long_poll.group(1)) == config.MAX_WAIT_S


def test_the_stand_in_reads_ids_as_the_service_does() -> None:
    patterns = re.findall(r"/(\^\[A-Za-z0-9_-\][^/]*)/\.test", STAND_IN)
    assert patterns == [models.QR_ID_PATTERN]
