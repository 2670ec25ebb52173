"""The benchmark's measurements, one function a row group of the report."""

from __future__ import annotations

import base64
import io
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import redis
import requests
import segno
from itsdangerous import URLSafeTimedSerializer

from bench import load
from bench.common import (
    CTX,
    SECRET,
    Bench,
    Holders,
    Worker,
    bind_cookie,
    cpu_s,
    ms,
    percentile,
    redis_clients,
    rss_kb,
    run,
    worker_pid,
)
from bench.report import parse_histogram
from qrlogin import qrimage
from qrlogin.models import SUCCESS
from servers.process import Process, free_port


def measure_qr_cpu() -> dict[str, float]:
    """In-process cost per QR image: segno's defaults against what the service does."""
    text = '{"id":"AbCdEfGhIjKlMnOpQrStUvWxYz012345","expire":1795274787,"prefix":"rk://scanforpclogin/","platform":"Rxx_PC"}'
    rounds = 300

    def defaults() -> bytes:
        out = io.BytesIO()
        segno.make(text, micro=False).save(
            out, kind="png", scale=qrimage.SCALE_PX, border=qrimage.BORDER_MODULES
        )
        return out.getvalue()

    def service() -> bytes:  # as a creation draws it
        return qrimage.png(text)

    timings = {}
    for name, fn in (("segno defaults", defaults), ("service", service)):
        start = time.process_time()
        for _ in range(rounds):
            base64.b64encode(fn())
        timings[name] = (time.process_time() - start) / rounds
    return timings


def qrs_for(
    port: int, cookie: str, count: int, have: list[str] | None = None, keep: Any = None
) -> list[str]:
    """``count`` QRs bound to ``cookie``: ``have``, then fresh ones (those ``keep`` accepts)."""
    ids = list(have or [])
    while len(ids) < count:
        _, more, _ = run(load.creator, port, cookie, 2, 16, 0.0)
        ids += [q for q in more if keep is None or keep(q)]
    return ids[:count]


def measure_create(b: Bench, results: dict[str, Any]) -> tuple[Worker, list[str]]:
    """QR creation on one worker; then enough QRs for every waiting browser."""
    service = b.start()
    pid = worker_pid(service)
    cookie = bind_cookie(service.port)
    cpu0 = cpu_s(pid)
    _, ids, took = run(load.creator, service.port, cookie, b.sizes.create_s, 16, 0.0)
    cpu = cpu_s(pid) - cpu0
    results["create"] = {
        "per_s": len(ids) / took,
        "cpu_ms": cpu / max(1, len(ids)) * 1000,
        "count": len(ids),
        "in_process": measure_qr_cpu(),
    }
    print(f"QR creation: {results['create']['per_s']:.0f}/s on one worker, "
          f"{results['create']['cpu_ms']:.2f} ms CPU per QR", flush=True)  # fmt: skip

    # Enough QRs for every waiting browser.
    return Worker(service, pid, cookie), qrs_for(service.port, cookie, b.sizes.waiting, ids)


def measure_waiting(b: Bench, worker: Worker, ids: list[str], results: dict[str, Any]) -> None:
    """Browsers waiting on one worker, then confirm-to-browser latency with them waiting."""
    service, pid, cookie = worker.service, worker.pid, worker.cookie
    rss0 = rss_kb(pid)
    clients0 = redis_clients(b.server.url)
    paths = [f"/v1/accounts/qrcode/{q}/events" for q in ids]
    holders = Holders(service.port, cookie, paths, processes=2, concurrency=100)
    opened, errors, open_s = holders.opened()
    time.sleep(2)
    waiting = {
        "opened": opened, "errors": errors, "open_per_s": opened / max(open_s, 1e-9),
        "rss_kb_per": (rss_kb(pid) - rss0) / max(1, opened),
        "redis_clients": redis_clients(b.server.url), "redis_clients_before": clients0,
    }  # fmt: skip
    print(f"waiting: {opened} open ({errors} errors) at {waiting['open_per_s']:.0f}/s, "
          f"{waiting['rss_kb_per']:.1f} KB each, Redis clients {waiting['redis_clients']}",
          flush=True)  # fmt: skip
    time.sleep(b.sizes.hold_s)
    waiting["rss_kb_per_after_hold"] = (rss_kb(pid) - rss0) / max(1, opened)

    # 2. Confirm-to-browser latency with those browsers waiting.
    n100, n300 = 100 * b.sizes.confirm_s, 300 * b.sizes.confirm_s
    groups = {
        "100/s": ids[:n100],
        "300/s": ids[n100 : n100 + n300],
        "100/s while creating 100 QR/s": ids[n100 + n300 : n100 + n300 + n100],
    }
    scans = [(q, "SCAN") for g in groups.values() for q in g]
    run(load.stepper, service.port, b.token, scans, 1000.0)
    time.sleep(1)
    before = requests.get(service.url + "/metrics", timeout=10).text
    sent: dict[str, float] = {}
    achieved = {}
    for name, group in groups.items():
        plan = [(q, "VERIFY") for q in group]
        rate = 300.0 if name == "300/s" else 100.0
        creating = None
        if "creating" in name:
            creating = CTX.Queue()
            creator = CTX.Process(
                target=load.creator,
                args=(service.port, cookie, b.sizes.confirm_s, 4, 100.0, creating),
                daemon=True,
            )
            creator.start()
        _, times, got_rate = run(load.stepper, service.port, b.token, plan, rate)
        if creating is not None:
            created = creating.get(timeout=120)
            achieved["creating"] = len(created[1]) / created[2]
        achieved[name] = got_rate
        sent.update({q: t for q, (t, status) in times.items() if status == 200})
    time.sleep(1)
    waiting["still_waiting"] = opened - len(sent)
    reports = holders.finish()
    seen: dict[str, list[tuple[float, str]]] = {}
    for report in reports:
        seen.update(report[1])
    waiting["dropped"] = sum(r[2] for r in reports) - 0
    latency = {}
    for name, group in groups.items():
        values = []
        for q in group:
            success = [
                t for t, s in seen.get(f"/v1/accounts/qrcode/{q}/events", []) if s == SUCCESS
            ]
            if q in sent and success:
                values.append(success[0] - sent[q])
        latency[name] = {
            "n": len(values), "missing": len(group) - len(values),
            "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values, default=float("nan")), "rate": achieved[name],
        }  # fmt: skip
        print(f"SSE {name}: p50 {ms(latency[name]['p50'])}, p99 {ms(latency[name]['p99'])}, "
              f"max {ms(latency[name]['max'])}, {latency[name]['missing']} missing",
              flush=True)  # fmt: skip
    results["waiting"], results["latency"] = waiting, latency
    results["creating_rate"] = achieved.get("creating", 0.0)
    after = requests.get(service.url + "/metrics", timeout=10).text
    results["server_delivery"] = parse_histogram(
        after, "qrlogin_event_delivery_seconds", minus=before
    )


def measure_polling(b: Bench, worker: Worker, results: dict[str, Any]) -> None:
    """The alternatives: 1 s short polling (the seed's design) and the long poll."""
    service, cookie, latency = worker.service, worker.cookie, results["latency"]
    for name, long_poll in (("1 s short polling", False), ("long poll", True)):
        _, fresh, _ = run(load.creator, service.port, cookie, 2, 8, 0.0)
        fresh = fresh[: b.sizes.pollers]
        results_q = CTX.Queue()
        poller = CTX.Process(
            target=load.poller, args=(service.port, cookie, fresh, long_poll, results_q),
            daemon=True,
        )  # fmt: skip
        started = time.time()
        poller.start()
        time.sleep(2)
        plan = [(q, step) for q in fresh for step in ("SCAN", "VERIFY")]
        _, times, _ = run(load.stepper, service.port, b.token, plan, 100.0)
        _, polled = results_q.get(timeout=120)
        poller.join(30)
        values = [polled[q][0] - times[q][0] for q in fresh if q in polled and q in times]
        requests_per = [polled[q][1] for q in fresh if q in polled]
        durations = [polled[q][0] - started for q in fresh if q in polled]
        latency[name] = {
            "n": len(values), "missing": len(fresh) - len(values),
            "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values, default=float("nan")), "mean": statistics.fmean(values),
            "requests_per_login": statistics.fmean(requests_per),
            "login_s": statistics.fmean(durations), "rate": 50.0,
        }  # fmt: skip
        print(f"{name}: p50 {ms(latency[name]['p50'])}, mean {ms(latency[name]['mean'])}, "
              f"{latency[name]['requests_per_login']:.1f} requests per login", flush=True)  # fmt: skip
    service.stop()


def measure_logins(b: Bench, results: dict[str, Any]) -> None:
    """Full logins per second, two workers (one per core)."""
    service = b.start(workers=2)
    reports = [run(load.login_loop, service.port, b.token, b.sizes.login_s, 16) for _ in range(1)]
    done = sum(r[1] for r in reports)
    results["logins"] = {"per_s": done / reports[0][3], "failed": sum(r[2] for r in reports)}
    print(f"logins: {results['logins']['per_s']:.0f}/s", flush=True)
    service.stop()


def measure_restart(b: Bench, results: dict[str, Any]) -> None:
    """Restart with streams open: ours, and gunicorn's default graceful shutdown."""
    results["restart"] = {}
    configs = [("qrlogin", "gunicorn.conf.py")]
    if b.sizes.restart_alternative:
        configs.append(("gunicorn default", "bench/gunicorn_plain.conf.py"))
    for name, config in configs:
        service = b.start(config=config)
        cookie = bind_cookie(service.port)
        rids = qrs_for(service.port, cookie, b.sizes.restart)
        holders = Holders(
            service.port, cookie, [f"/v1/accounts/qrcode/{q}/events" for q in rids],
            processes=2, reconnect=True,
        )  # fmt: skip
        opened, _errors, _ = holders.opened()
        pid = worker_pid(service)
        signalled = time.time()
        os.kill(pid, signal.SIGTERM)
        while Path(f"/proc/{pid}").exists() and time.time() - signalled < 60:
            time.sleep(0.02)
        exited = time.time() - signalled
        time.sleep(b.sizes.restart_wait_s)  # the default retry is 3 s; a new worker boots
        reports = holders.finish()
        back = sorted(t for r in reports for t in r[4])
        results["restart"][name] = {
            "streams": opened, "exit_s": exited,
            "back_s": (back[-1] - signalled) if len(back) >= opened else float("nan"),
            "reconnected": len(back),
        }  # fmt: skip
        print(f"restart ({name}): worker exited in {exited:.2f}s, {len(back)}/{opened} back "
              f"in {results['restart'][name]['back_s']:.2f}s", flush=True)  # fmt: skip
        service.stop()


def measure_flask_sse(b: Bench, count: int | None = None) -> dict[str, Any]:
    """flask-sse's stock stream with ``count`` waiting browsers (by default, as many as
    the push design holds in this run)."""
    server, sizes = b.server, b.sizes
    count = sizes.waiting if count is None else count
    port = free_port()
    env = {**os.environ, "REDIS_URL": server.url}
    process = Process("flask-sse under gunicorn", b.logs / "flask-sse.log")
    process.spawn(
        # Its own config file: gunicorn would otherwise load ./gunicorn.conf.py, whose hooks
        # start qrlogin's hub.
        [sys.executable, "-m", "gunicorn", "-c", "bench/gunicorn_plain.conf.py", "-k", "gevent",
         "-w", "1", "--worker-connections",
         "12000", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "2", "bench.flask_sse_app:app"],
        env,
    )  # fmt: skip
    try:
        time.sleep(2)
        pid = worker_pid(process)
        rss0, clients0 = rss_kb(pid), redis_clients(server.url)
        paths = [f"/stream?channel=bench-{i}" for i in range(count)]
        holders = Holders(port, "", paths, processes=2, blind=True)
        opened, _, _ = holders.opened()
        # flask-sse subscribes when each stream first runs: wait until Redis stops
        # gaining clients (or has them all), then hold.
        settled, last, deadline = time.time(), -1, time.time() + 60
        while time.time() < deadline and time.time() - settled < 2:
            clients = redis_clients(server.url)
            if clients != last:
                settled, last = time.time(), clients
            if clients >= clients0 + opened:
                break
            time.sleep(0.2)
        time.sleep(sizes.flask_sse_hold_s)
        clients = redis_clients(server.url)
        rss = (rss_kb(pid) - rss0) / max(1, opened)
        publisher = redis.Redis.from_url(server.url)
        for i in range(count):
            publisher.publish(f"bench-{i}", '{"data": "ping"}')
        reports = holders.finish("check")
        delivered = sum(r[1] for r in reports)
        failed = sum(r[2] for r in reports)
        return {
            "opened": opened, "delivered": delivered, "failed": failed,
            "redis_clients": clients, "redis_clients_before": clients0, "rss_kb_per": rss,
        }  # fmt: skip
    finally:
        process.stop()


def measure_sessions(b: Bench, results: dict[str, Any]) -> None:
    """Pages holding session streams on one worker; sessions ended from the phone at
    100/s: how long until each page hears of it."""
    service = b.start()
    _, tokens = run(load.login_many, service.port, b.token, b.sizes.sessions, 32)
    reader = URLSafeTimedSerializer(SECRET, salt="qrlogin.login")
    sids = [str(reader.loads(token)["sid"]) for token in tokens]
    paths = [f"/v1/passport/session/events?page={sid}" for sid in sids]
    cookies = {path: f"qrlogin_session={token}" for path, token in zip(paths, tokens, strict=True)}
    holders = Holders(service.port, "", paths, processes=2, concurrency=100, cookies=cookies)
    opened, errors, _ = holders.opened()
    time.sleep(1)
    ended = sids[: 100 * b.sizes.confirm_s]
    _, sent, rate = run(load.revoker, service.port, b.token, ended, 100.0)
    time.sleep(1)
    seen: dict[str, list[tuple[float, str]]] = {}
    for report in holders.finish():
        seen.update(report[1])
    values = []
    for sid in ended:
        arrived = [
            t for t, s in seen.get(f"/v1/passport/session/events?page={sid}", []) if s == "ended"
        ]
        if sid in sent and sent[sid][1] == 200 and arrived:
            values.append(arrived[0] - sent[sid][0])
    results["sessions"] = {
        "waiting": opened, "errors": errors, "ended": len(ended), "missing": len(ended) - len(values),
        "p50": percentile(values, 50), "p99": percentile(values, 99),
        "max": max(values, default=float("nan")), "rate": rate,
    }  # fmt: skip
    print(f"sessions: {opened} streams ({errors} errors); revocation to page p50 "
          f"{ms(results['sessions']['p50'])}, p99 {ms(results['sessions']['p99'])}, "
          f"{results['sessions']['missing']} missing", flush=True)  # fmt: skip
    service.stop()


def _clients_by_name(nodes: list[redis.Redis]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in nodes:
        for client in node.client_list():
            name = client.get("name") or "other"
            counts[name] = counts.get(name, 0) + 1
    return counts


def _latency(reports: list[Any], sent: dict[str, tuple[float, int]]) -> dict[str, float]:
    seen: dict[str, list[tuple[float, str]]] = {}
    for report in reports:
        seen.update(report[1])
    values = []
    for path, events in seen.items():
        qr_id = path.split("/")[-2]
        success = [t for t, s in events if s == SUCCESS]
        if qr_id in sent and sent[qr_id][1] == 200 and success:
            values.append(success[0] - sent[qr_id][0])
    return {"n": len(values), "missing": len(seen) - len(values),
            "p50": percentile(values, 50), "p99": percentile(values, 99)}  # fmt: skip


def measure_cluster(b: Bench, results: dict[str, Any]) -> None:
    """One Redis against a 3-master Redis Cluster (a replica each), side by side: full
    logins, confirm-to-browser latency, connections per process; then a master killed."""
    from qrlogin.keys import Keys
    from servers.cluster import LocalCluster

    rows: dict[str, dict[str, Any]] = {}
    with LocalCluster(b.logs) as cluster:
        cluster.start()
        setups = (("1 node", b.server.url, "single"), ("3 shards", cluster.url, "cluster"))
        for name, url, mode in setups:
            service = b.start(workers=2, REDIS_URL=url, QRLOGIN_REDIS_MODE=mode)
            nodes = (
                [n.client() for n in cluster.masters()]
                if mode == "cluster"
                else [redis.Redis.from_url(url, decode_responses=True)]
            )
            report = run(load.login_loop, service.port, b.token, b.sizes.login_s, 16)
            row: dict[str, Any] = {"logins_per_s": report[1] / report[3], "failed": report[2]}
            cookie = bind_cookie(service.port)
            ids = qrs_for(service.port, cookie, b.sizes.cluster_waiting)
            holders = Holders(
                service.port, cookie, [f"/v1/accounts/qrcode/{q}/events" for q in ids],
                processes=1,
            )  # fmt: skip
            opened, errors, _ = holders.opened()
            run(load.stepper, service.port, b.token, [(q, "SCAN") for q in ids], 1000.0)
            time.sleep(1)
            _, sent, _ = run(
                load.stepper, service.port, b.token, [(q, "VERIFY") for q in ids], 100.0
            )
            clients = _clients_by_name(nodes)
            time.sleep(1)
            row["latency"] = _latency(holders.finish(), sent)
            row.update(waiting=opened, errors=errors, nodes=len(nodes),
                       subscribers_per_process=clients.get("qrlogin-hub", 0) / 2,
                       pool_per_process=clients.get("qrlogin", 0) / 2)  # fmt: skip
            rows[name] = row
            print(f"cluster rows, {name}: {row}", flush=True)
            service.stop()
        rows["3 shards"]["failover"] = _measure_failover(b, cluster, Keys)
        print(f"failover: {rows['3 shards']['failover']}", flush=True)
    results["cluster"] = rows


def _measure_failover(b: Bench, cluster: Any, keys: Any) -> dict[str, float]:
    """Browsers wait on QRs held by one master; the master is killed. How long until
    commands on its slots work again, and until the hub has resubscribed them all on
    the promoted replica; then confirm-to-browser latency for those browsers."""
    service = b.start(workers=2, REDIS_URL=cluster.url, QRLOGIN_REDIS_MODE="cluster")
    victim = cluster.masters()[0]
    cookie = bind_cookie(service.port)
    ids = qrs_for(service.port, cookie, b.sizes.failover_waiting + 1,
               keep=lambda q: cluster.master_of(keys.qr(q)).port == victim.port)  # fmt: skip
    probe, ids = ids[0], ids[1:]
    holders = Holders(
        service.port, cookie, [f"/v1/accounts/qrcode/{q}/events" for q in ids], processes=1
    )
    holders.opened()
    run(load.stepper, service.port, b.token, [(q, "SCAN") for q in [probe, *ids]], 1000.0)
    replica = cluster.replica_of(victim)
    reader = replica.client()
    reader.execute_command("READONLY")
    while any(reader.hget(keys.qr(q), "status") != "QRCODE_SCANNED" for q in [probe, *ids]):
        time.sleep(0.05)  # replicated, so that the failover loses none of them
    killed = time.time()
    victim.stop()
    headers = {"Authorization": f"Bearer {b.token}"}
    while True:
        answer = requests.post(
            service.url + "/v1/accounts/qrcode_fill", json={"id": probe, "step": "VERIFY"},
            headers=headers, timeout=10,
        )  # fmt: skip
        if answer.status_code == 200:
            break
        time.sleep(0.02)
    commands_back = time.time() - killed
    channels = {keys.channel(q) for q in ids}
    new_master = replica.client()
    while not channels <= set(new_master.pubsub_shardchannels()) and time.time() - killed < 120:
        time.sleep(0.02)
    resubscribed = time.time() - killed
    _, sent, _ = run(load.stepper, service.port, b.token, [(q, "VERIFY") for q in ids], 100.0)
    time.sleep(1)
    latency = _latency(holders.finish(), sent)
    service.stop()
    return {"commands_back_s": commands_back, "resubscribed_s": resubscribed,
            "waiting": len(ids), **{f"after_{k}": v for k, v in latency.items()}}  # fmt: skip
