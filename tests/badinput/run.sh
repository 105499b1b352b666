#!/usr/bin/env bash
# `make badinput`: start the test stack (as `make test` does: same ports, same state dir, the
# same KAZPOST_TEST_* overrides), then run the whole bad-input corpora against it and print the
# tables. Extra arguments go to `python -m tests.badinput.run` (--sample, --strings N, ...).
# The stack is stopped at the end unless KAZPOST_KEEP_STACK=1.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$REPO"

export PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
export KAZPOST_STATE="${KAZPOST_TEST_STATE:-$REPO/.run/test}"
export KAZPOST_KAFKA_PORT="${KAZPOST_TEST_KAFKA_PORT:-19092}"
export KAZPOST_KAFKA_CONTROLLER_PORT="${KAZPOST_TEST_KAFKA_CONTROLLER_PORT:-19093}"
export KAZPOST_PG_PORT="${KAZPOST_TEST_PG_PORT:-15433}"
export KAZPOST_MONGO_PORT="${KAZPOST_TEST_MONGO_PORT:-27018}"

stack() { bash "$REPO/deploy/local/stack.sh" "$@"; }
if [ "${KAZPOST_KEEP_STACK:-0}" != 1 ]; then
  trap 'stack stop >/dev/null 2>&1 || true' EXIT
fi
stack install
stack start
eval "$(stack env)"
export KAZPOST_LOG_LEVEL="${KAZPOST_LOG_LEVEL:-ERROR}"
"$PYTHON" -m shared.cli init >/dev/null
"$PYTHON" -m tests.badinput.run "$@"
