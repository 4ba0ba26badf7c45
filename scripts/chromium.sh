#!/usr/bin/env bash
# Debian's Chromium and its WebDriver, for the browser test of the HTML report.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/chromium.sh COMMAND

Commands:
  install   apt-get install chromium chromium-driver (skipped when /usr/bin/chromium and
            /usr/bin/chromedriver are already there); prints both versions
  versions  print the versions of chromium and chromedriver

Environment:
  CHROMIUM      the browser (default /usr/bin/chromium)
  CHROMEDRIVER  its WebDriver (default /usr/bin/chromedriver)
EOF
}

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"

log() { echo "[chromium] $*" >&2; }

have_all() { [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; }

versions() {
  echo "chromium:     $("$CHROMIUM" --version 2>/dev/null | head -n1)"
  echo "chromedriver: $("$CHROMEDRIVER" --version 2>/dev/null | head -n1)"
}

cmd_install() {
  if have_all; then
    log "chromium and chromedriver already present, skipping apt-get"
  else
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    local apt=(apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium chromium-driver)
    log "apt-get install chromium chromium-driver"
    if ! DEBIAN_FRONTEND=noninteractive $sudo "${apt[@]}"; then
      log "install failed; running apt-get update once and retrying"
      $sudo apt-get -o DPkg::Lock::Timeout=600 update
      DEBIAN_FRONTEND=noninteractive $sudo "${apt[@]}"
    fi
    have_all || { log "chromium or chromedriver still missing after install"; exit 1; }
  fi
  versions
}

case "${1:-}" in
  install) cmd_install ;;
  versions) versions ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
