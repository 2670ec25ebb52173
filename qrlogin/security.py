"""Response hygiene and the Origin check.

Every answer is ``no-store`` and ``no-referrer``; pages get a Content-Security-Policy.
A browser POST from a foreign ``Origin`` is refused unless QRLOGIN_CORS_ORIGINS lists
it; listed origins get CORS with credentials (flask-cors).
"""

from __future__ import annotations

from flask import Flask, Response, request
from flask_cors import CORS

from qrlogin.config import Settings
from qrlogin.envelope import error_response
from qrlogin.exceptions import OriginForbidden

#: Pages load only their own scripts and styles; avatars may come from any HTTPS host.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob: https:; media-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Endpoints other sites' pages may write to: they act on no cookie alone.
_CROSS_SITE: set[str] = set()


def allow_cross_site(endpoints: frozenset[str]) -> None:
    """Let other origins' pages POST to these endpoints (OpenID Connect's, whose
    requests carry their own credentials)."""
    _CROSS_SITE.update(endpoints)


def own_origins(settings: Settings) -> set[str]:
    """Where the service's own pages are: as the request (through trusted proxies) says,
    and the configured public origin."""
    found = {f"{request.scheme}://{request.host}"}
    if settings.public_origin:
        found.add(settings.public_origin)
    return found


def init_app(app: Flask, settings: Settings) -> None:
    allowed = settings.cors_origins
    if allowed:
        CORS(
            app,
            resources={r"/v1/*": {"origins": sorted(allowed)}},
            supports_credentials=True,
            allow_headers=["Content-Type", "Authorization", "Last-Event-ID"],
            max_age=600,
        )

    @app.before_request
    def _check_origin() -> Response | None:
        origin = request.headers.get("Origin")
        if request.method not in UNSAFE_METHODS or origin is None:
            return None
        if request.endpoint in _CROSS_SITE:
            return None  # not a browser's cross-site write (phones and servers send none)
        if origin.rstrip("/") in own_origins(settings) or origin.rstrip("/") in allowed:
            return None
        return error_response(OriginForbidden(f"requests from {origin} are not allowed"))

    @app.after_request
    def _hygiene(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.is_secure and settings.hsts_max_age_s:
            # Browsers then reach the service over HTTPS only, where the cookies are
            # __Host- ones (no subdomains: the operator's other hosts may be plain HTTP).
            response.headers["Strict-Transport-Security"] = f"max-age={settings.hsts_max_age_s}"
        if response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
            response.headers["X-Frame-Options"] = "DENY"
        return response
