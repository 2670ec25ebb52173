"""Operations endpoints: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint, Response, jsonify

from qrlogin import engine, metrics, openapi, proxies
from qrlogin.config import Settings
from qrlogin.engine import UNAVAILABLE_ERRORS
from qrlogin.envelope import ok
from qrlogin.exceptions import Unavailable
from qrlogin.services import services

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return ok({"status": "alive"})


@bp.get("/readyz")
def readyz() -> Response:
    """200 when Redis answers; 503 naming the cause and the setting to change when the
    cause has one (a certificate that does not verify, the client limit reached)."""
    svc = services()
    try:
        found = _ready(svc.settings, svc.redis)
        warnings = proxies.notices()
    except UNAVAILABLE_ERRORS as error:
        cause = engine.explain(error)
        if cause is None:
            raise  # 503 UNAVAILABLE in envelope.init_app
        raise Unavailable(cause, data={"cause": cause}) from error
    return ok({"status": "ready", **found, "demo": svc.settings.demo, "warnings": warnings})


def _ready(settings: Settings, client: redis.Redis) -> dict[str, Any]:
    if settings.clustered:
        cluster = cluster_state(client)
        if cluster["state"] != "ok":
            raise Unavailable("the Redis Cluster is not ok", data={"cluster": cluster})
        return {"redis": "cluster", "cluster": cluster}
    client.ping()
    if settings.redis_mode == "sentinel":
        return {"redis": "sentinel"}
    return {"redis": "embedded" if settings.embedded else "ok"}


def cluster_state(client: redis.Redis) -> dict[str, Any]:
    """The cluster as one of its nodes sees it (CLUSTER INFO), and the masters this
    process sends commands to."""
    info = client.execute_command(  # type: ignore[no-untyped-call]
        "CLUSTER INFO", target_nodes=redis.RedisCluster.RANDOM
    )
    masters = client.get_primaries()  # type: ignore[attr-defined]
    return {
        "state": str(info.get("cluster_state")),
        "slots_ok": int(info.get("cluster_slots_ok", 0)),
        "slots_failing": int(info.get("cluster_slots_pfail", 0))
        + int(info.get("cluster_slots_fail", 0)),
        "known_nodes": int(info.get("cluster_known_nodes", 0)),
        "masters": sorted(node.name for node in masters),
    }


@bp.get("/metrics")
def metrics_text() -> Response:
    # content_type, not mimetype: Flask would append a second charset parameter.
    return Response(metrics.exposition(), content_type=metrics.CONTENT_TYPE)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(openapi.document())
