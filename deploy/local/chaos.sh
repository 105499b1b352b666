#!/usr/bin/env bash
# `make chaos`: the fault suite (tests/chaos) on a stack of its own, which it stops, kills and
# restarts. Arguments go to `python -m tests.chaos` (default: every scenario, 5,000 articles
# each; e.g. ARGS="--n 500 --scenarios kill-storage,restart-kafka"). The stack is stopped at the
# end unless KAZPOST_KEEP_STACK=1. Its own ports and state dir (never the dev or test stack):
#   KAZPOST_CHAOS_STATE [.run/chaos]  KAZPOST_CHAOS_KAFKA_PORT [31092]
#   KAZPOST_CHAOS_KAFKA_CONTROLLER_PORT [31093]  KAZPOST_CHAOS_PG_PORT [31433]
#   KAZPOST_CHAOS_MONGO_PORT [27021]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd "$HERE/../.." && pwd -P)"
cd "$REPO"

export PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
export KAZPOST_STATE="${KAZPOST_CHAOS_STATE:-$REPO/.run/chaos}"
export KAZPOST_KAFKA_PORT="${KAZPOST_CHAOS_KAFKA_PORT:-31092}"
export KAZPOST_KAFKA_CONTROLLER_PORT="${KAZPOST_CHAOS_KAFKA_CONTROLLER_PORT:-31093}"
export KAZPOST_PG_PORT="${KAZPOST_CHAOS_PG_PORT:-31433}"
export KAZPOST_MONGO_PORT="${KAZPOST_CHAOS_MONGO_PORT:-27021}"

stack() { bash "$HERE/stack.sh" "$@"; }
if [ "${KAZPOST_KEEP_STACK:-0}" != 1 ]; then
  trap 'stack stop >/dev/null 2>&1 || true' EXIT
fi

started=$(date +%s)
stack install
stack start
eval "$(stack env)"
echo "chaos stack ready in $(( $(date +%s) - started ))s"

set +e
"$PYTHON" -m tests.chaos "$@"
rc=$?
set -e
echo "fault suite finished in $(( $(date +%s) - started ))s (exit $rc)"
exit "$rc"
