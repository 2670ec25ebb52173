"""The Lua scripts of the package, as Redis runs them."""

from __future__ import annotations

from importlib import resources


def script(name: str) -> str:
    """A Lua script of the package as Redis runs it: a ``#!lua`` line with no flags (it
    writes, so a Redis out of memory refuses it whole), prelude.lua, then the script."""
    package = resources.files("qrlogin")
    prelude = package.joinpath("prelude.lua").read_text()
    return "#!lua\n" + prelude + "\n" + package.joinpath(name).read_text()


#: The script with every rule of the contract.
SOURCE = script("transitions.lua")
#: The script that keeps the cap on a browser's live QR codes.
LIVE_SOURCE = script("live.lua")
