#!/usr/bin/env bash
# What the narration service needs beyond Python, installed idempotently on a Debian machine:
#   - espeak-ng (speech in kk, ru, en and many more languages), Debian package espeak-ng;
#   - opusenc and opusdec (Ogg Opus encoding; tests decode with opusdec), Debian package opus-tools.
# Installs only what is missing (as root, or through sudo). Progress goes to stderr.
set -euo pipefail

say() { echo "narration-deps: $*" >&2; }

missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
if ! command -v opusenc >/dev/null 2>&1 || ! command -v opusdec >/dev/null 2>&1; then
  missing+=(opus-tools)
fi
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
say "installing ${missing[*]} (Debian packages)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { say "run as root or install sudo: apt-get install -y ${missing[*]}"; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
for cmd in espeak-ng opusenc opusdec; do
  command -v "$cmd" >/dev/null 2>&1 || { say "$cmd is still missing after the install"; exit 1; }
done
say "installed ${missing[*]}"
