#!/usr/bin/env bash
# A real single-node Elasticsearch (or OpenSearch) for ampel-monitor tests and demos,
# from the integ-test-zip distribution on Maven Central (no Docker, no package repo).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/elasticsearch.sh COMMAND [--wipe]

Commands:
  fetch         download the distribution zip with mvn (once) and unzip it into the cache
  start         start a single node on 127.0.0.1:$ES_PORT in the background (fetches first;
                no-op if running)
  wait          wait for _cluster/health?wait_for_status=yellow (timeout $ES_WAIT_TIMEOUT, 120 s)
  stop [--wipe] SIGTERM, SIGKILL after 20 s; --wipe also deletes $ES_DATA
  status        show whether the node is running and its health

Environment:
  AMPEL_CACHE     cache/data root (default $HOME/.cache/ampel-monitor)
  ES_DIST         elasticsearch (default) or opensearch
  ES_VERSION      distribution version (default 8.19.21 for elasticsearch, 2.19.6 for opensearch)
  ES_PORT         HTTP port on 127.0.0.1 (default 19200)
  ES_TRANSPORT_PORT  transport port on 127.0.0.1 (default 19300)
  ES_DATA         the node's data, logs and config (default $AMPEL_CACHE/es-data); the
                  node's user must be able to reach it
  ES_HEAP         JVM heap for -Xms/-Xmx (default 512m)
  ES_JAVA_HOME    JDK to run it (default: the system JDK 17; the newest JDK under
                  /usr/lib/jvm when the version needs a newer one)
  ES_USER         user to run the node as when invoked as root (default ampel; created
                  with useradd -r). Elasticsearch and OpenSearch refuse to run as root.

The integ-test-zip is a minimal distribution: no bundled JDK and only a few modules
(Elasticsearch 8.19: apm, transport-netty4, x-pack-core, x-pack-security), so no
painless, ingest pipelines, data streams or ILM; plain indices, _bulk, search and the
core aggregations (terms, date_histogram, percentiles, stats) work.
EOF
}

AMPEL_CACHE="${AMPEL_CACHE:-$HOME/.cache/ampel-monitor}"
mkdir -p "$AMPEL_CACHE"
AMPEL_CACHE="$(cd "$AMPEL_CACHE" && pwd)"
ES_DIST="${ES_DIST:-elasticsearch}"
case "$ES_DIST" in
  elasticsearch)
    ES_VERSION="${ES_VERSION:-8.19.21}"
    ES_GROUP=org.elasticsearch.distribution.integ-test-zip
    ES_CMD=elasticsearch ;;
  opensearch)
    ES_VERSION="${ES_VERSION:-2.19.6}"
    ES_GROUP=org.opensearch.distribution.integ-test-zip
    ES_CMD=opensearch ;;
  *) echo "ES_DIST must be elasticsearch or opensearch" >&2; exit 2 ;;
esac
ES_PORT="${ES_PORT:-19200}"
ES_TRANSPORT_PORT="${ES_TRANSPORT_PORT:-19300}"
ES_HEAP="${ES_HEAP:-512m}"
ES_USER="${ES_USER:-ampel}"
ES_WAIT_TIMEOUT="${ES_WAIT_TIMEOUT:-120}"
DIST_DIR="$AMPEL_CACHE/$ES_DIST-$ES_VERSION"
DL_DIR="$AMPEL_CACHE/downloads"
ES_DATA="${ES_DATA:-$AMPEL_CACHE/es-data}"
PIDFILE="$ES_DATA/node.pid"          # written by the node itself (-p)
LAUNCHER_PIDFILE="$ES_DATA/launcher.pid"
CONSOLE_LOG="$ES_DATA/console.log"
URL="http://127.0.0.1:$ES_PORT"

log() { echo "[elasticsearch] $*" >&2; }

java_major() { # JAVA_HOME -> major version
  "$1/bin/java" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p'
}

pick_java() {
  if [ -n "${ES_JAVA_HOME:-}" ]; then echo "$ES_JAVA_HOME"; return; fi
  local need=17
  case "$ES_DIST:$ES_VERSION" in
    elasticsearch:9.* | opensearch:3.*) need=21 ;;
  esac
  local best="" best_major=0 j m
  for j in /usr/lib/jvm/*/; do
    j="${j%/}"
    [ -x "$j/bin/java" ] || continue
    [ -L "$j" ] && continue
    m=$(java_major "$j") || continue
    [ -n "$m" ] || continue
    # Prefer the lowest JDK that satisfies the need (the system 17 for 8.x), else the newest.
    if [ "$m" -ge "$need" ] && { [ "$best_major" -lt "$need" ] || [ "$m" -lt "$best_major" ]; }; then
      best=$j best_major=$m
    elif [ "$best_major" -lt "$need" ] && [ "$m" -gt "$best_major" ]; then
      best=$j best_major=$m
    fi
  done
  if [ -z "$best" ] || [ "$best_major" -lt "$need" ]; then
    log "no JDK >= $need under /usr/lib/jvm; set ES_JAVA_HOME"
    exit 1
  fi
  echo "$best"
}

cmd_fetch() {
  if [ -x "$DIST_DIR/bin/$ES_CMD" ]; then
    log "$ES_DIST $ES_VERSION already in $DIST_DIR"
    return 0
  fi
  command -v mvn >/dev/null || { log "mvn not found (apt-get install -y maven)"; exit 1; }
  command -v unzip >/dev/null || { log "unzip not found (apt-get install -y unzip)"; exit 1; }
  mkdir -p "$DL_DIR"
  local zip="$DL_DIR/$ES_DIST-$ES_VERSION.zip"
  if [ ! -s "$zip" ]; then
    log "fetching $ES_GROUP:$ES_DIST:$ES_VERSION:zip with mvn"
    # The stock dependency plugin (2.8 with Maven 3.8) has no 'copy' without a POM; pin one.
    mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
      -Dartifact="$ES_GROUP:$ES_DIST:$ES_VERSION:zip" \
      -DoutputDirectory="$DL_DIR"
    [ -s "$zip" ] || { log "mvn did not produce $zip"; exit 1; }
  fi
  local tmp="$AMPEL_CACHE/.unzip-$ES_DIST-$ES_VERSION.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  unzip -q "$zip" -d "$tmp"
  local top
  top=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n1)
  [ -x "$top/bin/$ES_CMD" ] || { log "unexpected zip layout in $zip"; rm -rf "$tmp"; exit 1; }
  rm -rf "$DIST_DIR"
  mv "$top" "$DIST_DIR"
  rm -rf "$tmp"
  log "$ES_DIST $ES_VERSION unpacked into $DIST_DIR (modules: $(cd "$DIST_DIR/modules" && echo *))"
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Elasticsearch/OpenSearch refuse to run as root: run as a system user, who needs
# to traverse every directory above the cache (e.g. /root, mode 700).
prepare_user() {
  if ! id -u "$ES_USER" >/dev/null 2>&1; then
    useradd -r -M -d "$ES_DATA" -s /usr/sbin/nologin "$ES_USER"
    log "created system user $ES_USER"
  fi
  # Top-down over the directories above the cache: /root, /root/.cache, ...
  local d="" part
  local -a parts
  IFS=/ read -r -a parts <<<"${AMPEL_CACHE#/}"
  for part in "${parts[@]:0:${#parts[@]}-1}"; do
    d="$d/$part"
    if ! runuser -u "$ES_USER" -- test -x "$d"; then
      if command -v setfacl >/dev/null 2>&1 && setfacl -m "u:$ES_USER:x" "$d" 2>/dev/null; then
        log "granted $ES_USER traversal of $d (ACL u:$ES_USER:x)"
      else
        chmod o+x "$d"
        log "granted traversal (o+x, not listing) of $d so that $ES_USER reaches $AMPEL_CACHE"
      fi
    fi
  done
  chmod o+x "$AMPEL_CACHE"
  chmod -R o+rX "$DIST_DIR"
  chown -R "$ES_USER:" "$ES_DATA"
}

launcher_alive() {
  [ -f "$LAUNCHER_PIDFILE" ] && kill -0 "$(cat "$LAUNCHER_PIDFILE")" 2>/dev/null
}
node_alive() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}
running() { launcher_alive || node_alive; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_start() {
  if running; then
    log "already running (launcher pid $(cat "$LAUNCHER_PIDFILE" 2>/dev/null || echo -))"
    return 0
  fi
  cmd_fetch
  local p
  for p in "$ES_PORT" "$ES_TRANSPORT_PORT"; do
    if port_busy "$p"; then
      log "port 127.0.0.1:$p is in use by another process (set ES_PORT / ES_TRANSPORT_PORT)"
      exit 1
    fi
  done
  local java_home
  java_home=$(pick_java)
  mkdir -p "$ES_DATA/data" "$ES_DATA/logs"
  # A private, writable config dir (the node writes its keystore there on first start).
  if [ ! -f "$ES_DATA/config/jvm.options" ]; then
    rm -rf "$ES_DATA/config"
    cp -r "$DIST_DIR/config" "$ES_DATA/config"
    # OpenSearch's jvm.options names relative logs/ and data paths: make them ours.
    sed -i -e "s|file=logs/|file=$ES_DATA/logs/|; s|-Xloggc:logs/|-Xloggc:$ES_DATA/logs/|" \
      -e "s|HeapDumpPath=data\$|HeapDumpPath=$ES_DATA/data|; s|ErrorFile=logs/|ErrorFile=$ES_DATA/logs/|" \
      "$ES_DATA/config/jvm.options"
  fi
  rm -f "$PIDFILE"
  local settings=(
    -Ecluster.name=ampel
    -Enode.name=ampel-1
    -Ediscovery.type=single-node
    -Enetwork.host=127.0.0.1
    -Ehttp.port="$ES_PORT"
    -Etransport.port="$ES_TRANSPORT_PORT"
    -Epath.data="$ES_DATA/data"
    -Epath.logs="$ES_DATA/logs"
    -Ecluster.routing.allocation.disk.threshold_enabled=false
    -Eaction.destructive_requires_name=false
  )
  if [ "$ES_DIST" = elasticsearch ]; then
    if [ -d "$DIST_DIR/modules/x-pack-security" ]; then
      settings+=(-Expack.security.enabled=false)
    fi
    if [ -d "$DIST_DIR/modules/x-pack-ml" ]; then settings+=(-Expack.ml.enabled=false); fi
  elif [ -d "$DIST_DIR/plugins/opensearch-security" ]; then
    settings+=(-Eplugins.security.disabled=true)
  fi
  local envs=(
    "ES_JAVA_HOME=$java_home" "OPENSEARCH_JAVA_HOME=$java_home"
    "ES_PATH_CONF=$ES_DATA/config" "OPENSEARCH_PATH_CONF=$ES_DATA/config"
    "ES_JAVA_OPTS=-Xms$ES_HEAP -Xmx$ES_HEAP ${ES_JAVA_OPTS:-}"
    "OPENSEARCH_JAVA_OPTS=-Xms$ES_HEAP -Xmx$ES_HEAP ${OPENSEARCH_JAVA_OPTS:-}"
  )
  local runner=()
  if is_root; then
    prepare_user
    runner=(runuser -u "$ES_USER" --)
  fi
  log "starting $ES_DIST $ES_VERSION on $URL (java: $java_home, heap $ES_HEAP$(is_root && echo ", as user $ES_USER"))"
  # From $ES_DATA, so that any remaining relative path lands there.
  cd "$ES_DATA"
  nohup "${runner[@]}" env "${envs[@]}" "$DIST_DIR/bin/$ES_CMD" -p "$PIDFILE" "${settings[@]}" \
    >>"$CONSOLE_LOG" 2>&1 </dev/null &
  echo $! >"$LAUNCHER_PIDFILE"
  log "launcher pid $!, console log $CONSOLE_LOG, node logs $ES_DATA/logs"
}

cmd_wait() {
  local deadline=$((SECONDS + ES_WAIT_TIMEOUT)) start=$SECONDS
  while [ "$SECONDS" -lt "$deadline" ]; do
    if curl -fsS -m 5 -o /dev/null "$URL/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null; then
      log "ready on $URL after $((SECONDS - start)) s of waiting"
      return 0
    fi
    if ! running; then
      log "the node exited; last lines of $CONSOLE_LOG:"
      tail -n 30 "$CONSOLE_LOG" >&2 || true
      exit 1
    fi
    sleep 1
  done
  log "not ready after ${ES_WAIT_TIMEOUT}s; last lines of $CONSOLE_LOG:"
  tail -n 30 "$CONSOLE_LOG" >&2 || true
  exit 1
}

cmd_stop() {
  local wipe="" pids=() p i
  [ "${1:-}" = "--wipe" ] && wipe=1
  node_alive && pids+=("$(cat "$PIDFILE")")
  launcher_alive && pids+=("$(cat "$LAUNCHER_PIDFILE")")
  if [ "${#pids[@]}" -eq 0 ]; then
    log "not running"
  else
    # The node first (it flushes and exits), then the launcher if still there.
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for ((i = 0; i < 40; i++)); do
      local alive=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.5
    done
    for p in "${pids[@]}"; do
      if kill -0 "$p" 2>/dev/null; then
        log "pid $p still running after 20 s: SIGKILL"
        kill -KILL "$p" 2>/dev/null || true
      fi
    done
    log "stopped"
  fi
  rm -f "$PIDFILE" "$LAUNCHER_PIDFILE"
  if [ -n "$wipe" ]; then
    rm -rf "$ES_DATA"
    log "wiped $ES_DATA"
  fi
}

cmd_status() {
  if ! running; then
    echo "$ES_DIST: stopped"
    return 1
  fi
  local health
  if health=$(curl -fsS -m 5 "$URL/_cluster/health" 2>/dev/null); then
    echo "$ES_DIST $ES_VERSION: running (node pid $(cat "$PIDFILE" 2>/dev/null || echo -)) on $URL: $health"
  else
    echo "$ES_DIST $ES_VERSION: running (launcher pid $(cat "$LAUNCHER_PIDFILE")), not answering on $URL yet"
    return 1
  fi
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  wait) cmd_wait ;;
  stop) shift; cmd_stop "${1:-}" ;;
  status) cmd_status ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
