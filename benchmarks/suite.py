"""The benchmark suite behind ``make bench``: P1 pipeline throughput, P2 publish-to-readable
latency, P3 gateway, P5 memory; every figure next to a baseline measured in the same run.

Run by ``deploy/local/bench.sh`` against a benchmark stack of its own (Kafka, PostgreSQL,
FerretDB on their own ports, state in ``.run/bench``); the services run as real processes.
Prints one table at the end and writes everything (figures, baselines, stage timings, method
notes, the machine) to ``.run/bench/results-<UTC time>.json``.

    make bench                                  everything, default sizes (about 40 minutes here)
    make bench ARGS="--only p1 --n 2000"        one benchmark, other sizes
    make bench-quick                            everything, small sizes (a few minutes)

Benchmarks: p1 (throughput), p2 (latency), p3 (gateway), p5 (memory).  See each module's
docstring for exactly what is measured: benchmarks/throughput.py, latency.py, gateway_bench.py,
memory.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import traceback
from datetime import UTC, datetime

from benchmarks import latency, memory, throughput
from benchmarks.common import REPO, Report, drop_run_topics, environment, log, new_run_id

QUICK = {"n": 1000, "p2_rate": 50.0, "p2_duration": 20.0, "p2_preload": 200, "p2_baseline_duration": 10.0,
         "p3_duration": 5, "p3_rounds": 1, "p5_n": 5000, "p5_pages": 1000, "p5_live": 100}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make bench ARGS=...", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="p1,p2,p3,p5",
                        help="comma-separated subset of p1,p2,p3,p5 (and linking: the index alone, not in the default)")
    parser.add_argument("--quick", action="store_true", help="small sizes: " + json.dumps(QUICK))
    parser.add_argument("--n", type=int, default=10_000, help="P1: articles published")
    parser.add_argument("--spread-hours", type=float, default=24.0, help="P1: publication times spread over")
    parser.add_argument("--p2-rate", type=float, default=50.0, help="P2: articles per second")
    parser.add_argument("--p2-duration", type=float, default=60.0, help="P2: seconds of steady load")
    parser.add_argument("--p2-preload", type=int, default=1000, help="P2/P3: articles stored and linked first")
    parser.add_argument("--p2-drain", type=float, default=600.0, help="P2: seconds to wait for the last articles")
    parser.add_argument("--p2-baseline-duration", type=float, default=20.0)
    parser.add_argument("--p3-duration", type=int, default=5, help="P3: seconds per wrk round")
    parser.add_argument("--p3-rounds", type=int, default=6, help="P3: alternating rounds per target (median ratio kept)")
    parser.add_argument("--p3-connections", type=int, default=64)
    parser.add_argument("--p5-n", type=int, default=100_000, help="P5: stored articles")
    parser.add_argument("--p5-pages", type=int, default=5_000,
                        help="P5: distinct article pages the gateway serves (its cache holds up to 20,000)")
    parser.add_argument("--p5-live", type=int, default=500, help="P5: articles through the whole pipeline at full size")
    parser.add_argument("--out", type=pathlib.Path, default=REPO / ".run" / "bench", help="where results-*.json go")
    args = parser.parse_args(argv)
    if args.quick:
        defaults = {a.dest: a.default for a in parser._actions}  # noqa: SLF001
        for key, value in QUICK.items():
            if getattr(args, key) == defaults[key]:  # explicit options win over --quick
                setattr(args, key, value)
    args.selected = [x.strip().lower() for x in args.only.split(",") if x.strip()]
    unknown = set(args.selected) - {"p1", "p2", "p3", "p5", "linking"}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))} (choose from p1, p2, p3, p5, linking)")
    return args


async def run(args: argparse.Namespace, report: Report) -> None:
    run_id = new_run_id()
    logs = args.out / "services" / run_id
    log(f"benchmark run {run_id}: {', '.join(args.selected)}; service logs in {logs}")
    try:
        await run_selected(args, report, run_id, logs)
    finally:
        try:
            dropped = await drop_run_topics(run_id)
            log(f"benchmark run {run_id}: its {len(dropped)} topics deleted")
        except Exception as exc:  # noqa: BLE001 - tidying up only: the results stand
            log(f"benchmark run {run_id}: could not delete its topics ({exc!r})")


async def run_selected(args: argparse.Namespace, report: Report, run_id: str, logs: pathlib.Path) -> None:
    async def guarded(name: str, coro) -> None:
        try:
            await coro
        except Exception as exc:  # noqa: BLE001 - one failed benchmark must not hide the others
            report.errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"{name} failed:\n{traceback.format_exc()}")

    if "p1" in args.selected:
        await guarded("P1", throughput.run(report, n=args.n, spread_hours=args.spread_hours, logs=logs, run_id=run_id))
    if "p2" in args.selected or "p3" in args.selected:
        gateway = None
        if "p3" in args.selected:
            gateway = {"duration": args.p3_duration, "rounds": args.p3_rounds, "connections": args.p3_connections}
        await guarded("P2/P3", latency.run(
            report, rate=args.p2_rate, duration=args.p2_duration, preload_n=args.p2_preload, drain=args.p2_drain,
            baseline_duration=args.p2_baseline_duration, logs=logs, run_id=run_id, latency="p2" in args.selected,
            gateway=gateway))
    if "linking" in args.selected:
        await guarded("linking", linking_index(report, args))
    if "p5" in args.selected:
        await guarded("P5", memory.run(report, n=args.p5_n, pages=args.p5_pages, live_n=args.p5_live, spread_days=60,
                                       logs=logs, run_id=run_id))


async def linking_index(report: Report, args: argparse.Namespace) -> None:
    """The related-articles index alone (benchmarks/linking_bench.py), against its brute-force
    TF-IDF baseline in the same run; optional (``--only linking``), it takes a few minutes."""
    import tempfile

    from benchmarks import linking_bench
    from benchmarks.common import Row

    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "linking.json"
        sizes = "2000" if args.quick else "10000,100000"
        await asyncio.to_thread(linking_bench.main, ["--sizes", sizes, "--json", str(out)])
        results = json.loads(out.read_text())
    for entry in results:
        ours, base = entry["ours"], entry["baseline"] or {}
        for q in ("p50", "p99"):
            report.add(Row("linking index", f"upsert + related {q} at {entry['size']:,} articles",
                           ours[f"upsert_related_ms_{q}"], "ms", base.get(f"upsert_related_ms_{q}"), "brute-force TF-IDF"))
        report.add(Row("linking index", f"index memory at {entry['size']:,} articles", ours["index_rss_mb"], "MB"))
    report.details["linking"] = results


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    report = Report()
    env = environment()
    env["load_average_at_start"] = os.getloadavg()
    try:
        asyncio.run(run(args, report))
    finally:
        env["load_average_at_end"] = os.getloadavg()
        env["options"] = {k: v for k, v in vars(args).items() if k not in ("out",)}
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"results-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(report.to_json(env), indent=2, default=str))
        print()
        print(f"KazPost benchmarks ({env['database_backend']}, {env['cpus']} CPUs, load average "
              f"{env['load_average_at_start'][0]:.1f} at start, {env['load_average_at_end'][0]:.1f} at end)")
        print(report.table())
        print(f"\nresults written to {path}")
    return 1 if report.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
