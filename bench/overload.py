"""Capacity and overload: whole logins per second with 2 and 8 workers (p50/p99 of each
step), then 2x and 5x that rate offered for a minute to 2 workers, with a probe that
keeps logging in and watching its stream throughout and for 15 s after.

A login is what a browser and a phone do: create (with its PNG), the stream opened and
its first event read, SCAN, VERIFY (the browser's stream hears it), the redemption. A
step answered 503 is asked again after its Retry-After, with jitter, as the SDK does; an
arrival whose create is shed is a shed login (its user would come back later)."""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.queues import Queue
from typing import Any

from qrlogin.settings import BY_NAME

from bench import common
from bench.client import CTX, HOST, Backseat, Connection, _cpu_s, _run, run_parallel

Row = tuple[str, str, str, str]
STEPS = ("create", "stream", "scan", "verify", "redeem")
#: Load processes, each with its share of the connections and of the rate: as fast as
#: answered (capacity), and arriving at a rate (overload). A flood's arrivals are mostly
#: refused, and each load process answers its share of them on one event loop; four
#: rather than two halve that share, so that the times of the logins let in are the
#: service's more than the load's (docs/BENCHMARKS.md measures both).
LOADERS = 2
FLOOD_LOADERS = 4
#: The share of a flood's arrivals sent by the process that times the logins let in, in a
#: session of its own; the rest come from FLOOD_LOADERS processes in the back seat
#: (``bench.client.Backseat``), which stand for the flood's other users, on other machines.
TIMED_SHARE = 0.1
#: Keep-alive connection pairs (browser, phone) per load process: logins at a time, as
#: fast as answered (capacity); at most at a time, when arriving at a rate (overload).
PAIRS = 8
OPEN_PAIRS = 50
#: Admission control as deployed: its settings' defaults (or this run's environment).
ADMISSION = {
    name: os.environ.get(name, str(BY_NAME[name].default))
    for name in ("QRLOGIN_MAX_INFLIGHT", "QRLOGIN_MAX_LAG", "QRLOGIN_MAX_SLOWDOWN")
}
#: A keep-alive connection idle this long is not used again (gunicorn closes them) (s).
IDLE_S = 1.0
#: A login not done in this long counts as an error (s).
LOGIN_TIMEOUT_S = 30.0
#: How long the probe watches after the load stops (s).
AFTER_S = 15.0
#: How often the probe starts a login under the load, and alone before it (the unloaded
#: figure) for how long: often enough that its p99 is a p99 (200 logins after the
#: warm-up), not the slowest of fifty. One at a time either way; alone, a login every
#: 0.05 s took as long as one every 0.2 s (docs/BENCHMARKS.md).
PROBE_EVERY_S = 0.2
BASE_EVERY_S = 0.05
BASE_S = 12.0
BASE_WARM_S = 2.0
#: Calm loads, as shares of the 2-worker capacity: users arriving at random, well within
#: what the box finishes, whom admission control should not refuse.
CALM_SHARES = (0.1, 0.25)
#: A flood right after a calm load: the calm load's share, the flood's multiple of the
#: capacity, and the rounds of each (after a calm load, then on a fresh service).
AFTER_CALM_SHARE = 0.25
AFTER_CALM_FACTOR = 5
AFTER_CALM_ROUNDS = 2


@dataclass
class Kept(Connection):
    """A keep-alive connection that opens a new one after IDLE_S unused (gunicorn closes
    an idle one after its keep-alive time)."""

    last: float = 0.0

    async def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        if self.writer is not None and time.perf_counter() - self.last > IDLE_S:
            self.writer.close()
            self.writer = None
        try:
            return await super().request(method, path, body, headers)
        finally:
            self.last = time.perf_counter()


class Shed(Exception):
    """A create answered 503: the login did not start."""


async def ask(conn: Connection, method: str, path: str, body: Any, headers: dict[str, str],
              counts: dict[str, int]) -> Any:  # fmt: skip
    """One step, asked again after Retry-After (with jitter) while it is shed."""
    while True:
        answer = await conn.request(method, path, body, headers)
        if answer.status != 503:
            if answer.status >= 500:
                counts["5xx"] += 1
            return answer
        counts["retried"] += 1
        await asyncio.sleep(float(answer.headers.get("retry-after", "1")) * random.uniform(0.5, 1.5))


async def login(browser: Connection, phone: Connection, token: str, counts: dict[str, int],
                check_once: bool = False, persist: bool = False, took: dict[str, float] | None = None
                ) -> dict[str, float]:  # fmt: skip
    """One whole login; each step's seconds, and "total" and "delivery" (VERIFY sent to
    the browser's stream hearing it). ``Shed`` when the create is, unless ``persist``:
    then it is asked again, as the SDK does."""
    took = {"step": 0} if took is None else took
    start = t = time.perf_counter()
    retried_before = counts["retried"]
    body = {"platform": "bench"}
    created = await (ask(browser, "POST", "/v1/accounts/qrcode/", body, {}, counts) if persist
                     else browser.request("POST", "/v1/accounts/qrcode/", body))  # fmt: skip
    if created.status == 503:
        raise Shed
    took["create"], took["step"] = time.perf_counter() - t, 1
    qr_id = created.json()["data"]["id"]
    t = time.perf_counter()
    reader, writer = await asyncio.open_connection(HOST, browser.port)
    took["connect"] = time.perf_counter() - t
    writer.write(f"GET /v1/accounts/qrcode/{qr_id}/events HTTP/1.1\r\nHost: {HOST}\r\n"
                 f"Accept: text/event-stream\r\nCookie: qrlogin_bind={browser.cookie}\r\n\r\n".encode())  # fmt: skip
    await reader.readuntil(b"data:")
    took["stream"], took["step"] = time.perf_counter() - t, 2
    phone_headers = {"Authorization": f"Bearer {token}"}
    for step in ("SCAN", "VERIFY"):
        t = time.perf_counter()
        await ask(phone, "POST", "/v1/accounts/qrcode_fill", {"id": qr_id, "step": step}, phone_headers, counts)
        took[step.lower()] = time.perf_counter() - t
        took["step"] += 1
    await reader.readuntil(b"QRCODE_SUCCESS")
    took["delivery"] = time.perf_counter() - t
    writer.close()
    t = time.perf_counter()
    redeemed = (await ask(browser, "POST", "/v1/passport/guest", {"code": qr_id}, {}, counts)).json()["data"]
    took["redeem"] = time.perf_counter() - t
    took["total"] = time.perf_counter() - start
    took["retries"] = counts["retried"] - retried_before
    counts["redeemed"] += "token" in redeemed
    if check_once:  # a confirmed QR redeems exactly once
        again = (await ask(browser, "POST", "/v1/passport/guest", {"code": qr_id}, {}, counts)).json()["data"]
        counts["twice"] += "token" in again
    return took


def arrivals(rate: float, poisson: bool) -> Iterator[float]:
    """When users arrive, in seconds from the start: evenly, or at random (Poisson)."""
    due = 0.0
    while True:
        due += random.expovariate(rate) if poisson else 1 / rate
        yield due


def load(port: int, token: str, seconds: float, rate: float, pairs: int, results: Queue[Any],
         ready: Any = None, poisson: bool = False, own_session: bool = False, seat: Backseat | None = None
         ) -> None:  # fmt: skip
    """Logins for ``seconds``: as fast as answered on PAIRS connection pairs (``rate`` 0),
    or arriving at ``rate`` per second, evenly or (``poisson``) at random as independent
    users do (an arrival finding no free pair is counted unsent: the load process could
    not keep up). Reports every attempt as (start, outcome, timings) and the counts.
    ``ready``, ``own_session``, ``seat``: see ``_run``."""

    async def run() -> tuple[list[tuple[float, str, dict[str, float]]], dict[str, int]]:
        attempts: list[tuple[float, str, dict[str, float]]] = []
        counts = dict.fromkeys(("retried", "5xx", "redeemed", "twice", "unsent", "errors", "lag_samples",
                                "lag_over_50ms", "lag_max_ms"), 0)  # fmt: skip
        free: asyncio.Queue[tuple[Connection, Connection, float]] = asyncio.Queue()
        for _ in range(pairs):
            free.put_nowait((Kept(HOST, port), Kept(HOST, port), 0.0))
        begin = time.perf_counter()

        async def attempt(pair: tuple[Connection, Connection, float], n: int) -> None:
            started = time.perf_counter()
            browser, phone, _ = pair
            took: dict[str, float] = {"step": 0}
            try:
                await asyncio.wait_for(login(browser, phone, token, counts, check_once=n % 10 == 0, took=took),
                                       LOGIN_TIMEOUT_S)  # fmt: skip
                attempts.append((started - begin, "ok", took))
            except Shed:
                attempts.append((started - begin, "shed", {}))
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, KeyError) as error:
                counts["errors"] += 1
                kind = f"error {type(error).__name__} after step {took['step']:.0f}"
                counts[kind] = counts.get(kind, 0) + 1
                browser.close()
                phone.close()
                browser, phone = Kept(HOST, port), Kept(HOST, port)
            free.put_nowait((browser, phone, time.perf_counter()))

        async def tick() -> None:  # how late this process's own loop runs
            while time.perf_counter() < begin + seconds:
                before = time.perf_counter()
                await asyncio.sleep(0.01)
                counts["lag_samples"] += 1
                late_ms = int((time.perf_counter() - before - 0.01) * 1000)
                counts["lag_over_50ms"] += late_ms > 50
                counts["lag_max_ms"] = max(counts["lag_max_ms"], late_ms)

        ticker = asyncio.ensure_future(tick())
        tasks, n, due = set(), 0, arrivals(rate, poisson)
        while (now := time.perf_counter()) < begin + seconds:
            if rate:
                await asyncio.sleep(max(0.0, begin + next(due) - now))
                if free.empty():
                    counts["unsent"] += 1
                    n += 1
                    continue
            pair = await free.get()
            task = asyncio.ensure_future(attempt(pair, n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks, ticker)
        counts["cpu_ms"] = round(_cpu_s() * 1000)
        return attempts, counts

    results.put(_run(run(), ready, own_session=own_session, collect=False, seat=seat))


def loaded(port: int, token: str, seconds: float, rate: float, poisson: bool = False
           ) -> tuple[list[Any], dict[str, int]]:  # fmt: skip
    """``load`` from LOADERS processes at once (FLOOD_LOADERS at a ``rate``), merged."""
    loaders, pairs = (FLOOD_LOADERS, OPEN_PAIRS) if rate else (LOADERS, PAIRS)
    answers = run_parallel(load, [(port, token, seconds, rate / loaders, pairs)] * loaders,
                           ready=CTX.Barrier(loaders), poisson=poisson)  # fmt: skip
    return merged(answers)


def flooded(port: int, token: str, seconds: float, rate: float, seat: Backseat
            ) -> tuple[list[Any], list[Any], dict[str, int]]:  # fmt: skip
    """A flood at ``rate``: TIMED_SHARE of its arrivals from a process in a session of its
    own, which times the logins it gets let in as a user's own phone and browser would;
    the rest from FLOOD_LOADERS processes in ``seat``. The timed process's attempts, the
    others', and the counts of all."""
    ready = CTX.Barrier(FLOOD_LOADERS + 1)
    timing = run_parallel_async(load, (port, token, seconds, rate * TIMED_SHARE, OPEN_PAIRS), ready=ready,
                                own_session=True)  # fmt: skip
    share = rate * (1 - TIMED_SHARE) / FLOOD_LOADERS
    answers = run_parallel(load, [(port, token, seconds, share, OPEN_PAIRS)] * FLOOD_LOADERS, ready=ready, seat=seat)
    timed = timing()
    return timed[0], [a for found, _ in answers for a in found], summed([timed, *answers])


def merged(answers: list[Any]) -> tuple[list[Any], dict[str, int]]:
    """Load processes' reports as one: every attempt, in order, and the counts summed."""
    return sorted(a for found, _ in answers for a in found), summed(answers)


def summed(answers: list[Any]) -> dict[str, int]:
    """Load processes' counts, summed (their loops' worst lateness: the worst of all)."""
    counts = {k: sum(c.get(k, 0) for _, c in answers) for k in {k for _, c in answers for k in c}}
    counts["lag_max_ms"] = max(c["lag_max_ms"] for _, c in answers)
    return counts


def shed_share(attempts: list[Any], counts: dict[str, int]) -> float:
    """The share of arrivals whose create was shed (503); those the load processes could
    not send count as arrivals too."""
    return float(sum(a[1] == "shed" for a in attempts)) / max(1, len(attempts) + counts["unsent"])


def admitted_p99(attempts: list[Any]) -> float:
    """The p99 of the whole logins let in, from their create on."""
    return common.percentile([t["total"] for _, outcome, t in attempts if outcome == "ok"], 99)


def capacity_2(results: dict[str, Any]) -> float:
    """The 2-worker capacity this run measured (or was given), or 300 logins/s."""
    return float(results.get("capacity_2") or 300.0)


def step_table(attempts: list[Any]) -> str:
    oks = [t for _, outcome, t in attempts if outcome == "ok"]
    return ", ".join(f"{s} {common.ms(common.percentile([t[s] for t in oks], 50))}/"
                     f"{common.ms(common.percentile([t[s] for t in oks], 99))}" for s in STEPS)  # fmt: skip


def capacity(b: common.Bench, rows: list[Row], results: dict[str, Any]) -> None:
    """Whole logins per second with 2 and with 8 workers, as fast as answered: the box's
    capacity (admission control off), then 2 workers with admission control as deployed."""
    for workers, admission in ((2, {}), (8, {}), (2, ADMISSION)):
        service = b.start(workers=workers, **admission)
        attempts, counts = loaded(service.port, b.token, b.sizes.login_s, 0.0)
        service.stop()
        oks = [a for a in attempts if a[1] == "ok"]
        rate = len(oks) / b.sizes.login_s
        how = "with admission control as deployed" if admission else "admission control off"
        if not admission:
            results[f"capacity_{workers}"] = rate
        rows.append((f"Capacity, {workers} workers, {how}: whole logins per second ({LOADERS * PAIRS} at a "
                     "time); p50/p99 of each step", f"{rate:.0f}/s; {step_table(attempts)}; "
                     f"{counts['errors'] + counts['5xx']} failed", "", ""))  # fmt: skip
        print(rows[-1], flush=True)


def probe(port: int, token: str, seconds: float, results: Queue[Any], every: float = PROBE_EVERY_S) -> None:
    """One login ``every`` so often for ``seconds`` (a slot missed while a login took long
    is skipped), each step asked again while shed, as the SDK does: (start, total,
    delivery, retries); retries -2: it failed. In a session of its own (``bench.client.own_group``):
    the load processes share the benchmark's."""

    async def run() -> list[tuple[float, float, float, int]]:
        found = []
        begin = time.perf_counter()
        browser, phone = Kept(HOST, port), Kept(HOST, port)
        n = 0
        while time.perf_counter() < begin + seconds:
            await asyncio.sleep(max(0.0, begin + n * every - time.perf_counter()))
            # The next slot still ahead: a login that took long (refused, asked again
            # after Retry-After) is not made up for by a run of logins back to back,
            # which no user makes (and which the pace would refuse as a flood).
            n = max(n + 1, math.ceil((time.perf_counter() - begin) / every))
            counts = dict.fromkeys(("retried", "5xx", "redeemed", "twice"), 0)
            started = time.perf_counter()
            try:
                took = await asyncio.wait_for(login(browser, phone, token, counts, persist=True), LOGIN_TIMEOUT_S)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                found.append((started - begin, float("nan"), float("nan"), -2))
                browser, phone = Kept(HOST, port), Kept(HOST, port)
                continue
            found.append((started - begin, took["total"], took["delivery"], counts["retried"]))
        return found

    results.put(_run(run(), own_session=True, collect=False))


def calm(b: common.Bench, rows: list[Row], results: dict[str, Any]) -> None:
    """Logins arriving at random at a share of the 2-worker capacity, for half the overload
    runs' time each, on a service of 2 workers with admission control as deployed: the
    share refused (each such user waits a Retry-After) and the admitted logins' p99."""
    seconds = b.sizes.overload_s / 2
    rate_2 = capacity_2(results)
    results["calm"] = {}
    for share in CALM_SHARES:
        service = b.start(workers=2, **ADMISSION)
        attempts, counts = loaded(service.port, b.token, seconds, share * rate_2, poisson=True)
        service.stop()
        shed, p99 = shed_share(attempts, counts), admitted_p99(attempts)
        results["calm"][share] = {"shed_share": shed, "admitted_p99": p99, "arrivals": len(attempts)}
        rows.append((f"Calm: {share * rate_2:.0f} logins/s ({share:.0%} of capacity) arriving at random for "
                     f"{seconds:.0f} s, 2 workers, admission control as deployed",
                     f"refused {shed:.1%} of {len(attempts)} arrivals (503 + Retry-After), admitted logins p99 "
                     f"{common.ms(p99)}; {counts['5xx']} 5xx", "", ""))  # fmt: skip
        print(rows[-1], flush=True)


def first_second(attempts: list[Any]) -> tuple[int, float]:
    """The logins let in within a load's first second, and their p99."""
    early = [t["total"] for start, outcome, t in attempts if outcome == "ok" and start < 1.0]
    return len(early), common.percentile(early, 99)


def after_calm(b: common.Bench, rows: list[Row], results: dict[str, Any]) -> None:
    """A flood right after a calm load (random arrivals), against the same flood on a
    fresh service, alternating, each on a fresh service of 2 workers with admission
    control as deployed, for a sixth of the overload runs' time each: the logins let in
    within the flood's first second and their p99. A calm load raises the pace; a flood
    should meet a worker that was busy as it meets an idle one."""
    seconds = b.sizes.overload_s / 6
    rate_2 = capacity_2(results)
    found: dict[str, list[tuple[int, float]]] = {"after a calm load": [], "on a fresh service": []}
    for _ in range(AFTER_CALM_ROUNDS):
        for calm_first, runs in zip((True, False), found.values(), strict=True):
            service = b.start(workers=2, **ADMISSION)
            if calm_first:
                loaded(service.port, b.token, seconds, AFTER_CALM_SHARE * rate_2, poisson=True)
            attempts, _ = loaded(service.port, b.token, seconds, AFTER_CALM_FACTOR * rate_2)
            service.stop()
            runs.append(first_second(attempts))
    results["after_calm"] = found
    rows.append((f"A flood ({AFTER_CALM_FACTOR}x) for {seconds:.0f} s right after a calm load ({AFTER_CALM_SHARE:.0%} of "
                 f"capacity, at random, {seconds:.0f} s), and on a fresh service, {AFTER_CALM_ROUNDS} rounds: the flood's "
                 "first second",
                 "; ".join(f"{how}: let in {' and '.join(str(n) for n, _ in runs)}, p99 "
                           f"{' and '.join(common.ms(p99) for _, p99 in runs)}" for how, runs in found.items()),
                 "", ""))  # fmt: skip
    print(rows[-1], flush=True)


def overload(b: common.Bench, rows: list[Row], results: dict[str, Any]) -> None:
    """2x and 5x the 2-worker capacity offered for ``overload_s``, with the probe, after
    the unloaded figures: the p99 of lone logins."""
    rate_2 = capacity_2(results)
    service = b.start(workers=2, **ADMISSION)
    base = [p for p in run_parallel(probe, [(service.port, b.token, BASE_S)], every=BASE_EVERY_S)[0]
            if p[0] >= BASE_WARM_S]  # fmt: skip
    base_total = common.percentile([p[1] for p in base], 99)
    base_delivery = common.percentile([p[2] for p in base], 99)
    seat = Backseat()
    results["overload"] = {"base_total_p99": base_total, "base_delivery_p99": base_delivery, "runs": {},
                           "capacity_2": rate_2, "backseat": seat.available}  # fmt: skip
    try:
        for factor in (2, 5):
            flood(b, service, factor, seat, rows, results["overload"])
    finally:
        seat.close()
    service.stop()


def flood(b: common.Bench, service: Any, factor: int, seat: Backseat, rows: list[Row], found: dict[str, Any]
          ) -> None:  # fmt: skip
    """``factor`` times the 2-worker capacity offered for ``overload_s`` (``flooded``), with
    the probe throughout and for AFTER_S after."""
    seconds, base_total, base_delivery = b.sizes.overload_s, found["base_total_p99"], found["base_delivery_p99"]
    rate = factor * found["capacity_2"]
    pids = service.workers()
    rss: list[tuple[float, int, float]] = []
    stop = threading.Event()
    began = time.perf_counter()

    def sample() -> None:
        while not stop.wait(1.0):
            text = common.metrics(service.url)
            lag = re.search(r"^qrlogin_event_loop_lag_seconds ([0-9.e+-]+)$", text, re.M)
            rss.append((time.perf_counter() - began, common.rss_kb(*pids), float(lag[1]) if lag else 0.0))

    sampler = threading.Thread(target=sample, daemon=True)
    before = common.metrics(service.url)
    sampler.start()
    probing = run_parallel_async(probe, (service.port, b.token, seconds + AFTER_S))
    before_cpu = common.cpu_snapshot()
    timed, rest, counts = flooded(service.port, b.token, seconds, rate, seat)
    cpu = common.cpu_shares(before_cpu, common.cpu_snapshot(), {"workers": set(pids), "redis": b.redis_pids},
                            {"load": counts["cpu_ms"] / 1000})  # fmt: skip
    probed = probing()
    stop.set()
    after = common.metrics(service.url)
    run = summary(timed, rest, counts, probed, rss, seconds, base_total, base_delivery)
    run["cpu"] = cpu
    run["server_p99_le"] = common.histogram(after, "qrlogin_request_seconds", before)["p99_le"]
    run["delivery_server_p99_le"] = common.histogram(after, "qrlogin_event_delivery_seconds", before)["p99_le"]
    found["runs"][factor] = run
    where = "in the back seat" if seat.available else "in the benchmark's session (no cpu cgroup here)"
    rows.append((f"Overload {factor}x ({rate:.0f} logins/s offered for {seconds} s, 2 workers)",
                 f"goodput {run['goodput']:.0f}/s, shed {run['shed_share']:.0%} of arrivals (503 + Retry-After), "
                 f"admitted logins p99 {common.ms(run['admitted_p99'])} over {run['timed_logins']} timed by a process "
                 f"of their own ({TIMED_SHARE:.0%} of the arrivals; {run['step_retries']} of their steps asked again; "
                 f"p50/p99 of each step: {step_table(timed)}), {common.ms(run['flood_p99'])} as the rest of the "
                 f"flood's processes read them ({where}); server's answers p99 ≤ {common.ms(run['server_p99_le'])}, "
                 f"its event loop's lag up to {run['lag_max_ms']:.0f} ms; probe p99 {common.ms(run['probe_p99'])} "
                 f"(unloaded {common.ms(base_total)}), delivery p99 {common.ms(run['delivery_p99'])} for the timed "
                 f"logins (unloaded {common.ms(base_delivery)}; the probe's {common.ms(run['probe_delivery_p99'])}; "
                 f"the server's own ≤ {common.ms(run['delivery_server_p99_le'])}); "
                 f"{run['5xx']} 5xx; redeemed once: "
                 f"{run['redeemed']}/{run['confirmed']}, twice: {run['twice']}; workers' RSS "
                 f"{run['rss_first_mb']:.0f} → {run['rss_max_mb']:.0f} MB; back to normal "
                 f"{run['recovered_s']:.1f} s after. The load processes: {run['unsent']} arrivals they could not "
                 f"send, their own loops over 50 ms late {run['loader_late_share']:.0%} of the time (up to "
                 f"{run['loader_lag_max_ms']} ms). The cores meanwhile: workers {cpu['workers']:.0%}, Redis "
                 f"{cpu['redis']:.0%}, the load processes {cpu['load']:.0%}, the probe and the run {cpu['rest']:.0%}, "
                 f"other processes {cpu['outside']:.0%}, interrupts {cpu['interrupts']:.0%}, stolen by the host "
                 f"{cpu['stolen']:.0%}, idle {cpu['idle']:.0%}",
                 "", ""))  # fmt: skip
    print(rows[-1], flush=True)


def run_parallel_async(target: Any, args: tuple[Any, ...], **kw: Any) -> Any:
    """Start ``target`` in its own process now; the returned call waits for its report."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(run_parallel(target, [args], **kw)[0]), daemon=True)
    thread.start()

    def wait() -> Any:
        thread.join()
        return box[0]

    return wait


def summary(timed: list[Any], rest: list[Any], counts: dict[str, int], probed: list[Any],
            rss: list[tuple[float, int, float]], seconds: float, base_total: float, base_delivery: float
            ) -> dict[str, Any]:  # fmt: skip
    """One overload run's figures and per-second series (for the plot): the logins' times
    from ``timed`` (the timed process's attempts), the rest from every attempt (``rest``:
    the other load processes')."""
    attempts = timed + rest
    oks = [a for a in attempts if a[1] == "ok"]
    during = [p for p in probed if p[0] < seconds and p[3] >= 0]
    bound = 2 * base_total
    late = [p[0] for p in probed if p[0] >= seconds and not p[1] <= bound]
    per_second: defaultdict[int, dict[str, Any]] = defaultdict(lambda: {"ok": 0, "shed": 0, "totals": []})
    for start, outcome, _ in attempts:
        per_second[int(start)][outcome] += 1
    for start, outcome, took in timed:
        if outcome == "ok":
            per_second[int(start)]["totals"].append(took["total"])
    series = [{"t": s, "ok": v["ok"], "shed": v["shed"], "p99": common.percentile(v["totals"], 99)}
              for s, v in sorted(per_second.items())]  # fmt: skip
    return {
        "goodput": len(oks) / seconds,
        "shed_share": shed_share(attempts, counts),
        "admitted_p99": admitted_p99(timed),
        "timed_logins": sum(a[1] == "ok" for a in timed),
        "flood_p99": admitted_p99(rest),
        "probe_p99": common.percentile([p[1] for p in during], 99),
        "delivery_p99": common.percentile([t["delivery"] for _, outcome, t in timed if outcome == "ok"], 99),
        "probe_delivery_p99": common.percentile([p[2] for p in during], 99),
        "5xx": counts["5xx"], "errors": counts["errors"], "unsent": counts["unsent"],
        "loader_lag_max_ms": counts["lag_max_ms"],
        "loader_late_share": counts["lag_over_50ms"] / max(1, counts["lag_samples"]),
        "confirmed": len(oks), "redeemed": counts["redeemed"], "twice": counts["twice"],
        "rss_first_mb": rss[0][1] / 1024 if rss else float("nan"),
        "rss_max_mb": max((r for _, r, _ in rss), default=0) / 1024,
        "lag_max_ms": max((lag for _, _, lag in rss), default=0.0) * 1000,
        "step_retries": sum(int(t["retries"]) for _, outcome, t in timed if outcome == "ok"),
        "recovered_s": max(late, default=seconds) - seconds,
        "series": series, "probe": probed, "rss": rss, "seconds": seconds,
        "base_total": base_total, "base_delivery": base_delivery,
    }  # fmt: skip


def plot(folder: Any, overload_results: dict[str, Any], name: str) -> None:
    """Goodput, shed requests and latency over time for each overload run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = overload_results["runs"]
    fig, axes = plt.subplots(2, len(runs), figsize=(6 * len(runs), 6.5), squeeze=False, sharex=True)
    for column, (factor, run) in enumerate(sorted(runs.items())):
        top, bottom = axes[0][column], axes[1][column]
        ts = [s["t"] for s in run["series"]]
        top.plot(ts, [s["ok"] for s in run["series"]], label="goodput (logins/s)")
        top.plot(ts, [s["shed"] for s in run["series"]], label="shed creates (503/s)")
        top.axvline(run["seconds"], color="grey", linestyle="--", linewidth=0.8)
        top.set(title=f"{factor}x capacity offered", ylabel="per second", ylim=(0, None))
        top.legend(loc="upper right")
        bottom.plot(ts, [s["p99"] * 1000 for s in run["series"]], label="admitted logins p99 (the timed process)")
        probe_t = [p[0] for p in run["probe"] if p[3] >= 0]
        bottom.plot(probe_t, [p[1] * 1000 for p in run["probe"] if p[3] >= 0], ".", markersize=3,
                    label="probe login")  # fmt: skip
        bottom.plot(probe_t, [p[2] * 1000 for p in run["probe"] if p[3] >= 0], ".", markersize=3,
                    label="probe: confirm to browser")  # fmt: skip
        bottom.plot([r[0] for r in run["rss"]], [max(r[2] * 1000, 0.1) for r in run["rss"]],
                    label="event loop lag (worst worker)")  # fmt: skip
        bottom.axhline(2 * run["base_total"] * 1000, color="red", linestyle=":", linewidth=0.8,
                       label="2x unloaded login p99")  # fmt: skip
        bottom.axvline(run["seconds"], color="grey", linestyle="--", linewidth=0.8)
        bottom.set(xlabel="seconds (load stops at the dashed line)", ylabel="ms", yscale="log")
        bottom.legend(loc="upper right", fontsize="small")
    fig.suptitle("Overload: 2 workers, 2-core box, loopback")
    fig.tight_layout()
    fig.savefig(folder / name, dpi=100)
