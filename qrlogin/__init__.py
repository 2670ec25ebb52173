"""qrlogin: QR-code login as a Flask microservice.

``create_app`` (in ``qrlogin.factory``) is imported on first use, so that importing a
light submodule (the gunicorn worker class, which the master process loads before any
worker has patched the standard library for gevent) does not import Flask, redis and
the rest along with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qrlogin.factory import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from qrlogin.factory import create_app

        return create_app
    raise AttributeError(f"module 'qrlogin' has no attribute {name!r}")
