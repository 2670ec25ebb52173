"""Operations endpoints: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from qrlogin import metrics, openapi
from qrlogin.envelope import ok
from qrlogin.services import services

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return ok({"status": "alive"})


@bp.get("/readyz")
def readyz() -> Response:
    # A ConnectionError here becomes 503 UNAVAILABLE in envelope.init_app.
    svc = services()
    svc.redis.ping()
    return ok(
        {
            "status": "ready",
            "redis": "embedded" if svc.settings.embedded else "ok",
            "demo": svc.settings.demo,
        }
    )


@bp.get("/metrics")
def metrics_text() -> Response:
    # content_type, not mimetype: Flask would append a second charset parameter.
    return Response(metrics.exposition(), content_type=metrics.CONTENT_TYPE)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(openapi.document())
