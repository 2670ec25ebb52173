"""``python -m bench [--quick]``: the push design measured against its alternatives.

Starts its own Redis and services (gunicorn + gevent, one worker unless said), drives
them from load-client processes on loopback, prints a table and writes
docs/BENCHMARKS.md with a plot. Full run: about 5 minutes; --quick: under 1 minute
(it leaves out the 30-second gunicorn-default restart).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import measure, moon_report, moonshot, report
from bench.common import DOCS, FULL, QUICK, Bench
from servers.redis_server import RedisServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument(
        "--out", type=Path, default=DOCS / "BENCHMARKS.md", help="where to write the report"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--only-cluster", action="store_true", help="only the Redis Cluster rows (printed)"
    )
    parser.add_argument(
        "--moonshot",
        action="store_true",
        help="100,000 waiting browsers on 8 workers, side by side with flask-sse and Nchan"
        " (its own section of the report; 9 to 12 minutes on a 2-core machine, --quick 2)",
    )
    options = parser.parse_args()
    if options.moonshot:
        moonshot_main(options)
        return
    sizes = QUICK if options.quick else FULL
    began = time.time()
    results: dict[str, Any] = {"sizes": sizes, "quick": options.quick}
    print(f"qrlogin benchmark ({'quick' if options.quick else 'full'}), sizes {sizes}", flush=True)

    logs = Path(tempfile.mkdtemp(prefix="qrlogin-bench-"))
    print(f"server logs in {logs}", flush=True)
    # Redis with its default client cap, as the flask-sse comparison depends on it.
    with RedisServer(logs, maxclients=10000).start() as server:
        bench = Bench(sizes, server, logs)
        if options.only_cluster:
            try:
                measure.measure_cluster(bench, results)
            finally:
                bench.stop()
            print(report.cluster_section(results))
            return
        try:
            worker, ids = measure.measure_create(bench, results)
            measure.measure_waiting(bench, worker, ids, results)
            measure.measure_polling(bench, worker, results)
            worker.service.stop()
            measure.measure_sessions(bench, results)
            measure.measure_logins(bench, results)
            measure.measure_restart(bench, results)
            measure.measure_cluster(bench, results)
            results["flask_sse"] = measure.measure_flask_sse(bench)
            print(f"flask-sse: {results['flask_sse']}", flush=True)
        finally:
            bench.stop()
    results["took_s"] = time.time() - began
    text = report.render(results, options.quick)
    print(text)
    if not options.no_write:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        report.plot(results, options.out.parent / "benchmarks-latency.png")
        old = options.out.read_text() if options.out.exists() else ""
        moon = moon_report.kept(old)
        options.out.write_text(moon_report.place(text, moon) if moon else text)
        print(f"wrote {options.out}")


def moonshot_main(options: argparse.Namespace) -> None:
    sizes = moonshot.MOON_QUICK if options.quick else moonshot.MOON
    print(f"qrlogin moonshot, sizes {sizes}", flush=True)
    began = time.time()
    logs = Path(tempfile.mkdtemp(prefix="qrlogin-moonshot-"))
    print(f"server logs in {logs}", flush=True)
    with RedisServer(logs, maxclients=10000).start() as server:
        bench = Bench(QUICK if options.quick else FULL, server, logs, moon=sizes)
        try:
            results = moonshot.run(bench)
        finally:
            bench.stop()
    results["workers"] = sizes.workers
    (logs / "moonshot.json").write_text(json.dumps(results, indent=1))
    print(f"results in {logs / 'moonshot.json'}", flush=True)
    command = "./dev bench --moonshot" + (" --quick" if options.quick else "")
    text = moon_report.section(results, command, time.time() - began)
    print(text)
    if not options.no_write:
        moon_report.plot(results, options.out.parent / moon_report.PLOT)
        old = options.out.read_text() if options.out.exists() else ""
        options.out.write_text(moon_report.place(old, text))
        print(f"wrote the moonshot section of {options.out}")


if __name__ == "__main__":
    main()
