"""Operations endpoints: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import hmac
from typing import Any

import redis
from flask import Blueprint, Response, jsonify, request

from qrlogin import engine, metrics, openapi, proxies
from qrlogin.config import Settings
from qrlogin.engine import UNAVAILABLE_ERRORS
from qrlogin.envelope import ok
from qrlogin.exceptions import Unauthorized, Unavailable
from qrlogin.keys import Keys
from qrlogin.services import services

bp = Blueprint("ops", __name__)

#: How long the readiness check's written key lives (ms).
READY_PROBE_TTL_MS = 10_000


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
    found: dict[str, Any] = {"redis": "embedded" if settings.embedded else "ok"}
    if settings.clustered:
        cluster = cluster_state(client)
        if cluster["state"] != "ok":
            raise Unavailable("the Redis Cluster is not ok", data={"cluster": cluster})
        found = {"redis": "cluster", "cluster": cluster}
    elif settings.redis_mode == "sentinel":
        found = {"redis": "sentinel"}
    # A write, not a PING: a Redis that is full (maxmemory with noeviction) or read-only
    # answers PING but refuses every state change.
    client.set(Keys.READY_PROBE, "1", px=READY_PROBE_TTL_MS)
    return found


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
    """Prometheus's text; with QRLOGIN_METRICS_TOKEN set, only for that bearer token."""
    wanted = services().settings.metrics_token
    if wanted is not None:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), wanted.encode()):
            raise Unauthorized("send QRLOGIN_METRICS_TOKEN as 'Authorization: Bearer <token>'")
    # content_type, not mimetype: Flask would append a second charset parameter.
    return Response(metrics.exposition(), content_type=metrics.CONTENT_TYPE)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(openapi.document())
