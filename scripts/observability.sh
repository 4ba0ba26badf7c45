#!/usr/bin/env bash
# Local Prometheus + Alertmanager for ampel-monitor (Debian packages, our own processes).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/observability.sh COMMAND [--wipe]

Commands:
  install       apt-get install prometheus prometheus-alertmanager (skipped when the
                binaries prometheus, promtool, prometheus-alertmanager|alertmanager and
                amtool are already there); prints the versions. The packages' own
                services are not used (and not started by us).
  start         start Prometheus and Alertmanager in the background (no-op if running)
  wait          wait until both answer /-/ready (timeout $OBS_WAIT_TIMEOUT, 60 s)
  stop [--wipe] SIGTERM, SIGKILL after 20 s; --wipe also deletes the data directories
  status        show whether each is running and ready
  check         validate the configs (promtool check config, amtool check-config)

Environment:
  AMPEL_CACHE   cache/data root (default $HOME/.cache/ampel-monitor)
  PROM_PORT     Prometheus listen port on 127.0.0.1 (default 19090)
  AM_PORT       Alertmanager listen port on 127.0.0.1 (default 19094; 19093 is left
                to a Kafka controller). deploy/prometheus/prometheus.yml names 19094.
  PROM_DATA     Prometheus data dir (default $AMPEL_CACHE/prometheus-data)
  AM_DATA       Alertmanager data dir (default $AMPEL_CACHE/alertmanager-data)
EOF
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AMPEL_CACHE="${AMPEL_CACHE:-$HOME/.cache/ampel-monitor}"
mkdir -p "$AMPEL_CACHE"
AMPEL_CACHE="$(cd "$AMPEL_CACHE" && pwd)"
PROM_PORT="${PROM_PORT:-19090}"
AM_PORT="${AM_PORT:-19094}"
OBS_WAIT_TIMEOUT="${OBS_WAIT_TIMEOUT:-60}"
PROM_CONFIG="$ROOT/deploy/prometheus/prometheus.yml"
AM_CONFIG="$ROOT/deploy/alertmanager/alertmanager.yml"
PROM_DATA="${PROM_DATA:-$AMPEL_CACHE/prometheus-data}"
AM_DATA="${AM_DATA:-$AMPEL_CACHE/alertmanager-data}"

log() { echo "[observability] $*" >&2; }

am_bin() {
  if command -v prometheus-alertmanager >/dev/null 2>&1; then
    command -v prometheus-alertmanager
  elif command -v alertmanager >/dev/null 2>&1; then
    command -v alertmanager
  else
    return 1
  fi
}

have_all() {
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 &&
    am_bin >/dev/null && command -v amtool >/dev/null 2>&1
}

versions() {
  echo "prometheus:   $(prometheus --version 2>&1 | head -n1)"
  echo "promtool:     $(promtool --version 2>&1 | head -n1)"
  echo "alertmanager: $("$(am_bin)" --version 2>&1 | head -n1)"
  echo "amtool:       $(amtool --version 2>&1 | head -n1)"
}

cmd_install() {
  if have_all; then
    log "binaries already present, skipping apt-get"
  else
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    # Keep the packages' postinst from starting their own services (on 9090/9093/9094):
    # a temporary policy-rc.d denies service starts, unless one is already there.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
      $sudo chmod 755 /usr/sbin/policy-rc.d
      # shellcheck disable=SC2064  # expand $sudo now
      trap "$sudo rm -f /usr/sbin/policy-rc.d" EXIT
    fi
    log "apt-get install prometheus prometheus-alertmanager"
    if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends \
        prometheus prometheus-alertmanager; then
      log "install failed; running apt-get update once and retrying"
      $sudo apt-get update
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends \
        prometheus prometheus-alertmanager
    fi
    # If a service manager did start the packaged services anyway, stop them: we run our own.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      $sudo systemctl disable --now prometheus prometheus-alertmanager 2>/dev/null || true
    fi
    have_all || { log "binaries still missing after install"; exit 1; }
  fi
  versions
}

pid_alive() { # pidfile
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

port_busy() { # port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_one() { # name pidfile logfile cmd...
  local name=$1 pidfile=$2 logfile=$3 port=$4
  shift 4
  if pid_alive "$pidfile"; then
    log "$name already running (pid $(cat "$pidfile"))"
    return 0
  fi
  if port_busy "$port"; then
    log "port 127.0.0.1:$port is in use by another process; set another port (see --help)"
    exit 1
  fi
  nohup "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  log "$name started (pid $!, 127.0.0.1:$port, log $logfile)"
}

cmd_start() {
  have_all || { log "binaries missing: run '$0 install' first"; exit 1; }
  mkdir -p "$PROM_DATA" "$AM_DATA"
  start_one prometheus "$PROM_DATA/prometheus.pid" "$PROM_DATA/prometheus.log" "$PROM_PORT" \
    prometheus \
    --config.file="$PROM_CONFIG" \
    --storage.tsdb.path="$PROM_DATA" \
    --web.listen-address="127.0.0.1:$PROM_PORT" \
    --web.external-url="http://127.0.0.1:$PROM_PORT" \
    --web.enable-remote-write-receiver \
    --web.enable-lifecycle
  start_one alertmanager "$AM_DATA/alertmanager.pid" "$AM_DATA/alertmanager.log" "$AM_PORT" \
    "$(am_bin)" \
    --config.file="$AM_CONFIG" \
    --storage.path="$AM_DATA" \
    --web.listen-address="127.0.0.1:$AM_PORT" \
    --web.external-url="http://127.0.0.1:$AM_PORT" \
    --cluster.listen-address=
}

ready() { # url
  curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null
}

cmd_wait() {
  local deadline=$((SECONDS + OBS_WAIT_TIMEOUT)) p=0 a=0
  while [ "$SECONDS" -lt "$deadline" ]; do
    ready "http://127.0.0.1:$PROM_PORT/-/ready" && p=1 || p=0
    ready "http://127.0.0.1:$AM_PORT/-/ready" && a=1 || a=0
    if [ "$p" = 1 ] && [ "$a" = 1 ]; then
      log "prometheus (127.0.0.1:$PROM_PORT) and alertmanager (127.0.0.1:$AM_PORT) ready"
      return 0
    fi
    for f in "$PROM_DATA/prometheus.pid" "$AM_DATA/alertmanager.pid"; do
      if [ -f "$f" ] && ! pid_alive "$f"; then
        log "process of $f exited; see the log beside it:"
        tail -n 20 "${f%.pid}.log" >&2 || true
        exit 1
      fi
    done
    sleep 0.5
  done
  log "not ready after ${OBS_WAIT_TIMEOUT}s (prometheus=$p alertmanager=$a)"
  exit 1
}

stop_one() { # name pidfile
  local name=$1 pidfile=$2 pid i
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    log "$name not running"
    return 0
  fi
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) still running after 20 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "$name stopped"
}

cmd_stop() {
  local wipe=""
  [ "${1:-}" = "--wipe" ] && wipe=1
  stop_one prometheus "$PROM_DATA/prometheus.pid"
  stop_one alertmanager "$AM_DATA/alertmanager.pid"
  if [ -n "$wipe" ]; then
    rm -rf "$PROM_DATA" "$AM_DATA"
    log "wiped $PROM_DATA $AM_DATA"
  fi
}

cmd_status() {
  local rc=0
  for spec in "prometheus $PROM_DATA/prometheus.pid $PROM_PORT" \
              "alertmanager $AM_DATA/alertmanager.pid $AM_PORT"; do
    # shellcheck disable=SC2086  # split the spec into its three words
    set -- $spec
    if pid_alive "$2"; then
      if ready "http://127.0.0.1:$3/-/ready"; then
        echo "$1: running (pid $(cat "$2")), ready on 127.0.0.1:$3"
      else
        echo "$1: running (pid $(cat "$2")), not ready on 127.0.0.1:$3"
        rc=1
      fi
    else
      echo "$1: stopped"
      rc=1
    fi
  done
  return $rc
}

cmd_check() {
  promtool check config "$PROM_CONFIG"
  amtool check-config "$AM_CONFIG"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  wait) cmd_wait ;;
  stop) shift; cmd_stop "${1:-}" ;;
  status) cmd_status ;;
  check) cmd_check ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
