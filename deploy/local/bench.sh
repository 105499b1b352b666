#!/usr/bin/env bash
# `make bench`: start a benchmark stack (own ports and state dir, beside any dev or test stack),
# then run the benchmark suite (benchmarks/suite.py) against it. Extra arguments go to the suite
# (`make bench ARGS="--only p1 --n 2000"`; `--help` lists them). The stack is stopped at the end
# unless KAZPOST_KEEP_STACK=1. Results: a table on stdout and .run/bench/results-<UTC>.json.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd "$HERE/../.." && pwd -P)"
cd "$REPO"

export PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
export KAZPOST_STATE="${KAZPOST_BENCH_STATE:-$REPO/.run/bench}"
export KAZPOST_KAFKA_PORT="${KAZPOST_BENCH_KAFKA_PORT:-29092}"
export KAZPOST_KAFKA_CONTROLLER_PORT="${KAZPOST_BENCH_KAFKA_CONTROLLER_PORT:-29093}"
export KAZPOST_PG_PORT="${KAZPOST_BENCH_PG_PORT:-25433}"
export KAZPOST_MONGO_PORT="${KAZPOST_BENCH_MONGO_PORT:-27019}"

for arg in "$@"; do
  if [[ $arg == -h || $arg == --help ]]; then exec "$PYTHON" -m benchmarks.suite --help; fi
done

stack() { bash "$HERE/stack.sh" "$@"; }
if [ "${KAZPOST_KEEP_STACK:-0}" != 1 ]; then
  trap 'stack stop >/dev/null 2>&1 || true' EXIT
fi

# wrk drives the gateway benchmark (P3); optional for the others.
if ! command -v wrk >/dev/null 2>&1 && [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1 ||
    echo "bench: could not install wrk (P3 will report it)" >&2
fi

stack install
stack start
eval "$(stack env)"
export KAZPOST_LOG_LEVEL="${KAZPOST_LOG_LEVEL:-WARNING}"
"$PYTHON" -m shared.cli init >/dev/null
stack gin-indexes >/dev/null
"$PYTHON" -m benchmarks.suite "$@"
