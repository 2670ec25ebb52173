"""Operations endpoints: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint, Response, jsonify

from qrlogin import metrics, openapi
from qrlogin.envelope import ok
from qrlogin.exceptions import Unavailable
from qrlogin.services import services

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return ok({"status": "alive"})


@bp.get("/readyz")
def readyz() -> Response:
    # A ConnectionError here becomes 503 UNAVAILABLE in envelope.init_app.
    svc = services()
    if svc.settings.clustered:
        cluster = cluster_state(svc.redis)
        if cluster["state"] != "ok":
            raise Unavailable("the Redis Cluster is not ok", data={"cluster": cluster})
        return ok(
            {"status": "ready", "redis": "cluster", "cluster": cluster, "demo": svc.settings.demo}
        )
    svc.redis.ping()
    redis_mode = "embedded" if svc.settings.embedded else "ok"
    if svc.settings.redis_mode == "sentinel":
        redis_mode = "sentinel"
    return ok({"status": "ready", "redis": redis_mode, "demo": svc.settings.demo})


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
