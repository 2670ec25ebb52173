"""``python -m bench [--quick] [--moonshot] [--only-cluster] [--no-write]``: the service
measured against its alternatives (``bench.standard``), or 100,000 waiting browsers
(``bench.moonshot``). Starts its own Redis and services, drives them from load
processes on loopback, prints its tables and writes them into docs/BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from servers.process import ROOT
from servers.redis_server import RedisServer

from bench import overload, report
from bench.common import FULL, QUICK, Bench
from bench.moonshot import MOON, MOON_QUICK, run_moonshot
from bench.standard import MEASUREMENTS, cluster

#: The overload run's plot, beside the report.
OVERLOAD_PLOT = "benchmarks-overload.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: about a minute (--moonshot: 2)")
    parser.add_argument("--moonshot", action="store_true", help="100,000 waiting browsers on 8 workers")
    parser.add_argument("--only-cluster", action="store_true", help="only the Redis Cluster rows")
    parser.add_argument(
        "--only", default="", help="these measurements only, a comma list (capacity,overload); implies --no-write"
    )
    parser.add_argument(
        "--capacity", type=float, default=0.0,
        help="the 2-worker capacity (logins/s) the overload runs take, instead of measuring it: side-by-side runs of "
             "--only overload",
    )  # fmt: skip
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    options = parser.parse_args()
    began = time.time()
    logs = Path(tempfile.mkdtemp(prefix="qrlogin-bench-"))
    print(f"server logs in {logs}", flush=True)
    command = "./dev bench" + (" --moonshot" if options.moonshot else "") + (" --quick" if options.quick else "")
    # Redis with its default client cap, as the flask-sse comparison depends on it.
    with RedisServer(logs, maxclients=10000).start() as server:
        moon = (MOON_QUICK if options.quick else MOON) if options.moonshot else None
        bench = Bench(QUICK if options.quick else FULL, server, logs, moon=moon)
        tables: dict[str, list[Any]] = {"main": [], "cluster": []}
        results: dict[str, Any] = {"capacity_2": options.capacity} if options.capacity else {}
        try:
            if options.moonshot:
                results = run_moonshot(bench)
            chosen = set(filter(None, options.only.split(",")))
            for measure, name in (() if options.moonshot else ((cluster, "cluster"),) if options.only_cluster
                                  else MEASUREMENTS):  # fmt: skip
                if not chosen or measure.__name__ in chosen:
                    measure(bench, tables[name], results)
        finally:
            bench.stop()
    (logs / "results.json").write_text(json.dumps({**results, "tables": tables}, indent=1, default=str))
    took = time.time() - began
    if options.moonshot:
        text = report.moonshot(results, command, took)
    else:
        text = report.standard(tables, command, took, bench.sizes)
    print(text)
    if not options.no_write and not options.only_cluster and not options.only:
        report.place(options.out, "moonshot" if options.moonshot else "standard", text)
        if options.moonshot:
            report.plot(options.out.parent, results)
        elif "overload" in results:
            overload.plot(options.out.parent, results["overload"], OVERLOAD_PLOT)
        print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
