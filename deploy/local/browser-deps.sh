#!/usr/bin/env bash
# What the browser tests (tests/browser) need beyond the Python test extras, installed
# idempotently on a Debian machine:
#   - Debian's Chromium at /usr/bin/chromium (Playwright drives it; no browser download);
#   - axe-core from npm, into a cache directory outside the repository.
# Prints the path of axe.min.js on stdout (the last line); progress goes to stderr.
# Use:  export KAZPOST_AXE_JS="$(bash deploy/local/browser-deps.sh | tail -n 1)"
set -euo pipefail

AXE_VERSION="${KAZPOST_AXE_VERSION:-4.14.1}"
CACHE="${KAZPOST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kazpost}"
CHROMIUM="${KAZPOST_CHROMIUM:-/usr/bin/chromium}"

say() { echo "browser-deps: $*" >&2; }

if [ ! -x "$CHROMIUM" ]; then
  if [ "$CHROMIUM" != /usr/bin/chromium ]; then
    say "KAZPOST_CHROMIUM=$CHROMIUM is not an executable"; exit 1
  fi
  say "installing chromium (Debian package)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq chromium >&2
fi
[ -x "$CHROMIUM" ] || { say "chromium is still missing at $CHROMIUM"; exit 1; }

AXE_DIR="$CACHE/axe-core-$AXE_VERSION"
AXE_JS="$AXE_DIR/npm-axe/node_modules/axe-core/axe.min.js"
if [ ! -s "$AXE_JS" ]; then
  command -v npm >/dev/null || { say "npm is needed to install axe-core (apt-get install -y npm)"; exit 1; }
  say "installing axe-core@$AXE_VERSION into $AXE_DIR"
  mkdir -p "$AXE_DIR/npm-axe"
  # A private prefix with its own package.json, so npm never walks up into the repository.
  [ -f "$AXE_DIR/npm-axe/package.json" ] || echo '{"name": "kazpost-axe", "private": true}' >"$AXE_DIR/npm-axe/package.json"
  npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$AXE_DIR/npm-axe" "axe-core@$AXE_VERSION" >&2
  [ -s "$AXE_JS" ] || { say "axe-core installed but $AXE_JS is missing"; exit 1; }
fi
echo "$AXE_JS"
