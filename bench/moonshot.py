"""``python -m bench --moonshot``: as many waiting browsers as this box holds.

1. Side by side, one worker each, the same number of idle streams: flask-sse's stock
   stream, a greenlet per browser (gunicorn's own gevent worker), the parked stream
   (the Procfile's worker), and Nchan (nginx's push module, in C).
2. The Procfile's service on 8 workers: streams opened in steps up to 100,000 from 8
   load processes on 8 loopback addresses; at each step the memory per stream, the
   Redis connections, heartbeats, and confirm-to-browser latency at 300 confirms/s.
3. At the top: one worker told to stop (SIGTERM), until it exits, and until its
   browsers are all back.
4. QR creation against /healthz, worker CPU per request, on the same worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from servers.nginx import Nginx, nginx_binary
from servers.process import ESTABLISHED, tcp_sockets
from servers.service import Service

from bench import common
from bench.client import CTX, Backseat, Holders, repeat, run, run_parallel, sender, steps
from bench.standard import flask_sse

#: Where the load processes connect from (each address gives about 28,000 ports), and
#: the probe, the process whose streams are confirmed at each step.
SOURCES = [f"127.0.0.{n}" for n in range(2, 10)]
PROBE_SOURCE = "127.0.0.10"
CONFIRM_RATE = 300.0
#: Browsers waiting when the Redis connections are first counted, before the climb.
FEW = 100
#: Rounds of creating QRs, then of /healthz, on one worker: alternating, both meet the
#: machine as it is (busy or not) in the same proportions.
CPU_ROUNDS = 5


@dataclass(frozen=True)
class MoonSizes:
    steps: tuple[int, ...]  # waiting streams at each measurement
    side: int  # idle streams per design, side by side
    workers: int
    confirm_s: int  # seconds of 300 confirms/s at each step
    hold_s: int  # how long each step holds before measuring (heartbeats flow meanwhile)
    cpu_s: int  # seconds of creating, and of /healthz, for the CPU ratio (over the rounds)


MOON = MoonSizes(steps=(10_000, 25_000, 50_000, 100_000), side=10_000, workers=8, confirm_s=5, hold_s=20, cpu_s=10)
MOON_QUICK = MoonSizes(steps=(1_000, 2_500), side=1_000, workers=2, confirm_s=2, hold_s=3, cpu_s=3)


def create_qrs(port: int, cookie: str, count: int) -> list[str]:
    """``count`` QRs bound to ``cookie``, made through the API by two load processes."""
    ids: list[str] = []
    while len(ids) < count:
        for answer in run_parallel(repeat, [(port, "create", cookie, 10.0, 16, 0.0)] * 2):
            ids += answer[0]
        print(f"  {min(len(ids), count)} of {count} QRs created", flush=True)
    return ids[:count]


def hold_idle(b: common.Bench, service: Service, count: int) -> dict[str, Any]:
    """``count`` idle streams on ``service``'s one worker: its RSS growth per stream."""
    pid, cookie = common.worker_pid(service), common.bind_cookie(service.port)
    ids = create_qrs(service.port, cookie, count)
    time.sleep(1)
    rss0 = common.rss_kb(pid)
    holders = Holders(service.port, cookie, common.qr_paths(ids), concurrency=200)
    opened, errors, _ = holders.opened()
    time.sleep(min(b.moon.hold_s, 10))
    quiet, rss = sum(c[2] for c in holders.ask("count")), common.rss_kb(pid)
    holders.finish()
    return {"opened": opened, "errors": errors, "kb_per": (rss - rss0) / max(1, opened), "quiet": quiet}


NCHAN_LOCATIONS = """
    location = /healthz { return 200 "ok"; }
    location ~ ^/sub/(\\w+)$ { nchan_subscriber eventsource; nchan_channel_id $1; }
"""
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")


def nchan(b: common.Bench, count: int) -> dict[str, Any]:
    """Nchan holding ``count`` idle EventSource subscribers: its worker's RSS growth."""
    if not NCHAN_MODULE.exists() or nginx_binary() is None:
        return {"skipped": "apt-get install nginx libnginx-mod-nchan"}
    main = f"load_module {NCHAN_MODULE};\nworker_rlimit_nofile 20000;"
    with Nginx(b.logs, main=main, connections=19000).start(NCHAN_LOCATIONS) as nginx:
        pid = common.worker_pid(nginx)
        rss0 = common.rss_kb(pid)
        holders = Holders(nginx.port, "", [f"/sub/bench{i}" for i in range(count)], blind=True)
        opened, errors, _ = holders.opened()
        time.sleep(5)
        rss = common.rss_kb(pid)
        holders.finish()
    return {"opened": opened, "errors": errors, "kb_per": (rss - rss0) / max(1, opened)}


def cpu_ratio(b: common.Bench, service: Service) -> dict[str, float]:
    """Worker CPU per QR creation and per /healthz, in alternating rounds on one worker."""
    pid, cookie = common.worker_pid(service), common.bind_cookie(service.port)
    seconds = b.moon.cpu_s / CPU_ROUNDS
    create_cpu = healthz_cpu = 0.0
    created = answered = 0
    for _ in range(CPU_ROUNDS):
        cpu0 = common.cpu_s(pid)
        created += len(run(repeat, service.port, "create", cookie, seconds, 16, 0.0)[0])
        cpu1 = common.cpu_s(pid)
        answered += run(repeat, service.port, "get", "/healthz", seconds, 16, 0.0)[1]
        create_cpu, healthz_cpu = create_cpu + cpu1 - cpu0, healthz_cpu + common.cpu_s(pid) - cpu1
    create_ms, healthz_ms = (create_cpu / max(1, created) * 1000, healthz_cpu / max(1, answered) * 1000)
    return {"create_ms": create_ms, "healthz_ms": healthz_ms, "ratio": create_ms / healthz_ms}


def side_by_side(b: common.Bench) -> dict[str, Any]:
    found: dict[str, Any] = {"flask-sse": flask_sse(b, b.moon.side)}
    greenlet = b.start(GUNICORN_CMD_ARGS="--worker-class gevent")
    found["greenlet"] = hold_idle(b, greenlet, b.moon.side)
    greenlet.stop()
    parked = b.start()
    found["cpu"] = cpu_ratio(b, parked)
    found["parked"] = hold_idle(b, parked, b.moon.side)
    parked.stop()
    found["nchan"] = nchan(b, b.moon.side)
    print(f"side by side: {found}", flush=True)
    return found


class Climb:
    """The 8-worker service and the load processes holding its streams, step by step."""

    def __init__(self, b: common.Bench) -> None:
        self.b, self.service = b, b.start(workers=b.moon.workers)
        self.pids, self.cookie = self.service.workers(), common.bind_cookie(self.service.port)
        # Each step's confirmations (the probe's and as many of the load processes') end
        # streams: the next step opens that many more.
        # The top step confirms one more probe's worth, with the load processes paused.
        confirms = 2 * int(CONFIRM_RATE * b.moon.confirm_s)
        count = b.moon.steps[-1] + confirms * (len(b.moon.steps) - 1) + confirms // 2
        self.ids = create_qrs(self.service.port, self.cookie, count)
        time.sleep(2)
        self.rss0 = common.rss_kb(*self.pids)
        self.groups: list[Holders] = []
        self.probe_pids: set[int] = set()
        self.backseat = Backseat()
        self.opened = self.errors = 0
        self.confirmed: set[str] = set()

    def counts(self) -> tuple[int, int, int]:
        """Streams open, quiet, and reconnects, over all load processes."""
        answers = [a for g in self.groups for a in g.ask("count")]
        return sum(a[1] for a in answers), sum(a[2] for a in answers), sum(a[3] for a in answers)

    def open_to(self, target: int, sources: list[str] = SOURCES) -> float:
        """Open streams until ``target`` were opened in all, a process per source address;
        the probe's in a session of its own (``own_group``), the load's in the
        ``Backseat``."""
        probe = sources == [PROBE_SOURCE]
        group = Holders(self.service.port, self.cookie, common.qr_paths(self.ids[self.opened : target]),
                        processes=len(sources), sources=sources, reconnect=True, own_session=probe)  # fmt: skip
        self.groups.append(group)
        pids = {p.pid or 0 for p in group.processes}
        if probe:
            self.probe_pids.update(pids)
        else:
            self.backseat.take(pids)
        _, errors, took = group.opened()
        self.opened, self.errors = target, self.errors + errors
        return took

    def redis_clients(self) -> dict[str, float]:
        clients = common.redis_clients(redis.Redis.from_url(self.b.server.url))
        return {"subscribers": clients.get("qrlogin-hub", 0) / len(self.pids),
                "pooled": clients.get("qrlogin", 0) / len(self.pids)}  # fmt: skip

    def few(self) -> dict[str, Any]:
        self.open_to(FEW)
        time.sleep(2)
        return {"target": FEW, "open": self.counts()[0], **self.redis_clients()}

    def step(self, target: int, top: bool = False) -> dict[str, Any]:
        """``target`` waiting: the load processes' streams, then the probe's; after the
        hold, memory, quiet streams, connections, then latency for the probe's streams and
        for as many of the load processes'. At the ``top``, the probe holds as many more,
        confirmed while the load processes are paused: the tail without the load's own
        work on the shared cores (the browsers of a real deployment are elsewhere)."""
        probes = int(CONFIRM_RATE * self.b.moon.confirm_s)
        extra = probes if top else 0
        took = self.open_to(target - probes - extra + len(self.confirmed))
        self.open_to(self.opened + probes + extra, [PROBE_SOURCE])
        probed = self.ids[self.opened - probes - extra : self.opened - extra]
        alone = self.ids[self.opened - extra : self.opened]
        time.sleep(self.b.moon.hold_s)
        live, quiet, _ = self.counts()
        found: dict[str, Any] = {"target": target, "open": live, "errors": self.errors, "quiet": quiet,
                                 "open_s": took, "kb_per": (common.rss_kb(*self.pids) - self.rss0) / max(1, live),
                                 **self.redis_clients()}  # fmt: skip
        found["latency"] = self.latency(probed)
        held = [q for q in reversed(self.ids[: self.opened - extra]) if q not in self.confirmed][:probes]
        found["latency_held"] = self.latency(held)
        if top:
            found["latency_paused"] = self.latency(alone, pause=True)
        print(f"step {target}: {found}", flush=True)
        return found

    def latency(self, chosen: list[str], pause: bool = False) -> dict[str, Any]:
        """Scan, then confirm at 300/s, the QRs ``chosen``: confirm to browser, the server's
        own share, full collections, where the cores' time went meanwhile, and how long
        the workers waited for a core. ``pause``: the load processes (not the probe)
        are stopped (SIGSTOP) while the confirmations are sent; their streams stay open."""
        self.confirmed.update(chosen)
        port, url = self.service.port, self.service.url
        run(sender, port, self.b.token, steps([(q, "SCAN") for q in chosen]), 1000.0)
        time.sleep(1)
        before, answers = common.metrics(url), CTX.Queue()
        plan = steps([(q, "VERIFY") for q in chosen])
        process = CTX.Process(target=sender, args=(port, self.b.token, plan, CONFIRM_RATE, answers),
                              kwargs={"timed": True, "own_session": True}, daemon=True)  # fmt: skip
        process.start()
        answers.get(timeout=120)  # ready: its connections are open, its start is not counted
        load = {p.pid or 0 for g in self.groups for p in g.processes} - self.probe_pids
        with paused(load if pause else set()):
            before_cpu, waited0 = common.cpu_snapshot(), common.run_wait_s(self.pids)
            _, sent, rate, sender_s = answers.get(timeout=900)
            after_cpu, waited1 = common.cpu_snapshot(), common.run_wait_s(self.pids)
        process.join(30)
        roles = common.cpu_shares(before_cpu, after_cpu, {"workers": set(self.pids), "load": load,
                                                          "probe": self.probe_pids, "redis": self.b.redis_pids},
                                   {"sender": sender_s})  # fmt: skip
        time.sleep(2)
        after = common.metrics(url)
        seen = {path: e for g in self.groups for path, e in g.events().items()}
        return {**common.latency(chosen, sent, seen), "rate": rate, "roles": roles,
                "workers_ran_s": waited1[0] - waited0[0], "workers_waited_s": waited1[1] - waited0[1],
                "server": common.histogram(after, "qrlogin_event_delivery_seconds", before),
                "gc2": common.histogram(after, "qrlogin_gc_pause_seconds", before, 'generation="2"')}  # fmt: skip

    def restart(self) -> dict[str, Any]:
        """SIGTERM one worker: until it exits, and until every stream is back."""
        live, _, reconnects0 = self.counts()
        victim = self.pids[0]
        held = len(tcp_sockets([victim], self.service.port, ESTABLISHED)[victim])
        began = time.monotonic()
        os.kill(victim, signal.SIGTERM)
        while Path(f"/proc/{victim}").exists() and time.monotonic() - began < 60:
            if Path(f"/proc/{victim}/stat").read_text().split(") ", 1)[1].startswith("Z"):
                break  # exited; the master has not reaped it yet
            time.sleep(0.05)
        exit_s, back_s = time.monotonic() - began, float("nan")
        while time.monotonic() - began < 90:
            now_live, _, reconnects = self.counts()
            if reconnects - reconnects0 >= held and now_live >= live:
                back_s = time.monotonic() - began
                break
            time.sleep(0.5)
        self.pids = self.service.workers()
        return {"held": held, "exit_s": exit_s, "back_s": back_s}

    def stop(self) -> None:
        try:
            for group in self.groups:
                group.finish()
        finally:
            self.backseat.close()
            self.service.stop()


@contextlib.contextmanager
def paused(pids: set[int]) -> Iterator[None]:
    """``pids`` stopped (SIGSTOP) within, and continued after, whatever happens; a process
    that ended meanwhile is passed over."""

    def signal_all(signum: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    try:
        signal_all(signal.SIGSTOP)
        yield
    finally:
        signal_all(signal.SIGCONT)


def run_moonshot(b: common.Bench) -> dict[str, Any]:
    side = side_by_side(b)
    ladder = Climb(b)
    try:
        few = ladder.few()
        climbed = [ladder.step(target, top=target == b.moon.steps[-1]) for target in b.moon.steps]
        restart = ladder.restart()
        print(f"restart: {restart}", flush=True)
    finally:
        ladder.stop()
    return {"side": side, "few": few, "steps": climbed, "restart": restart, "workers": b.moon.workers,
            "backseat": ladder.backseat.available}  # fmt: skip
