"""``python -m tests.chaos``: run fault scenarios against the stack the environment points at
(``make chaos`` starts one of its own and calls this), print the table, write it as JSON.

Exit status 0 only if every scenario lost, duplicated and dead-lettered nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import platform
import sys
import time
import uuid

from tests.chaos.infra import REPO, Infra
from tests.chaos.suite import SCENARIOS, run_scenario, say, table, write_json


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000, help="articles per scenario (plus version 2 of every tenth) [5000]")
    p.add_argument("--rate", type=float, default=20.0, help="upstream messages per second [20]")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated, in order [all: {','.join(SCENARIOS)}]")
    p.add_argument("--json", type=pathlib.Path, default=REPO / "artifacts" / "chaos.json", help="[artifacts/chaos.json]")
    p.add_argument("--workdir", type=pathlib.Path, default=None, help="service logs [$KAZPOST_STATE/chaos-<run>]")
    p.add_argument("--keep", action="store_true", help="keep each scenario's topics and database")
    p.add_argument("--quiesce-timeout", type=float, default=None, help="seconds to wait for the pipeline to drain")
    return p.parse_args(argv)


async def main_async(args: argparse.Namespace) -> int:
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        print(f"unknown scenarios: {unknown}; known: {list(SCENARIOS)}", file=sys.stderr)
        return 2
    infra = Infra.from_env()
    run_id = uuid.uuid4().hex[:6]
    workdir = args.workdir or infra.state / f"chaos-{run_id}"
    say(f"fault suite {run_id}: {len(names)} scenarios x {args.n} articles at {args.rate:g}/s; "
        f"kafka {infra.bootstrap_servers}, database {infra.mongo_url}; logs in {workdir}")
    results = []
    started = time.time()
    for name in names:
        results.append(await run_scenario(SCENARIOS[name], infra, n=args.n, rate=args.rate, workdir=workdir,
                                          run_id=run_id, keep=args.keep, quiesce_timeout=args.quiesce_timeout))
        write_json(results, args.json, run_id=run_id, n=args.n, rate=args.rate, started=started,
                   machine=f"{platform.node()} {platform.machine()}")
        print(table(results), flush=True)
    print(f"\nfault suite {run_id} in {time.time() - started:.0f}s; JSON: {args.json}")
    failed = [r.scenario for r in results if not r.ok]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print("every scenario: 0 lost, 0 duplicated, 0 unexpected, 0 dead-lettered")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # refused connections during faults are expected
    return asyncio.run(main_async(parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
