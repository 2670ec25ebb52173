"""What the runs share: sizes, the run's Redis and services, /proc readings, latency."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests
from itsdangerous import URLSafeTimedSerializer
from qrlogin.models import SUCCESS
from servers.process import Process
from servers.redis_server import RedisServer
from servers.service import Service

SECRET = "bench-only-Jc4Ys8Qe2Nu6Gw3Pa7Xk5Dv9"  # noqa: S105 (a throwaway service)
#: QRs outlive the whole run (it holds browsers for minutes before confirming them).
#: The measurements of speed run without rate limits and without admission control
#: (their clients do not ask again after a 503); capacity and overload turn it on.
BENCH_ENV = {"SECRET_KEY": SECRET, "QRLOGIN_RATE_LIMITS": "off", "QRLOGIN_QR_TTL": "1800",
             "QRLOGIN_MAX_LAG": "0", "QRLOGIN_MAX_INFLIGHT": "0", "QRLOGIN_MAX_SLOWDOWN": "0"}  # fmt: skip
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sizes:
    waiting: int
    hold_s: int
    confirm_s: int
    create_s: int
    login_s: int
    restart: int
    pollers: int
    flask_sse_hold_s: int
    restart_wait_s: int
    restart_alternative: bool
    sessions: int
    cluster_waiting: int
    failover_waiting: int
    overload_s: int


QUICK = Sizes(1500, 3, 2, 3, 3, 500, 60, 2, 4, False, 1500, 300, 100, 8)
FULL = Sizes(10000, 60, 10, 15, 15, 5000, 300, 20, 12, True, 10000, 1000, 300, 60)


def user_token() -> str:
    signer = URLSafeTimedSerializer(SECRET, salt="qrlogin.user")
    return str(signer.dumps({"sub": "bench", "name": "Bench"}))


@dataclass
class Bench:
    """One run: its sizes, its Redis, where server logs go, and the services it started."""

    sizes: Sizes
    server: RedisServer
    logs: Path
    token: str = field(default_factory=user_token)
    services: list[Service] = field(default_factory=list)
    moon: Any = None  # the moonshot's sizes (bench.moonshot.MoonSizes), in that mode

    def start(self, workers: int = 1, config: str = "gunicorn.conf.py", **env: str) -> Service:
        settings = {**BENCH_ENV, "REDIS_URL": self.server.url, **env}
        service = Service(settings, self.logs, workers=workers, config=config)
        self.services.append(service)
        return service.start()

    def stop(self) -> None:
        for service in self.services:
            service.stop()

    @property
    def redis_pids(self) -> set[int]:
        """The run's Redis server process (none when it runs elsewhere): for ``cpu_shares``."""
        return {self.server.process.pid} if self.server.process else set()


def bind_cookie(port: int) -> str:
    answer = requests.post(f"http://127.0.0.1:{port}/v1/accounts/qrcode/", json={"platform": "bench"}, timeout=10)
    return str(answer.cookies["qrlogin_bind"])


def qr_paths(ids: list[str]) -> list[str]:
    return [f"/v1/accounts/qrcode/{q}/events" for q in ids]


# ---- /proc, Redis and /metrics readings ---------------------------------------------


def worker_pid(server: Process) -> int:
    """The first worker of a started server (gunicorn's, nginx's)."""
    return server.workers()[0]


def rss_kb(*pids: int) -> int:
    total = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        total += int(re.search(r"^VmRSS:\s+(\d+)", status, re.M)[1])
    return total


def proc_stat(pid: int) -> tuple[str, int, int]:
    """A process's name, parent pid, and user + system CPU so far (clock ticks)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    name, rest = text[text.index("(") + 1 :].rsplit(") ", 1)
    fields = rest.split()
    return name, int(fields[1]), int(fields[11]) + int(fields[12])


def cpu_s(pid: int) -> float:
    return proc_stat(pid)[2] / TICK


def run_wait_s(pids: list[int]) -> tuple[float, float]:
    """The seconds ``pids``' threads (all of each process's) ran on a core, and waited
    for one while runnable, so far (/proc/PID/task/*/schedstat; a thread or process gone
    counts nothing)."""
    ran = waited = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    on_cpu, on_queue, _ = (task / "schedstat").read_text().split()
                    ran, waited = ran + int(on_cpu), waited + int(on_queue)
    return ran / 1e9, waited / 1e9


def all_ticks() -> dict[int, tuple[str, int, int]]:
    """Every process's ``proc_stat``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # gone meanwhile
                found[int(entry.name)] = proc_stat(int(entry.name))
    return found


def cores() -> tuple[int, int, int, int]:
    """The box's CPU time so far, in ticks, from /proc/stat: (all, idle, interrupts,
    stolen). Interrupts: the kernel's hard and soft interrupt handling, which no process
    is charged for (loopback's packets are delivered in it); stolen: time the machine's
    host ran something else while this machine had work."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    # idle and iowait; irq and softirq; steal
    return sum(ticks), ticks[3] + ticks[4], ticks[5] + ticks[6], ticks[7]


Snapshot = tuple[tuple[int, int, int, int], dict[int, tuple[str, int, int]]]


def cpu_snapshot() -> Snapshot:
    """The box's CPU time and every process's, now: for ``cpu_shares``."""
    return cores(), all_ticks()


def cpu_shares(
    before: Snapshot, after: Snapshot, roles: dict[str, set[int]], reported: dict[str, float] | None = None
) -> dict[str, float]:
    """The share of the box's CPU time between two ``cpu_snapshot``s each role's
    processes used; "rest": this run's other processes (its children's children too)
    still there at the second; "outside": every process not this run's; "interrupts" and
    "stolen" (``cores``); "idle".
    ``reported``: the CPU seconds of processes that told their own (they may have ended)."""
    (cores0, procs0), (cores1, procs1) = before, after
    ticks = max(1, cores1[0] - cores0[0])
    used = {pid: t - procs0.get(pid, (n, p, t))[2] for pid, (n, p, t) in procs1.items()}
    ours = {os.getpid()}
    while more := {pid for pid, (_, parent, _) in procs1.items() if parent in ours} - ours:
        ours |= more
    shares = {role: sum(used.get(pid, 0) for pid in pids) / ticks for role, pids in roles.items()}
    named = set().union(*roles.values())
    shares["rest"] = sum(t for pid, t in used.items() if pid in ours and pid not in named) / ticks
    shares["outside"] = sum(t for pid, t in used.items() if pid not in ours) / ticks
    shares["idle"] = (cores1[1] - cores0[1]) / ticks
    shares["interrupts"] = (cores1[2] - cores0[2]) / ticks
    shares["stolen"] = (cores1[3] - cores0[3]) / ticks
    shares.update({role: seconds * TICK / ticks for role, seconds in (reported or {}).items()})
    return shares


def redis_clients(*clients: redis.Redis) -> dict[str, int]:
    """The connections of the Redis servers, by client name ("total": all of them)."""
    counts: dict[str, int] = {"total": 0}
    for client in clients:
        for found in client.client_list():
            name = found.get("name") or "other"
            counts[name] = counts.get(name, 0) + 1
            counts["total"] += 1
    return counts


def histogram(text: str, name: str, since: str = "", labels: str = "") -> dict[str, float]:
    """A histogram of a /metrics reading (less the reading ``since``, when given): its
    count, mean and the bucket bounds of p50 and p99; ``labels`` picks a series."""
    inner = re.escape(labels + ",") if labels else ""
    series = rf"{{{re.escape(labels)}}}" if labels else ""

    def read(source: str) -> tuple[dict[float, float], float, float]:
        found = re.findall(rf'^{name}_bucket{{{inner}le="([0-9.e+inf-]+)"}} ([0-9.e+-]+)$', source, re.M)
        count = re.search(rf"^{name}_count{series} ([0-9.e+-]+)$", source, re.M)
        total = re.search(rf"^{name}_sum{series} ([0-9.e+-]+)$", source, re.M)
        return ({float(le): float(v) for le, v in found},
                float(count[1]) if count else 0.0, float(total[1]) if total else 0.0)  # fmt: skip

    now, earlier = read(text), read(since)
    count, total = now[1] - earlier[1], now[2] - earlier[2]
    buckets = sorted((le, v - earlier[0].get(le, 0.0)) for le, v in now[0].items())

    def upper(q: float) -> float:
        return next((le for le, cumulative in buckets if cumulative >= q * count), float("inf"))

    return {"count": count, "mean": total / count if count else 0.0, "p50_le": upper(0.5),
            "p99_le": upper(0.99)}  # fmt: skip


def metrics(url: str) -> str:
    return str(requests.get(url + "/metrics", timeout=30).text)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def latency(
    chosen: list[str], sent: dict[str, tuple[float, int]], seen: dict[str, list[tuple[float, str]]],
    path: str = "/v1/accounts/qrcode/{}/events", final: str = SUCCESS,
) -> dict[str, Any]:  # fmt: skip
    """From each send (accepted) to the ``final`` event on its stream: n, missing, p50,
    p99, max, and the values."""
    values = []
    for key in chosen:
        arrived = [t for t, status in seen.get(path.format(key), []) if status == final]
        if key in sent and sent[key][1] == 200 and arrived:
            values.append(arrived[0] - sent[key][0])
    return {"n": len(values), "missing": len(chosen) - len(values), "p50": percentile(values, 50),
            "p99": percentile(values, 99), "max": max(values, default=float("nan"))}  # fmt: skip


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def machine() -> str:
    cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                             check=False).stdout.split()[2].removeprefix("v=")  # fmt: skip
    return (f"{os.cpu_count()} cores ({cpu[1] if cpu else 'unknown CPU'}), {mem_kb / 2**20:.0f} GiB, "
            f"Python {platform.python_version()}, Redis {version}, {platform.system()} "
            f"{platform.release()}")  # fmt: skip
