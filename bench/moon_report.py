"""The moonshot's section of docs/BENCHMARKS.md and its plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.report import machine
from qrlogin.settings import DEFAULTS

START = "<!-- moonshot: written by `./dev bench --moonshot` -->"
END = "<!-- moonshot end -->"
PLOT = "benchmarks-moonshot.png"


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def _clear(lat: dict[str, Any]) -> str:
    """The confirmations clear of the busiest process outside the run, as words."""
    return (
        f"the {lat.get('clear_n', 0):,} clear of the busiest process outside the run "
        f"({lat.get('watched') or 'none'}): p50 {_ms(lat.get('clear_p50', math.nan))}, "
        f"p99 {_ms(lat.get('clear_p99', math.nan))}"
    )


def _kb(value: float) -> str:
    return f"{value:.1f} KB"


def section(r: dict[str, Any], command: str, took_s: float) -> str:
    side, climb = r["side"], r["climb"]
    steps, restart, cpu = climb["steps"], climb["restart"], side["cpu"]
    top = steps[-1]
    # Redis's connections by name: with a few browsers waiting (runs since it was added),
    # at the first step, at the top.
    few = climb.get("few")
    counted = [c for c in (few, steps[0], top) if c]
    lat, held = top["latency"], top["latency_held"]
    passed = {
        True: "met",
        False: "missed",
    }
    rows = [
        (f"{top['target']:,} SSE streams at once, 0 errors",
         f"{top['open']:,} open, {top['errors']} errors, {top['quiet']} quiet for 40 s",
         passed[top["open"] >= top["target"] and top["errors"] == 0 and top["quiet"] == 0]),
        ("≤ 8 KB RSS per waiting browser, all workers",
         _kb(top["kb_per"]), passed[top["kb_per"] <= 8]),
        ("Redis: one subscriber per process plus a bounded pool",
         "; ".join(
             f"at {c['target']:,}: {c['subscribers_per_process']:.0f} subscriber and "
             f"{c['pool_per_process']:.1f} pooled per process" for c in counted
         ),
         passed[all(
             c["subscribers_per_process"] == 1 and c["pool_per_process"] <= int(DEFAULTS["redis_max_connections"] or 0)
             for c in counted
         )]),
        (f"Confirm to browser at 300/s with {top['target']:,} waiting: p50 ≤ 5 ms, p99 ≤ 25 ms",
         f"p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])}, max {_ms(lat['max'])}, "
         f"{lat['missing']} of {lat['n'] + lat['missing']} missing, {lat['rate']:.0f}/s sent; "
         f"read by a load process that holds others too: p50 {_ms(held['p50'])}, p99 "
         f"{_ms(held['p99'])}, {held['missing']} missing; {_clear(lat)}",
         passed[lat["p50"] <= 0.005 and lat["p99"] <= 0.025 and lat["missing"] == 0]),
        ("SIGTERM to one worker: exits ≤ 5 s, its browsers back ≤ 30 s",
         f"{restart['held']:,} streams; exited in {restart['exit_s']:.2f} s, all back in "
         f"{restart['back_s']:.2f} s ({restart['reconnects']:,} reconnects)",
         passed[restart["exit_s"] <= 5 and restart["back_s"] <= 30]),
        ("QR creation ≤ 3 × /healthz, worker CPU, same worker",
         f"{cpu['create_ms']:.2f} ms against {cpu['healthz_ms']:.2f} ms: {cpu['ratio']:.2f} ×",
         passed[cpu["ratio"] <= 3]),
    ]  # fmt: skip
    lines = [
        START,
        "## Moonshot: 100,000 waiting browsers",
        "",
        f"Command: `{command}` ({took_s / 60:.0f} minutes). Machine: {machine()}. "
        f"The service ran as the Procfile runs it, on {r['workers']} workers; the load came "
        f"from 8 processes on 8 loopback addresses (127.0.0.2 to 127.0.0.9). RSS per stream "
        "is (RSS of all workers with the streams − RSS before) / streams open.",
        "",
        "| Target | Measured | |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "### The climb",
        "",
        "| Waiting | Opened in | RSS per stream | Quiet 40 s | Confirm to browser p50 / p99 / max"
        " (300/s) | Missing | The same, read by a load process: p50 / p99 | Cores busy |"
        " Of which outside the run (busiest) | Clear of the busiest: n, p50 / p99 |"
        " Server side p50 / p99 at most | Full GCs in those 5 s: count, mean,"
        " p99 at most | Subscribers / pooled per process |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        lat, held = s["latency"], s["latency_held"]
        lines.append(
            f"| {s['open']:,} | {s['open_s']:.0f} s | {_kb(s['kb_per'])} | {s['quiet']} | "
            f"{_ms(lat['p50'])} / {_ms(lat['p99'])} / {_ms(lat['max'])} | {lat['missing']} | "
            f"{_ms(held['p50'])} / {_ms(held['p99'])} | {lat['busy']:.0%} | "
            f"{lat.get('outside', math.nan):.1%} ({lat.get('outside_busiest', '')}) | "
            f"{lat.get('clear_n', 0):,}, {_ms(lat.get('clear_p50', math.nan))} / "
            f"{_ms(lat.get('clear_p99', math.nan))} | "
            f"{_ms(lat.get('server_p50_le', math.nan))} / {_ms(lat.get('server_p99_le', math.nan))} | "
            f"{lat.get('gc2_count', math.nan):.0f}, {_ms(lat.get('gc2_mean', math.nan))}, "
            f"{_ms(lat.get('gc2_p99_le', math.nan))} | "
            f"{s['subscribers_per_process']:.0f} / {s['pool_per_process']:.1f} |"
        )
    if all("roles" in s["latency"] for s in steps):
        lines += [
            "",
            "Where the two cores' time went while the probe's QRs were confirmed (share of "
            "both cores; the sender is the process that sends the confirmations, counted "
            "from its first):",
            "",
            "| Waiting | Workers | Load processes | Probe | Sender | Redis | Outside the run |"
            " Idle |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in steps:
            lat = s["latency"]
            roles = lat["roles"]
            lines.append(
                f"| {s['open']:,} | {roles['workers']:.0%} | {roles['load']:.0%} | "
                f"{roles['probe']:.0%} | {roles['sender']:.0%} | {roles['redis']:.0%} | "
                f"{lat['outside']:.0%} | {1 - lat['busy']:.0%} |"
            )
    lines += [
        "",
        f"![memory per stream and latency against waiting streams]({PLOT})",
        "",
        f"### Side by side: {side['parked']['opened']:,} idle streams, one worker each",
        "",
        "| Server | Opened | RSS per stream |",
        "|---|---|---|",
        f"| flask-sse's stock stream (gevent worker) | {side['flask-sse']['opened']:,} | "
        f"{_kb(side['flask-sse']['rss_kb_per'])} |",
        f"| qrlogin, a greenlet per stream (gunicorn's gevent worker) | "
        f"{side['greenlet']['opened']:,} | {_kb(side['greenlet']['kb_per'])} |",
        f"| qrlogin, parked streams (the Procfile's worker) | {side['parked']['opened']:,} | "
        f"{_kb(side['parked']['kb_per'])} |",
    ]
    nchan = side["nchan"]
    if "skipped" in nchan:
        lines.append(f"| Nchan | not measured: {nchan['skipped']} | |")
    else:
        lines.append(
            f"| Nchan (nginx's push module, in C; its worker) | {nchan['opened']:,} | "
            f"{_kb(nchan['kb_per'])} |"
        )
    lines += [
        "",
        "How it was measured:",
        "",
        "- **The climb**: QRs are created through the API first (QR lifetime 1,800 s for "
        "the run, rate limits off). "
        + (
            f"Before the first step, {few['target']:,} streams are opened and held "
            f"{few.get('hold_s', 2)} s, and Redis's clients counted by name. "
            if few
            else ""
        )
        + "At each step 8 more load processes, one per source "
        "address, open the new streams (raw asyncio connections on uvloop's event loop, "
        "100 opening at a time each; each stream's bytes are read as they arrive, and a process's objects are "
        "frozen from the garbage collector once its streams are open), and every stream "
        "is kept open. After a 20 s hold: RSS of all workers, Redis's clients by "
        "name, and the streams that heard nothing, not even a heartbeat (every 15 s), for "
        '40 s ("quiet").',
        "- **Latency**: a probe, one more load process (on 127.0.0.10), opens 1,500 of "
        "each step's streams and holds nothing else, as a browser reads only its own "
        "stream. Their QRs are scanned (1,000/s), then confirmed at 300/s for 5 s through "
        "`/v1/accounts/qrcode_fill` by a sender on 40 keep-alive connections, opened (a "
        "`/healthz` each) half a second before its first confirmation, as a phone's are "
        "by the time it confirms; latency is the arrival of `QRCODE_SUCCESS` on the "
        "stream minus the confirmation's send time, one machine's clock. Then the same for "
        "1,500 streams of the load processes, each of which also reads thousands of other "
        'streams\' heartbeats on the same two cores ("read by a load process"). The '
        'confirmed streams end, so each next step opens that many more. "Cores busy": '
        "the share of both cores in use from the probe's first confirmation to its last "
        'answer (/proc/stat); "outside the '
        'run": the part of it used by processes that are neither this benchmark nor its '
        "children (the service, Redis, the load processes), kernel threads included, with "
        'the busiest of them (/proc/<pid>/stat). "Clear of the busiest": the busiest '
        "process outside the run while the QRs were scanned is sampled every 10 ms while "
        "they are confirmed, and a confirmation is clear when it used under 20 ms of CPU "
        "from 50 ms before the send to the arrival. "
        '"Server side" is '
        "`qrlogin_event_delivery_seconds` over those 5 s (transition in Redis to the frame "
        "written), as bucket bounds; the full (generation 2) garbage collections of all "
        "workers in the same 5 s come from `qrlogin_gc_pause_seconds`.",
        "- **Restart**: SIGTERM to one worker at the top. Exit: until the process is gone. "
        "Back: until the load processes have reconnected as many streams as it held (its "
        "established connections, read from /proc) and as many streams are open as before.",
        "- **QR creation against /healthz**: one worker, 5 rounds of 2 s of creating (16 "
        "keep-alive connections) then 2 s of `/healthz` (16 keep-alive connections); the "
        "worker's user + system CPU over the requests answered, summed over the rounds.",
        "- **Side by side**: each server alone, one worker (Nchan: one nginx worker); RSS "
        "growth of that process over the streams, 10 s after they opened.",
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


def place(text: str, found: str) -> str:
    """``text`` with its moonshot section replaced by ``found`` (or ``found`` appended)."""
    if START in text and END in text:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1].lstrip("\n")
        return before + found + ("\n" + after if after else "")
    return text.rstrip("\n") + "\n\n" + found


def kept(old: str) -> str:
    """The moonshot section of an existing report, with what follows it (the notes on
    where it stands), to carry into a rewritten one."""
    if START in old and END in old:
        return START + old.split(START, 1)[1].rstrip("\n") + "\n"
    return ""


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = r["climb"]["steps"]
    waiting = [s["open"] / 1000 for s in steps]
    fig, (mem, lat) = plt.subplots(1, 2, figsize=(10, 4))
    mem.plot(waiting, [s["kb_per"] for s in steps], marker="o", label="parked streams")
    mem.axhline(8, color="grey", linestyle="--", linewidth=0.8, label="target 8 KB")
    mem.set_xlabel("waiting streams (thousands)")
    mem.set_ylabel("RSS per stream (KB)")
    mem.set_ylim(bottom=0)
    mem.legend()
    lat.plot(waiting, [s["latency"]["p50"] * 1000 for s in steps], marker="o", label="p50")
    lat.plot(waiting, [s["latency"]["p99"] * 1000 for s in steps], marker="o", label="p99")
    lat.plot(
        waiting, [s["latency_held"]["p99"] * 1000 for s in steps], marker="o", linestyle="--",
        label="p99, read by a load process",
    )  # fmt: skip
    lat.axhline(25, color="grey", linestyle="--", linewidth=0.8, label="p99 target 25 ms")
    lat.axhline(5, color="grey", linestyle=":", linewidth=0.8, label="p50 target 5 ms")
    lat.set_xlabel("waiting streams (thousands)")
    lat.set_ylabel("confirm to browser at 300/s (ms)")
    lat.set_ylim(bottom=0)
    lat.legend()
    fig.suptitle(f"{r['workers']} workers, 2-core box, loopback")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
