"""The report: the result tables of docs/BENCHMARKS.md, written between their markers
(the method around them is the document's own text), and the plots."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import machine, ms

Row = tuple[str, ...]


def table(header: Row, rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row[: len(header)]) + " |" for row in rows])


def standard(tables: dict[str, list[Row]], command: str, took_s: float, sizes: Any) -> str:
    return (f"Measured by `{command}` on {time.strftime('%Y-%m-%d', time.gmtime())}, in {took_s:.0f} s. "
            f"Machine: {machine()}. Sizes: {sizes}.\n\n"
            + table(("figure", "qrlogin", "alternative (same run)", "target"), tables["main"])
            + "\n\nScale-out, in the same run:\n\n"
            + table(("figure", "1 Redis", "Redis Cluster, 3 masters + 3 replicas"), tables["cluster"])
            + "\n")  # fmt: skip


def _kb(value: float) -> str:
    return f"{value:.1f} KB"


def _waited(latency: dict[str, Any]) -> str:
    """The workers' seconds waiting for a core per second on one, over a latency run."""
    return f"{latency['workers_waited_s'] / max(1e-9, latency['workers_ran_s']):.2f} s"


def moonshot(r: dict[str, Any], command: str, took_s: float) -> str:
    side, steps, restart, cpu = r["side"], r["steps"], r["restart"], r["side"]["cpu"]
    top = steps[-1]
    lat, held, alone = top["latency"], top["latency_held"], top.get("latency_paused")
    counted = [r["few"], steps[0], top]
    met = {True: "met", False: "missed"}
    targets = [
        (f"{top['target']:,} SSE streams at once, 0 errors", f"{top['open']:,} open, {top['errors']} errors, "
         f"{top['quiet']} quiet for 40 s", met[top["open"] >= top["target"] and not top["errors"] and not top["quiet"]]),
        ("≤ 8 KB RSS per waiting browser, all workers", _kb(top["kb_per"]), met[top["kb_per"] <= 8]),
        ("Redis: one subscriber per process plus a bounded pool", "; ".join(
            f"at {c['target']:,}: {c['subscribers']:.0f} subscriber and {c['pooled']:.1f} pooled per process"
            for c in counted), met[all(c["subscribers"] == 1 and c["pooled"] <= 20 for c in counted)]),
        (f"Confirm to browser at 300/s with {top['target']:,} waiting: p50 ≤ 5 ms, p99 ≤ 25 ms",
         f"p50 {ms(lat['p50'])}, p99 {ms(lat['p99'])}, max {ms(lat['max'])}, {lat['missing']} of "
         f"{lat['n'] + lat['missing']} missing, {lat['rate']:.0f}/s sent; read by a load process that holds "
         f"others too: p50 {ms(held['p50'])}, p99 {ms(held['p99'])}",
         met[lat["p50"] <= 0.005 and lat["p99"] <= 0.025 and not lat["missing"]]),
        *([] if alone is None else [(
            "The same with the load processes paused (SIGSTOP; their streams stay open): the server's own tail, "
            "p99 ≤ 25 ms, the server's share ≤ 10 ms",
            f"p50 {ms(alone['p50'])}, p99 {ms(alone['p99'])}, max {ms(alone['max'])}, {alone['missing']} missing; "
            f"server side p99 ≤ {ms(alone['server']['p99_le'])}; the workers waited "
            f"{_waited(alone)} for a core per second on one (load running: {_waited(lat)})",
            met[alone["p99"] <= 0.025 and alone["server"]["p99_le"] <= 0.01 and not alone["missing"]])]),
        ("SIGTERM to one worker: exits ≤ 5 s, its browsers back ≤ 30 s", f"{restart['held']:,} streams; "
         f"exited in {restart['exit_s']:.2f} s, all back in {restart['back_s']:.2f} s",
         met[restart["exit_s"] <= 5 and restart["back_s"] <= 30]),
        ("QR creation ≤ 3 × /healthz, worker CPU, same worker", f"{cpu['create_ms']:.2f} ms against "
         f"{cpu['healthz_ms']:.2f} ms: {cpu['ratio']:.2f} ×", met[cpu["ratio"] <= 3]),
    ]  # fmt: skip
    climb = [
        (f"{s['open']:,}", f"{s['open_s']:.0f} s", _kb(s["kb_per"]), str(s["quiet"]),
         f"{ms(s['latency']['p50'])} / {ms(s['latency']['p99'])} / {ms(s['latency']['max'])}",
         str(s["latency"]["missing"]), f"{ms(s['latency_held']['p50'])} / {ms(s['latency_held']['p99'])}",
         f"{ms(s['latency']['server']['p50_le'])} / {ms(s['latency']['server']['p99_le'])}",
         f"{s['latency']['gc2']['count']:.0f}, {ms(s['latency']['gc2']['mean'])}",
         f"{s['subscribers']:.0f} / {s['pooled']:.1f}")
        for s in steps
    ]  # fmt: skip
    roles = [(f"{s['open']:,}", *(f"{s['latency']['roles'][k]:.0%}" for k in
              ("workers", "load", "probe", "sender", "redis", "outside", "interrupts", "stolen", "idle")))
             for s in steps]  # fmt: skip
    nchan = side["nchan"]
    designs = [
        ("flask-sse's stock stream (gevent worker)", f"{side['flask-sse']['opened']:,}", _kb(side["flask-sse"]["kb_per"])),
        ("qrlogin, a greenlet per stream (gunicorn's gevent worker)", f"{side['greenlet']['opened']:,}",
         _kb(side["greenlet"]["kb_per"])),
        ("qrlogin, parked streams (the Procfile's worker)", f"{side['parked']['opened']:,}", _kb(side["parked"]["kb_per"])),
        ("Nchan (nginx's push module, in C; its worker)", *(("not measured", nchan["skipped"]) if "skipped" in nchan
         else (f"{nchan['opened']:,}", _kb(nchan["kb_per"])))),
    ]  # fmt: skip
    return "\n\n".join([
        f"Measured by `{command}` on {time.strftime('%Y-%m-%d', time.gmtime())} ({took_s / 60:.0f} minutes), "
        f"{r['workers']} workers. Machine: {machine()}.",
        "The load processes that hold the streams ran " + (
            "in a cpu cgroup of the least weight (`Backseat`, `bench/client.py`): on what the service and the "
            "instruments left of the cores" if r.get("backseat") else
            "in the benchmark's session (the cpu cgroup could not be written): one scheduling group against the "
            "service's") + "; the probe and the sender each in a session of their own.",
        table(("Target", "Measured", ""), targets),
        table(("Waiting", "Opened in", "RSS per stream", "Quiet 40 s", "Confirm to browser p50 / p99 / max",
               "Missing", "Read by a load process: p50 / p99", "Server side p50 / p99 at most",
               "Full GCs: count, mean", "Subscribers / pooled per process"), climb),
        "Where the two cores' time went while the probe's QRs were confirmed:",
        table(("Waiting", "Workers", "Load processes", "Probe", "Sender", "Redis", "Outside the run",
               "Interrupts", "Stolen by the host", "Idle"), roles),
        f"![memory per stream and latency against waiting streams]({MOON_PLOT})",
        f"Side by side, {side['parked']['opened']:,} idle streams, one worker each:",
        table(("Server", "Opened", "RSS per stream"), designs),
    ]) + "\n"  # fmt: skip


MOON_PLOT = "benchmarks-moonshot.png"


def place(path: Path, name: str, text: str) -> None:
    """Put ``text`` between the markers of section ``name`` in the report at ``path``."""
    start, end = f"<!-- results: {name} -->", f"<!-- results end: {name} -->"
    old = path.read_text()
    if start not in old or end not in old:
        raise SystemExit(f"{path} has no {start} ... {end} markers: --no-write prints only")
    before, rest = old.split(start, 1)
    path.write_text(before + start + "\n" + text + end + rest.split(end, 1)[1])


def plot(folder: Path, moon: dict[str, Any]) -> None:
    """The moonshot's plot: memory per stream and latency against waiting streams."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = moon["steps"]
    waiting = [s["open"] / 1000 for s in steps]
    fig, (mem, lat) = plt.subplots(1, 2, figsize=(10, 4))
    mem.plot(waiting, [s["kb_per"] for s in steps], marker="o", label="parked streams")
    mem.axhline(8, color="grey", linestyle="--", linewidth=0.8, label="target 8 KB")
    mem.set(xlabel="waiting streams (thousands)", ylabel="RSS per stream (KB)", ylim=(0, None))
    mem.legend()
    for key, q, style in (("latency", "p50", "-"), ("latency", "p99", "-"), ("latency_held", "p99", "--")):
        values = [s[key][q] * 1000 for s in steps]
        lat.plot(waiting, [v if not math.isnan(v) else 0 for v in values], marker="o", linestyle=style,
                 label=q + (", read by a load process" if key == "latency_held" else ""))  # fmt: skip
    lat.axhline(25, color="grey", linestyle="--", linewidth=0.8, label="p99 target 25 ms")
    lat.set(xlabel="waiting streams (thousands)", ylabel="confirm to browser at 300/s (ms)", ylim=(0, None))
    lat.legend()
    fig.suptitle(f"{moon['workers']} workers, 2-core box, loopback")
    fig.tight_layout()
    fig.savefig(folder / MOON_PLOT, dpi=110)
