#!/usr/bin/env bash
# `make run`: install what is missing, start Kafka, PostgreSQL and FerretDB, create topics and
# collections, start the four services under honcho, publish the demo content and print the
# site's address. Ctrl-C stops the services; `make stop` stops the infrastructure too.
#   --demo DIR   publish the ninjs files of DIR as well (default content: deploy/demo)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd "$HERE/../.." && pwd -P)"
cd "$REPO"
export PYTHON="${PYTHON:-$REPO/.venv/bin/python}"

extra_demo=""
while [ $# -gt 0 ]; do
  case "$1" in
    --demo) extra_demo="$2"; shift 2 ;;
    *) echo "run: unknown argument $1" >&2; exit 2 ;;
  esac
done

stack() { bash "$HERE/stack.sh" "$@"; }
stack install
stack start
eval "$(stack env)"
"$PYTHON" -m shared.cli init
stack gin-indexes

# linking keeps its index in a snapshot file, so a restart does not rebuild it.
export KAZPOST_LINKING_SNAPSHOT_PATH="${KAZPOST_LINKING_SNAPSHOT_PATH:-$KAZPOST_STATE/linking.snapshot}"
export KAZPOST_LINKING_TEASER_DIR="${KAZPOST_LINKING_TEASER_DIR:-$KAZPOST_STATE}"

GATEWAY_PORT="${KAZPOST_GATEWAY_PORT:-8080}"
URL="http://127.0.0.1:$GATEWAY_PORT"
LOGS="$KAZPOST_STATE/logs"
mkdir -p "$LOGS"

# Publish the demo content once the site is up (in the background, so honcho owns the terminal).
(
  "$PYTHON" -m shared.cli wait-for "$URL/readyz" --timeout 120 >/dev/null &&
  "$PYTHON" -m shared.cli publish "$REPO/deploy/demo" ${extra_demo:+"$extra_demo"} &&
  printf '\n  KazPost is up: %s  (Ctrl-C stops the services; `make stop` stops Kafka and the database)\n\n' "$URL"
) &
demo_pid=$!
trap 'kill $demo_pid 2>/dev/null || true' EXIT

exec "$PYTHON" -m honcho -f "$HERE/Procfile" -d "$REPO" start
