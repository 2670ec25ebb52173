"""``python -m bench --moonshot``: as many waiting browsers as this box holds.

1. Side by side, one worker each, the same number of idle streams: flask-sse's stock
   stream, the stream with a greenlet per browser (gunicorn's own gevent worker), the
   parked stream (the Procfile's worker), and Nchan (nginx's push module, in C).
2. The Procfile's service on 8 workers: streams opened in steps up to 100,000 from
   8 load processes on 8 loopback addresses; at each step the memory per stream, the
   Redis connections, heartbeats, and confirm-to-browser latency at 300 confirms/s.
3. At the top: one worker told to stop (SIGTERM), how long it takes to exit, and how
   long until its browsers are all back.
4. QR creation against /healthz, worker CPU per request, on the same worker.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import requests

from bench import load
from bench.common import (
    CTX,
    Bench,
    Holders,
    bind_cookie,
    cpu_s,
    cpu_ticks,
    percentile,
    proc_stat,
    rss_kb,
    worker_pid,
)
from bench.measure import _clients_by_name, measure_flask_sse
from bench.report import parse_histogram
from qrlogin.models import SUCCESS
from servers.nginx import Nginx, nginx_binary
from servers.process import ESTABLISHED, tcp_sockets
from servers.service import Service

#: Where the load processes connect from: each address gives about 28,000 client ports.
SOURCES = [f"127.0.0.{n}" for n in range(2, 10)]
#: Where the probe connects from: the process whose streams are confirmed at each step.
PROBE_SOURCE = "127.0.0.10"
#: A confirmation is "clear" of the busiest process outside the run when that process
#: used less than OTHER_BUSY_S of CPU from OTHER_BEFORE_S before its send to its arrival.
OTHER_BEFORE_S = 0.05
OTHER_BUSY_S = 0.02


@dataclass(frozen=True)
class MoonSizes:
    steps: tuple[int, ...]  # waiting streams at each measurement
    side: int  # idle streams per design, side by side
    workers: int
    confirm_s: int  # seconds of 300 confirms/s at each step
    hold_s: int  # how long each step holds before measuring (heartbeats flow meanwhile)
    cpu_s: int  # seconds of creating, and of /healthz, for the CPU ratio (over the rounds)


MOON = MoonSizes(
    steps=(10_000, 25_000, 50_000, 100_000), side=10_000, workers=8, confirm_s=5, hold_s=20,
    cpu_s=10,
)  # fmt: skip
MOON_QUICK = MoonSizes(steps=(1_000, 2_500), side=1_000, workers=2, confirm_s=2, hold_s=3, cpu_s=3)
CONFIRM_RATE = 300.0
#: Browsers waiting when the Redis connections are first counted, before the climb: the
#: target asks for one subscriber per process plus a bounded pool at 100 and at 100,000.
FEW = 100
FEW_HOLD_S = 2


def run_parallel(target: Any, argsets: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target`` once per argument tuple, each in its own process, at once."""
    results = CTX.Queue()
    processes = [CTX.Process(target=target, args=(*a, results), daemon=True) for a in argsets]
    for process in processes:
        process.start()
    answers = [results.get(timeout=900) for _ in processes]
    for process in processes:
        process.join(30)
    return answers


def create_qrs(port: int, cookie: str, count: int) -> list[str]:
    """``count`` QRs bound to ``cookie``, made through the API by two load processes."""
    ids: list[str] = []
    while len(ids) < count:
        for answer in run_parallel(load.creator, [(port, cookie, 10.0, 16, 0.0)] * 2):
            ids += answer[1]
        print(f"  {min(len(ids), count)} of {count} QRs created", flush=True)
    return ids[:count]


def cpu_times() -> tuple[int, int]:
    """The box's CPU time so far, in ticks: (all, idle), from /proc/stat."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(ticks), ticks[3] + ticks[4]  # idle and iowait


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How busy the box's cores were between two ``cpu_times`` (0 to 1)."""
    total, idle = after[0] - before[0], after[1] - before[1]
    return 1 - idle / max(1, total)


def process_ticks() -> dict[int, tuple[str, int, int]]:
    """Every process's (name, parent, user + system CPU ticks so far), from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # gone meanwhile
                found[int(entry.name)] = proc_stat(int(entry.name))
    return found


def ticks_used(
    before: dict[int, tuple[str, int, int]], after: dict[int, tuple[str, int, int]]
) -> dict[int, tuple[str, int]]:
    """The CPU ticks each process used between two ``process_ticks``, by pid (0 for one
    that started meanwhile)."""
    return {
        pid: (name, ticks - before.get(pid, (name, 0, ticks))[2])
        for pid, (name, _, ticks) in after.items()
    }


def outside_use(
    before: dict[int, tuple[str, int, int]], after: dict[int, tuple[str, int, int]]
) -> dict[int, tuple[str, int]]:
    """``ticks_used`` by each process outside this run (not this one and not its
    descendants; kernel threads included)."""
    ours = {os.getpid()}
    while more := {pid for pid, (_, parent, _) in after.items() if parent in ours} - ours:
        ours |= more  # the next generation of descendants
    return {pid: used for pid, used in ticks_used(before, after).items() if pid not in ours}


def busiest(used: dict[int, tuple[str, int]]) -> int:
    """The pid that used the most CPU in ``outside_use``'s answer (0: none)."""
    return max(used, key=lambda pid: used[pid][1], default=0)


def role_use(
    before: dict[int, tuple[str, int, int]],
    after: dict[int, tuple[str, int, int]],
    roles: dict[str, set[int]],
) -> dict[str, int]:
    """``ticks_used`` by the processes of each role, summed."""
    used = ticks_used(before, after)
    return {role: sum(used[pid][1] for pid in pids if pid in used) for role, pids in roles.items()}


class Sampled:
    """One process's CPU ticks, read every 10 ms on a thread while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.name = ""
        if pid:
            with contextlib.suppress(OSError):
                self.name = Path(f"/proc/{pid}/comm").read_text().strip()
        self.times: list[float] = []
        self.ticks: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampled:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while self.pid and not self._stop.wait(0.01):
            try:
                self.ticks.append(cpu_ticks(self.pid))
            except OSError:
                return
            self.times.append(time.time())

    def used(self, start: float, end: float) -> float:
        """CPU seconds the process used between ``start`` and ``end`` (to the tick)."""
        i, j = bisect.bisect_left(self.times, start), bisect.bisect_right(self.times, end) - 1
        if j <= i:
            return 0.0
        return (self.ticks[j] - self.ticks[i]) / os.sysconf("SC_CLK_TCK")


def rss_sum(pids: list[int]) -> int:
    return sum(rss_kb(pid) for pid in pids)


def stream_paths(ids: list[str]) -> list[str]:
    return [f"/v1/accounts/qrcode/{q}/events" for q in ids]


# ---- 1. side by side --------------------------------------------------------------------


def hold_idle(b: Bench, service: Service, count: int) -> dict[str, Any]:
    """``count`` idle streams on ``service``'s one worker: its RSS growth per stream."""
    pid = worker_pid(service)
    cookie = bind_cookie(service.port)
    ids = create_qrs(service.port, cookie, count)
    time.sleep(1)
    rss0 = rss_kb(pid)
    holders = Holders(service.port, cookie, stream_paths(ids), processes=2, concurrency=200)
    opened, errors, took = holders.opened()
    time.sleep(min(b.moon.hold_s, 10))
    counts = holders.ask("count")
    rss = rss_kb(pid)
    holders.finish()
    return {
        "opened": opened, "errors": errors, "open_s": took, "kb_per": (rss - rss0) / max(1, opened),
        "quiet": sum(c[2] for c in counts),
    }  # fmt: skip


NCHAN_LOCATIONS = """
    location = /healthz { return 200 "ok"; }
    location ~ ^/sub/(\\w+)$ { nchan_subscriber eventsource; nchan_channel_id $1; }
    location ~ ^/pub/(\\w+)$ { nchan_publisher; nchan_channel_id $1; }
"""
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")


def measure_nchan(b: Bench, count: int) -> dict[str, Any]:
    """Nchan holding ``count`` idle EventSource subscribers: its worker's RSS growth."""
    if not NCHAN_MODULE.exists() or nginx_binary() is None:
        return {"skipped": "apt-get install nginx libnginx-mod-nchan"}
    main = f"load_module {NCHAN_MODULE};\nworker_rlimit_nofile 20000;"
    with Nginx(b.logs, main=main, connections=19000).start(NCHAN_LOCATIONS) as nginx:
        pid = worker_pid(nginx)
        rss0 = rss_kb(pid)
        paths = [f"/sub/bench{i}" for i in range(count)]
        holders = Holders(nginx.port, "", paths, processes=2, blind=True)
        opened, errors, _ = holders.opened()
        time.sleep(5)
        rss = rss_kb(pid)
        holders.finish("stop-now")
    return {"opened": opened, "errors": errors, "kb_per": (rss - rss0) / max(1, opened)}


#: Rounds of creating QRs, then of /healthz, on one worker. Alternating, both meet the
#: machine as it is (busy or not) in the same proportions: with one 10 s block of each,
#: the same code measured from 3.0 x to 4.0 x; in rounds, 2.98 x to 3.11 x (3 runs).
CPU_ROUNDS = 5


def measure_cpu_ratio(b: Bench, service: Service) -> dict[str, float]:
    """Worker CPU per QR creation and per /healthz, in alternating rounds on one worker."""
    pid = worker_pid(service)
    cookie = bind_cookie(service.port)
    seconds = b.moon.cpu_s / CPU_ROUNDS
    create_cpu = healthz_cpu = 0.0
    created = answered = 0
    for _ in range(CPU_ROUNDS):
        cpu0 = cpu_s(pid)
        made = run_parallel(load.creator, [(service.port, cookie, seconds, 16, 0.0)])[0][1]
        cpu1 = cpu_s(pid)
        answered += run_parallel(load.hammer, [(service.port, "/healthz", seconds, 16)])[0][1]
        cpu2 = cpu_s(pid)
        created += len(made)
        create_cpu, healthz_cpu = create_cpu + cpu1 - cpu0, healthz_cpu + cpu2 - cpu1
    create_ms = create_cpu / max(1, created) * 1000
    healthz_ms = healthz_cpu / max(1, answered) * 1000
    return {
        "create_ms": create_ms, "healthz_ms": healthz_ms, "ratio": create_ms / healthz_ms,
        "created": created, "answered": answered,
    }  # fmt: skip


def side_by_side(b: Bench) -> dict[str, Any]:
    count = b.moon.side
    found: dict[str, Any] = {}
    found["flask-sse"] = measure_flask_sse(b, count)
    print(f"side by side, flask-sse: {found['flask-sse']}", flush=True)
    greenlet = b.start(GUNICORN_CMD_ARGS="--worker-class gevent")
    found["greenlet"] = hold_idle(b, greenlet, count)
    greenlet.stop()
    print(f"side by side, greenlet per stream: {found['greenlet']}", flush=True)
    parked = b.start()
    found["cpu"] = measure_cpu_ratio(b, parked)
    print(f"QR creation against /healthz: {found['cpu']}", flush=True)
    found["parked"] = hold_idle(b, parked, count)
    parked.stop()
    print(f"side by side, parked: {found['parked']}", flush=True)
    found["nchan"] = measure_nchan(b, count)
    print(f"side by side, Nchan: {found['nchan']}", flush=True)
    return found


# ---- 2. and 3. the climb, and a restart at the top -----------------------------------


class Climb:
    """The 8-worker service and the load processes holding its streams, step by step."""

    def __init__(self, b: Bench) -> None:
        self.b = b
        self.service = b.start(workers=b.moon.workers)
        self.pids = self.service.workers()
        self.cookie = bind_cookie(self.service.port)
        # Each step's confirmations (the probe's, then as many of the load processes')
        # end streams: the next step opens that many more.
        confirms = 2 * int(CONFIRM_RATE * b.moon.confirm_s)
        top = b.moon.steps[-1] + confirms * (len(b.moon.steps) - 1)
        print(f"creating {top} QRs", flush=True)
        self.ids = create_qrs(self.service.port, self.cookie, top)
        time.sleep(2)
        self.rss0 = rss_sum(self.pids)
        self.groups: list[Holders] = []
        self.probe_pids: set[int] = set()
        self.opened = 0
        self.errors = 0
        self.confirmed: set[str] = set()

    def counts(self) -> tuple[int, int, int, float]:
        """Streams open, quiet, reconnects, and the last reconnect, over all processes."""
        answers = [a for g in self.groups for a in g.ask("count")]
        return (
            sum(a[1] for a in answers), sum(a[2] for a in answers),
            sum(a[3] for a in answers), max((a[4] for a in answers), default=0.0),
        )  # fmt: skip

    def open_to(self, target: int, sources: list[str] = SOURCES) -> float:
        """Open streams until ``target`` were opened in all, from a process per source
        address; the seconds it took."""
        paths = stream_paths(self.ids[self.opened : target])
        group = Holders(
            self.service.port, self.cookie, paths, processes=len(sources), sources=sources,
            concurrency=100, reconnect=True,
        )  # fmt: skip
        self.groups.append(group)
        if sources == [PROBE_SOURCE]:
            self.probe_pids.update(p.pid for p in group.processes if p.pid is not None)
        _, errors, took = group.opened()
        self.opened, self.errors = target, self.errors + errors
        return took

    def step(self, target: int) -> dict[str, Any]:
        # ``target`` waiting: the load processes' streams, then the probe's.
        probes = int(CONFIRM_RATE * self.b.moon.confirm_s)
        took = self.open_to(target - probes + len(self.confirmed))
        self.open_to(self.opened + probes, [PROBE_SOURCE])
        probed = self.ids[self.opened - probes : self.opened]
        time.sleep(self.b.moon.hold_s)
        live, quiet, _, _ = self.counts()
        rss = rss_sum(self.pids)
        found: dict[str, Any] = {
            "target": target, "open": live, "errors": self.errors, "quiet": quiet,
            "open_s": took, "kb_per": (rss - self.rss0) / max(1, live), **self.redis_clients(),
        }  # fmt: skip
        found["latency"] = self.latency(probed)
        # Every probe's streams are confirmed by now: the newest others are the load
        # processes'.
        newest_first = reversed(self.ids[: self.opened])
        held = [q for q in newest_first if q not in self.confirmed][:probes]
        found["latency_held"] = self.latency(held)
        print(f"step {target}: {found}", flush=True)
        return found

    def few(self) -> dict[str, Any]:
        """The Redis connections with FEW browsers waiting, before the first step."""
        self.open_to(FEW)
        time.sleep(FEW_HOLD_S)
        found: dict[str, Any] = {
            "target": FEW, "hold_s": FEW_HOLD_S, "open": self.counts()[0], **self.redis_clients(),
        }  # fmt: skip
        print(f"{FEW} waiting: {found}", flush=True)
        return found

    def redis_clients(self) -> dict[str, float]:
        """The service's Redis connections, by their names, per worker."""
        clients = _clients_by_name([redis.Redis.from_url(self.b.server.url)])
        return {
            "subscribers_per_process": clients.get("qrlogin-hub", 0) / len(self.pids),
            "pool_per_process": clients.get("qrlogin", 0) / len(self.pids),
        }

    def latency(self, chosen: list[str]) -> dict[str, float]:
        """Scan, then confirm at 300/s, the QRs ``chosen``; confirm to browser."""
        b = self.b
        self.confirmed.update(chosen)
        port = self.service.port
        scanning = process_ticks()
        run_parallel(load.stepper, [(port, b.token, [(q, "SCAN") for q in chosen], 1000.0)])
        time.sleep(1)
        plan = [(q, "VERIFY") for q in chosen]
        before = requests.get(self.service.url + "/metrics", timeout=30).text
        # The sender's connections are open when the window begins, and its start is
        # not counted: from its first confirmation to its last answer.
        answers = CTX.Queue()
        sender = CTX.Process(
            target=load.timed_stepper, args=(port, b.token, plan, CONFIRM_RATE, answers),
            daemon=True,
        )  # fmt: skip
        sender.start()
        answers.get(timeout=120)  # ready
        busy0, procs0 = cpu_times(), process_ticks()
        # The busiest process outside the run while the QRs were scanned is watched
        # while they are confirmed.
        with Sampled(busiest(outside_use(scanning, procs0))) as other:
            _, sent, rate, sender_s = answers.get(timeout=900)
        busy1, procs1 = cpu_times(), process_ticks()
        sender.join(30)
        busy = busy_share(busy0, busy1)
        used = outside_use(procs0, procs1)
        ticks = max(1, busy1[0] - busy0[0])
        top = used.get(busiest(used), ("", 0))
        load_pids = {p.pid or 0 for g in self.groups for p in g.processes} - self.probe_pids
        redis_pid = self.b.server.process.pid if self.b.server.process else 0
        roles = role_use(
            procs0, procs1,
            {"workers": set(self.pids), "load": load_pids, "probe": self.probe_pids,
             "redis": {redis_pid}},
        )  # fmt: skip
        roles["sender"] = round(sender_s * os.sysconf("SC_CLK_TCK"))
        time.sleep(2)
        after = requests.get(self.service.url + "/metrics", timeout=30).text
        server = parse_histogram(after, "qrlogin_event_delivery_seconds", minus=before)
        gc2 = parse_histogram(after, "qrlogin_gc_pause_seconds", before, 'generation="2"')
        seen: dict[str, Any] = {}
        for g in self.groups:
            for answer in g.ask("report"):
                seen.update(answer[1])
        values, clear = [], []
        for q in chosen:
            arrived = [
                t for t, s in seen.get(f"/v1/accounts/qrcode/{q}/events", []) if s == SUCCESS
            ]
            if q in sent and sent[q][1] == 200 and arrived:
                values.append(arrived[0] - sent[q][0])
                if other.used(sent[q][0] - OTHER_BEFORE_S, arrived[0]) < OTHER_BUSY_S:
                    clear.append(values[-1])
        return {
            "n": len(values), "missing": len(chosen) - len(values), "rate": rate,
            "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values, default=float("nan")),
            "server_p50_le": server["p50_le"], "server_p99_le": server["p99_le"],
            "gc2_count": gc2["count"], "gc2_mean": gc2["mean"], "gc2_p99_le": gc2["p99_le"],
            "busy": busy, "outside": sum(t for _, t in used.values()) / ticks,
            "outside_busiest": f"{top[0]} {top[1] / ticks:.1%}" if top[0] else "",
            "watched": other.name, "clear_n": len(clear),
            "clear_p50": percentile(clear, 50), "clear_p99": percentile(clear, 99),
            "roles": {role: n / ticks for role, n in roles.items()},
        }  # fmt: skip

    def restart(self) -> dict[str, Any]:
        """SIGTERM one worker: how long it takes to exit, and until every stream is back."""
        live, _, reconnects0, _ = self.counts()
        victim = self.pids[0]
        held = self.worker_waiting(victim)
        began = time.monotonic()
        os.kill(victim, signal.SIGTERM)
        while Path(f"/proc/{victim}").exists() and time.monotonic() - began < 60:
            if Path(f"/proc/{victim}/stat").read_text().split(") ", 1)[1].startswith("Z"):
                break  # exited; the master has not reaped it yet
            time.sleep(0.05)
        exit_s = time.monotonic() - began
        back_s = float("nan")
        while time.monotonic() - began < 90:
            now_live, _, reconnects, _ = self.counts()
            if reconnects - reconnects0 >= held and now_live >= live:
                back_s = time.monotonic() - began
                break
            time.sleep(0.5)
        now_live, _, reconnects, _ = self.counts()
        self.pids = self.service.workers()
        return {
            "held": held, "exit_s": exit_s, "back_s": back_s,
            "reconnects": reconnects - reconnects0, "open_before": live, "open_after": now_live,
        }  # fmt: skip

    def worker_waiting(self, pid: int) -> int:
        """Streams held by worker ``pid``: its established connections on the service's
        port."""
        return len(tcp_sockets([pid], self.service.port, ESTABLISHED)[pid])

    def stop(self) -> None:
        for group in self.groups:
            group.finish()


def climb(b: Bench) -> dict[str, Any]:
    ladder = Climb(b)
    try:
        few = ladder.few()
        steps = [ladder.step(target) for target in b.moon.steps]
        restart = ladder.restart()
        print(f"restart: {restart}", flush=True)
    finally:
        ladder.stop()
        ladder.service.stop()
    return {"few": few, "steps": steps, "restart": restart}


def run(b: Bench) -> dict[str, Any]:
    return {"side": side_by_side(b), "climb": climb(b)}
