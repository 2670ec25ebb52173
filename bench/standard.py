"""``python -m bench``: the push design measured against its alternatives, on one
worker unless said. Each measurement adds its rows to the report as it measures."""

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
from qrlogin import qrimage
from servers.process import Process, free_port

from bench import common, overload
from bench.client import CTX, Holders, poller, repeat, run, sender, steps

Row = tuple[str, ...]


def qrs_for(port: int, cookie: str, count: int, have: list[str] | None = None, keep: Any = None) -> list[str]:
    """``count`` QRs bound to ``cookie``: ``have``, then fresh ones (those ``keep`` accepts)."""
    ids = list(have or [])
    while len(ids) < count:
        ids += [q for q in run(repeat, port, "create", cookie, 2, 16, 0.0)[0] if keep is None or keep(q)]
    return ids[:count]


def image_cpu() -> dict[str, float]:
    """In-process CPU per QR image: segno's defaults against the service's."""
    text = '{"id":"AbCdEfGhIjKlMnOpQrStUvWxYz012345","expire":1795274787,"prefix":"rk://scanforpclogin/","platform":"Rxx_PC"}'

    def segno_png() -> bytes:
        out = io.BytesIO()
        segno.make(text, micro=False).save(out, kind="png", scale=qrimage.SCALE_PX, border=qrimage.BORDER_MODULES)
        return out.getvalue()

    timings = {}
    for name, draw in (("segno", segno_png), ("service", lambda: qrimage.png(text))):
        start = time.process_time()
        for _ in range(300):
            base64.b64encode(draw())
        timings[name] = (time.process_time() - start) / 300
    return timings


def waiting(b: common.Bench, rows: list[Row], results: dict[str, Any]) -> None:
    """QR creation on one worker; browsers waiting on it; confirm-to-browser latency with
    them waiting; the polling alternatives."""
    service = b.start()
    pid, cookie = common.worker_pid(service), common.bind_cookie(service.port)
    cpu0 = common.cpu_s(pid)
    ids, _, _, took = run(repeat, service.port, "create", cookie, b.sizes.create_s, 16, 0.0)
    cpu_ms = (common.cpu_s(pid) - cpu0) / max(1, len(ids)) * 1000
    image = image_cpu()
    created = (f"{len(ids) / took:.0f}/s, {cpu_ms:.2f} ms CPU per request", f"image alone: "
               f"{image['service'] * 1000:.2f} ms vs segno defaults {image['segno'] * 1000:.2f} ms "
               f"({image['segno'] / image['service']:.1f}x)", ">= 500/s per core")  # fmt: skip
    ids = qrs_for(service.port, cookie, b.sizes.waiting, ids)
    rss0, admin = common.rss_kb(pid), redis.Redis.from_url(b.server.url)
    clients0 = common.redis_clients(admin)["total"]
    holders = Holders(service.port, cookie, common.qr_paths(ids))
    opened, errors, open_s = holders.opened()
    time.sleep(2)
    rss, clients = ((common.rss_kb(pid) - rss0) / max(1, opened), common.redis_clients(admin)["total"])
    print(f"waiting: {opened} open, {errors} errors, {rss:.1f} KB each", flush=True)
    time.sleep(b.sizes.hold_s)
    rss_held = (common.rss_kb(pid) - rss0) / max(1, opened)

    n100, n300 = 100 * b.sizes.confirm_s, 300 * b.sizes.confirm_s
    groups = {"100/s": (ids[:n100], 100.0), "300/s": (ids[n100 : n100 + n300], 300.0),
              "creating": (ids[n100 + n300 : 2 * n100 + n300], 100.0)}  # fmt: skip
    run(sender, service.port, b.token, steps([(q, "SCAN") for g, _ in groups.values() for q in g]), 1000.0)
    time.sleep(1)
    before, sent, lat, rates = common.metrics(service.url), {}, {}, {}
    for name, (group, rate) in groups.items():
        creating = CTX.Queue()
        if name == "creating":
            args = (service.port, "create", cookie, b.sizes.confirm_s, 4, 100.0, creating)
            CTX.Process(target=repeat, args=args, daemon=True).start()
        _, times, rates[name], _ = run(sender, service.port, b.token, steps([(q, "VERIFY") for q in group]), rate)
        if name == "creating":
            made = creating.get(timeout=120)
            rates["made"] = len(made[0]) / made[3]
        sent.update(times)
    time.sleep(1)
    seen = holders.events("stop")
    for name, (group, _) in groups.items():
        lat[name] = common.latency(group, sent, seen)
        print(f"SSE {name}: p50 {common.ms(lat[name]['p50'])}, p99 {common.ms(lat[name]['p99'])}", flush=True)
    results["latency"] = lat
    delivery = common.histogram(common.metrics(service.url), "qrlogin_event_delivery_seconds", before)
    results["delivery"] = delivery
    polled = polling(b, service.port, cookie, results)
    fs = flask_sse(b, b.sizes.waiting)
    short, long = polled["1 s short polling"], polled["long poll"]

    def confirm(lat: dict[str, Any]) -> str:
        return f"p50 {common.ms(lat['p50'])}, p99 {common.ms(lat['p99'])}, max {common.ms(lat['max'])}"

    target = "p50 <= 5 ms, p99 <= 25 ms"
    rows += [
        ("Waiting browsers on one worker", f"{opened:,} open, {errors} errors, {opened / max(open_s, 1e-9):.0f} opened/s",
         f"flask-sse: {fs['opened']:,} opened, {fs['failed']:,} got no event", "10,000, 0 errors"),
        ("Redis connections", f"{clients} in all (1 subscriber, the pool, the benchmark's own); "
         f"{clients - clients0} added while {opened:,} browsers connected",
         f"flask-sse: {fs['clients_added']:,} added", "1 subscriber + pool <= 50"),
        ("Worker memory per waiting browser", f"{rss:.1f} KB ({rss_held:.1f} KB after the hold)",
         f"flask-sse: {fs['kb_per']:.1f} KB", "<= 24 KB"),
        ("Confirm to browser, 100 confirms/s", confirm(lat["100/s"]),
         f"1 s polling: p50 {common.ms(short['p50'])}, mean {common.ms(short['mean'])}, p99 {common.ms(short['p99'])}", target),
        ("Confirm to browser, 300 confirms/s", f"{confirm(lat['300/s'])} ({rates['300/s']:.0f}/s achieved)",
         f"long poll: p50 {common.ms(long['p50'])}, p99 {common.ms(long['p99'])}", target),
        ("p99 while creating QRs", f"p99 {common.ms(lat['creating']['p99'])} at 100 confirms/s and "
         f"{rates['made']:.0f} QR/s", "", "within the above"),
        ("Requests per login", "2 (the stream, the redemption)", f"1 s polling: "
         f"{short['requests']:.1f}; long poll: {long['requests']:.1f}", ""),
        ("QR creations, one worker", *created),
        ("Server side delivery (transition in Redis to the frame written)", f"{delivery['count']:.0f} "
         f"events, mean {common.ms(delivery['mean'])}, p50 <= {common.ms(delivery['p50_le'])}, p99 <= "
         f"{common.ms(delivery['p99_le'])}", "", ""),
    ]  # fmt: skip
    service.stop()


def polling(b: common.Bench, port: int, cookie: str, results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The alternatives: 1 s short polling (the seed's design) and the long poll, on fresh
    QRs confirmed at 50 a second (a scan and a confirmation each, 100 steps a second)."""
    found = {}
    for name, long_poll in (("1 s short polling", False), ("long poll", True)):
        fresh = run(repeat, port, "create", cookie, 2, 8, 0.0)[0][: b.sizes.pollers]
        answers = CTX.Queue()
        process = CTX.Process(target=poller, args=(port, cookie, fresh, long_poll, answers), daemon=True)
        process.start()
        time.sleep(2)
        plan = [(q, step) for q in fresh for step in ("SCAN", "VERIFY")]
        _, times, _, _ = run(sender, port, b.token, steps(plan), 100.0)
        polled = answers.get(timeout=120)
        process.join(30)
        values = [polled[q][0] - times[q][0] for q in fresh if q in polled and q in times]
        found[name] = {"p50": common.percentile(values, 50), "p99": common.percentile(values, 99),
                       "mean": statistics.fmean(values),
                       "requests": statistics.fmean(polled[q][1] for q in polled)}  # fmt: skip
        print(f"{name}: {found[name]}", flush=True)
    results["polling"] = found
    return found


def flask_sse(b: common.Bench, count: int) -> dict[str, Any]:
    """flask-sse's stock stream on the same gunicorn + gevent worker, ``count`` waiting
    browsers: its RSS and Redis connections, and who gets a message published to all."""
    port = free_port()
    process = Process("flask-sse under gunicorn", b.logs / "flask-sse.log")
    # Its own config file: ./gunicorn.conf.py's hooks would start qrlogin's hub.
    process.spawn([sys.executable, "-m", "gunicorn", "-c", "bench/gunicorn_plain.conf.py", "-k", "gevent",
                   "-w", "1", "--worker-connections", "12000", "-b", f"127.0.0.1:{port}",
                   "--graceful-timeout", "2", "bench.flask_sse_app:app"],
                  {**os.environ, "REDIS_URL": b.server.url})  # fmt: skip
    try:
        time.sleep(2)
        pid, admin = common.worker_pid(process), redis.Redis.from_url(b.server.url)
        rss0, clients0 = common.rss_kb(pid), common.redis_clients(admin)["total"]
        holders = Holders(port, "", [f"/stream?channel=bench-{i}" for i in range(count)], blind=True)
        opened, _, _ = holders.opened()
        # flask-sse subscribes as each stream first runs: wait until Redis stops gaining clients.
        settled, last, deadline = time.time(), -1, time.time() + 60
        while time.time() < deadline and time.time() - settled < 2 and last < clients0 + opened:
            if (clients := common.redis_clients(admin)["total"]) != last:
                settled, last = time.time(), clients
            time.sleep(0.2)
        time.sleep(b.sizes.flask_sse_hold_s)
        found = {"opened": opened, "kb_per": (common.rss_kb(pid) - rss0) / max(1, opened),
                 "clients_added": common.redis_clients(admin)["total"] - clients0}  # fmt: skip
        for i in range(count):
            admin.publish(f"bench-{i}", '{"data": "ping"}')
        found["failed"] = sum(r[2] for r in holders.ask("check"))
        holders.finish()
        print(f"flask-sse: {found}", flush=True)
        return found
    finally:
        process.stop()


def sessions(b: common.Bench, rows: list[Row], results: dict[str, Any]) -> None:
    """Pages holding session streams on one worker; sessions ended from the phone at 100/s."""
    service = b.start()
    tokens = run(repeat, service.port, "login", b.token, 600, 32, 0.0, until=b.sizes.sessions)[0][: b.sizes.sessions]
    reader = URLSafeTimedSerializer(common.SECRET, salt="qrlogin.login")
    sids = [str(reader.loads(token)["sid"]) for token in tokens]
    path = "/v1/passport/session/events?page={}"
    cookies = {path.format(sid): f"qrlogin_session={t}" for sid, t in zip(sids, tokens, strict=True)}
    holders = Holders(service.port, "", list(cookies), cookies=cookies)
    opened, errors, _ = holders.opened()
    time.sleep(1)
    ended = sids[: 100 * b.sizes.confirm_s]
    calls = [(sid, "DELETE", f"/v1/accounts/sessions/{sid}", None) for sid in ended]
    _, sent, _, _ = run(sender, service.port, b.token, calls, 100.0)
    time.sleep(1)
    lat = common.latency(ended, sent, holders.events("stop"), path, "ended")
    qr = results["latency"]["100/s"]
    rows.append(("Revocation to page, 100 ends/s", f"p50 {common.ms(lat['p50'])}, p99 {common.ms(lat['p99'])}, max "
                 f"{common.ms(lat['max'])}, {lat['missing']} missing, with {opened:,} session streams ({errors} "
                 f"errors)", f"QR confirm to browser at 100/s: p50 {common.ms(qr['p50'])}, p99 {common.ms(qr['p99'])}",
                 "as QR events"))  # fmt: skip
    service.stop()


def logins(b: common.Bench, rows: list[Row], results: dict[str, Any]) -> None:
    service = b.start(workers=2)
    _, done, failed, took = run(repeat, service.port, "login", b.token, b.sizes.login_s, 16, 0.0)
    rows.append(("Full logins per second (2 workers)", f"{done / took:.0f}/s, {failed} failed", "", ""))
    service.stop()


def login_cost(b: common.Bench, rows: list[Row], results: dict[str, Any]) -> None:
    """What one whole login costs on one worker: create with its PNG, the stream opened,
    SCAN, VERIFY, the redemption with its session. The worker's CPU in alternating rounds
    of logins and of /healthz (both meet the machine as it is in the same proportions);
    Redis's commands and reads (about one a round trip: a pipeline's commands arrive in
    one read) over the logins; Redis's memory per live QR and per session."""
    service = b.start()
    pid, admin, port = common.worker_pid(service), redis.Redis.from_url(b.server.url), service.port
    login_cpu = healthz_cpu = commands = reads = 0.0
    done = answered = 0
    seconds = b.sizes.login_s / 5
    for _ in range(5):
        stats, cpu0 = admin.info("stats"), common.cpu_s(pid)
        done += run(repeat, port, "login+stream", b.token, seconds, 8, 0.0)[1]
        cpu1, after = common.cpu_s(pid), admin.info("stats")
        commands += after["total_commands_processed"] - stats["total_commands_processed"]
        reads += after["total_reads_processed"] - stats["total_reads_processed"]
        answered += run(repeat, port, "get", "/healthz", seconds, 8, 0.0)[1]
        login_cpu, healthz_cpu = login_cpu + cpu1 - cpu0, healthz_cpu + common.cpu_s(pid) - cpu1
    login_ms, healthz_ms = login_cpu / max(1, done) * 1000, healthz_cpu / max(1, answered) * 1000
    admin.flushdb()
    used0 = admin.info("memory")["used_memory"]
    cookie = common.bind_cookie(port)
    qrs = len(qrs_for(port, cookie, 2000))
    used1 = admin.info("memory")["used_memory"]
    logged = len(run(repeat, port, "login", b.token, 600, 8, 0.0, until=2000)[0])
    used2 = admin.info("memory")["used_memory"]
    per_qr, per_login = (used1 - used0) / max(1, qrs), (used2 - used1) / max(1, logged)
    rows += [("Worker CPU per whole login (create with its PNG, the stream, SCAN, VERIFY, redemption)",
              f"{login_ms:.2f} ms, {login_ms / healthz_ms:.1f} × a /healthz ({healthz_ms:.2f} ms), same worker", "", ""),
             ("Redis per whole login", f"{commands / max(1, done):.1f} commands in {reads / max(1, done):.1f} reads "
              "(round trips)", "", ""),
             ("Redis memory", f"{per_qr:.0f} B per live QR; {per_login:.0f} B per login (its session, and its QR kept "
              "10 min past its deadline for late callers)", "", "")]  # fmt: skip
    print(f"login cost: {rows[-3:]}", flush=True)
    service.stop()


def restart(b: common.Bench, rows: list[Row], results: dict[str, Any]) -> None:
    """SIGTERM to the worker with streams open: ours, and gunicorn's default shutdown."""
    found = {}
    configs = [("qrlogin", "gunicorn.conf.py")]
    if b.sizes.restart_alternative:
        configs.append(("gunicorn default", "bench/gunicorn_plain.conf.py"))
    for name, config in configs:
        service = b.start(config=config)
        cookie = common.bind_cookie(service.port)
        holders = Holders(service.port, cookie, common.qr_paths(qrs_for(service.port, cookie, b.sizes.restart)),
                          reconnect=True)  # fmt: skip
        opened, _, _ = holders.opened()
        pid, signalled = common.worker_pid(service), time.time()
        os.kill(pid, signal.SIGTERM)
        while Path(f"/proc/{pid}").exists() and time.time() - signalled < 60:
            time.sleep(0.02)
        exited = time.time() - signalled
        time.sleep(b.sizes.restart_wait_s)  # the default retry is 3 s; a new worker boots
        back = sorted(t for r in holders.finish() for t in r[3])
        found[name] = (
            f"exit {exited:.2f} s, all back in {back[-1] - signalled:.2f} s"
            if len(back) >= opened
            else f"exit {exited:.2f} s, {len(back):,} of {opened:,} back {b.sizes.restart_wait_s} s after its exit"
        )
        print(f"restart ({name}): {opened} streams, {found[name]}", flush=True)
        service.stop()
    rows.append(("Restart (SIGTERM to the worker)", f"{b.sizes.restart:,} streams: {found['qrlogin']}",
                 f"gunicorn default: {found['gunicorn default']}" if "gunicorn default" in found
                 else "(full run only)", "exit <= 5 s"))  # fmt: skip


def cluster(b: common.Bench, rows: list[Row], results: dict[str, Any]) -> None:
    """One Redis against a 3-master Redis Cluster (a replica each), two workers each:
    full logins, confirm-to-browser latency, connections per process; then a master
    killed."""
    from qrlogin.keys import Keys
    from servers.cluster import LocalCluster

    cells: dict[str, list[str]] = {}
    with LocalCluster(b.logs) as local:
        local.start()
        for name, url, mode in (("1 node", b.server.url, "single"), ("3 shards", local.url, "cluster")):
            service = b.start(workers=2, REDIS_URL=url, QRLOGIN_REDIS_MODE=mode)
            nodes = [n.client() for n in local.masters()] if mode == "cluster" else [redis.Redis.from_url(url)]
            _, done, failed, took = run(repeat, service.port, "login", b.token, b.sizes.login_s, 16, 0.0)
            cookie = common.bind_cookie(service.port)
            ids = qrs_for(service.port, cookie, b.sizes.cluster_waiting)
            holders = Holders(service.port, cookie, common.qr_paths(ids), processes=1)
            holders.opened()
            run(sender, service.port, b.token, steps([(q, "SCAN") for q in ids]), 1000.0)
            time.sleep(1)
            _, sent, _, _ = run(sender, service.port, b.token, steps([(q, "VERIFY") for q in ids]), 100.0)
            clients = common.redis_clients(*nodes)
            time.sleep(1)
            lat = common.latency(ids, sent, holders.events("stop"))
            cells[name] = [f"{done / took:.0f}/s, {failed} failed",
                           f"p50 {common.ms(lat['p50'])}, p99 {common.ms(lat['p99'])}, {lat['missing']} missing of {len(ids):,} waiting",
                           f"{clients.get('qrlogin-hub', 0) / 2:g} subscriber(s) and {clients.get('qrlogin', 0) / 2:g} "
                           f"pooled, over {len(nodes)} node(s)"]  # fmt: skip
            print(f"{name}: {cells[name]}", flush=True)
            service.stop()
        failover = measure_failover(b, local, Keys)
    rows += [("Full logins per second (2 workers)", *cells["1 node"][:1], *cells["3 shards"][:1], ""),
             ("Confirm to browser, 100 confirms/s", cells["1 node"][1], cells["3 shards"][1], ""),
             ("Redis connections per process (while confirming)", cells["1 node"][2], cells["3 shards"][2], ""),
             ("Recovery after a master is killed", "(no replica to take over)", failover, "")]  # fmt: skip


def measure_failover(b: common.Bench, local: Any, keys: Any) -> str:
    """Browsers wait on QRs one master holds; it is killed. Until commands on its slots
    work again, until the hub resubscribed them all on the promoted replica; then
    confirm-to-browser latency for those browsers."""
    service = b.start(workers=2, REDIS_URL=local.url, QRLOGIN_REDIS_MODE="cluster")
    victim, cookie = local.masters()[0], common.bind_cookie(service.port)
    ids = qrs_for(service.port, cookie, b.sizes.failover_waiting + 1,
                  keep=lambda q: local.master_of(keys.qr(q)).port == victim.port)  # fmt: skip
    probe, ids = ids[0], ids[1:]
    holders = Holders(service.port, cookie, common.qr_paths(ids), processes=1)
    holders.opened()
    run(sender, service.port, b.token, steps([(q, "SCAN") for q in [probe, *ids]]), 1000.0)
    replica = local.replica_of(victim)
    reader = replica.client()
    reader.execute_command("READONLY")
    while any(reader.hget(keys.qr(q), "status") != "QRCODE_SCANNED" for q in [probe, *ids]):
        time.sleep(0.05)  # replicated, so that the failover loses none of them
    killed = time.time()
    victim.stop()
    headers = {"Authorization": f"Bearer {b.token}"}
    while requests.post(service.url + "/v1/accounts/qrcode_fill", json={"id": probe, "step": "VERIFY"},
                        headers=headers, timeout=10).status_code != 200:  # fmt: skip
        time.sleep(0.02)
    commands_back = time.time() - killed
    channels, promoted = {keys.channel(q) for q in ids}, replica.client()
    while not channels <= set(promoted.pubsub_shardchannels()) and time.time() - killed < 120:
        time.sleep(0.02)
    resubscribed = time.time() - killed
    _, sent, _, _ = run(sender, service.port, b.token, steps([(q, "VERIFY") for q in ids]), 100.0)
    time.sleep(1)
    lat = common.latency(ids, sent, holders.events("stop"))
    service.stop()
    return (f"commands on its slots back in {commands_back:.2f} s; its {len(ids):,} waiting browsers "
            f"resubscribed on the promoted replica in {resubscribed:.2f} s; then confirm to browser "
            f"p50 {common.ms(lat['p50'])}, p99 {common.ms(lat['p99'])}, {lat['missing']} missing")  # fmt: skip


#: The standard run's measurements, in order, and the table each adds rows to.
MEASUREMENTS = ((waiting, "main"), (sessions, "main"), (logins, "main"), (login_cost, "main"),
                (overload.capacity, "main"), (overload.calm, "main"), (overload.after_calm, "main"),
                (overload.overload, "main"), (restart, "main"), (cluster, "cluster"))  # fmt: skip
