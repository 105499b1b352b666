#!/usr/bin/env bash
# `make test`: start a test stack (own ports and state dir, beside any dev stack), then run
# the whole suite against it. Extra arguments go to pytest. The stack is stopped at the end
# unless KAZPOST_KEEP_STACK=1 (faster repeated runs).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd "$HERE/../.." && pwd -P)"
cd "$REPO"

export PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
export KAZPOST_STATE="${KAZPOST_TEST_STATE:-$REPO/.run/test}"
export KAZPOST_KAFKA_PORT="${KAZPOST_TEST_KAFKA_PORT:-19092}"
export KAZPOST_KAFKA_CONTROLLER_PORT="${KAZPOST_TEST_KAFKA_CONTROLLER_PORT:-19093}"
export KAZPOST_PG_PORT="${KAZPOST_TEST_PG_PORT:-15433}"
export KAZPOST_MONGO_PORT="${KAZPOST_TEST_MONGO_PORT:-27018}"

stack() { bash "$HERE/stack.sh" "$@"; }
if [ "${KAZPOST_KEEP_STACK:-0}" != 1 ]; then
  trap 'stack stop >/dev/null 2>&1 || true' EXIT
fi

started=$(date +%s)
stack install
export KAZPOST_AXE_JS="${KAZPOST_AXE_JS:-$(bash "$HERE/browser-deps.sh" | tail -n 1)}"
stack start
eval "$(stack env)"
export KAZPOST_LOG_LEVEL="${KAZPOST_LOG_LEVEL:-WARNING}"
"$PYTHON" -m shared.cli init
stack gin-indexes
echo "test stack ready in $(( $(date +%s) - started ))s"

set +e
"$PYTHON" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests (exit 5): nothing was run" >&2
  rc=0
fi
echo "tests finished in $(( $(date +%s) - started ))s (exit $rc)"
exit "$rc"
