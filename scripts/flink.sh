#!/usr/bin/env bash
# A standalone Apache Flink cluster on 127.0.0.1 (JobManager + one TaskManager) with the
# Python worker pool beside it, for the Beam FlinkRunner with --environment_type=EXTERNAL.
#
# The Flink distribution is assembled once from the apache-flink-libraries sdist (lib/,
# opt/, plugins/) and the apache-flink wheel (bin/, conf/), unpacked, not pip-installed.
# Its version matches the Beam Flink job server (scripts/flink-job-server.sh: 1.19).
#
# Usage: scripts/flink.sh COMMAND
#   fetch              download and assemble the distribution into $AMPEL_CACHE/flink-$FLINK_VERSION
#   start              fetch if needed, write the config, start the JobManager, the TaskManager
#                      and the worker pool, wait until the REST API reports the slots
#                      (a no-op success for the parts already running)
#   stop [--wipe]      stop all three; --wipe also deletes $FLINK_DATA (checkpoints, savepoints)
#   status             print what runs (exit 0 when all three do, 1 otherwise)
#   wait               wait until the REST API answers with a registered TaskManager ($FLINK_WAIT_S)
#   start-taskmanager  start the TaskManager (again, e.g. after it died) and wait for its slots
#   kill-taskmanager   SIGKILL the TaskManager (a failure drill: the job restarts from its
#                      last checkpoint once a TaskManager is back)
#   submit ARGS...     fetch the job-server jar, then `ampel-monitor submit` with it, the
#                      worker pool and ARGS (e.g. --flink-master 127.0.0.1:18081 --config CFG)
#   job-jar ARGS...    build the shaded job server, then `ampel-monitor submit --output-jar` with it
#                      and ARGS (e.g. --config CFG --output-jar job.jar --worker-pool 127.0.0.1:50000):
#                      the job as one jar for `flink run` or a FlinkDeployment (deploy/k8s)
#   run-jar JAR        run a job jar on this cluster, detached (bin/flink run -d); print the job id
#   rest-url           print the REST address (http://127.0.0.1:$FLINK_REST_PORT)
#   home               print the distribution directory
#
# Environment (defaults):
#   AMPEL_CACHE              $HOME/.cache/ampel-monitor
#   FLINK_VERSION            1.19.3
#   FLINK_DATA               $AMPEL_CACHE/flink-data  (conf/, log/, checkpoints/, savepoints/, pids)
#   FLINK_REST_PORT          18081   (REST API and web UI)
#   FLINK_RPC_PORT           16123   (JobManager RPC; the other ports are picked at random)
#   FLINK_WORKER_POOL_PORT   15100   (Python worker pool: --environment_config=127.0.0.1:PORT)
#   FLINK_SLOTS              2       (task slots of the TaskManager)
#   FLINK_CHECKPOINT_INTERVAL  10s   (cluster default; a submitted job may set its own)
#   FLINK_RESTART_ATTEMPTS   20      (fixed-delay restart strategy)
#   FLINK_RESTART_DELAY      2s
#   FLINK_JM_MEMORY          1024m   (jobmanager.memory.process.size)
#   FLINK_TM_MEMORY          1600m   (taskmanager.memory.process.size)
#   FLINK_TM_JAVA_OPTS       (none)  (more JVM options of the TaskManager, e.g. -XX:TieredStopAtLevel=1)
#   FLINK_WAIT_S             120
#   PYTHON                   .venv/bin/python  (runs the worker pool; the project must be installed)
#   JAVA_HOME                from `java` on PATH (Flink 1.19 runs on Java 11 and 17)
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AMPEL_CACHE:-$HOME/.cache/ampel-monitor}"
FLINK_VERSION="${FLINK_VERSION:-1.19.3}"
FLINK_DATA="${FLINK_DATA:-$CACHE/flink-data}"
FLINK_REST_PORT="${FLINK_REST_PORT:-18081}"
FLINK_RPC_PORT="${FLINK_RPC_PORT:-16123}"
FLINK_WORKER_POOL_PORT="${FLINK_WORKER_POOL_PORT:-15100}"
FLINK_SLOTS="${FLINK_SLOTS:-2}"
FLINK_CHECKPOINT_INTERVAL="${FLINK_CHECKPOINT_INTERVAL:-10s}"
FLINK_RESTART_ATTEMPTS="${FLINK_RESTART_ATTEMPTS:-20}"
FLINK_RESTART_DELAY="${FLINK_RESTART_DELAY:-2s}"
FLINK_JM_MEMORY="${FLINK_JM_MEMORY:-1024m}"
FLINK_TM_MEMORY="${FLINK_TM_MEMORY:-1600m}"
FLINK_WAIT_S="${FLINK_WAIT_S:-120}"
PYTHON="${PYTHON:-$repo_root/.venv/bin/python}"

FLINK_HOME="$CACHE/flink-$FLINK_VERSION"
STAMP="$FLINK_HOME/.assembled"
CONF="$FLINK_DATA/conf"
LOGS="$FLINK_DATA/log"
REST="http://127.0.0.1:$FLINK_REST_PORT"
POOL_PID="$FLINK_DATA/worker-pool.pid"

log() { echo "flink.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# ----------------------------------------------------------------------------- fetch
cmd_fetch() {
    if [[ -f "$STAMP" ]]; then
        log "flink $FLINK_VERSION already assembled ($FLINK_HOME)"
        return 0
    fi
    [[ -x "$PYTHON" ]] || die "python '$PYTHON' not found (run: make install, or set PYTHON)"
    local work="$CACHE/flink-$FLINK_VERSION.fetch" t0=$SECONDS
    rm -rf "$work" "$FLINK_HOME"
    mkdir -p "$work"
    log "downloading apache-flink-libraries $FLINK_VERSION and apache-flink $FLINK_VERSION (not installed)"
    # The libraries come as an sdist holding the jars; the wheel holds bin/ and conf/
    # (any platform's wheel has the same scripts).
    "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: \
        -d "$work" "apache-flink-libraries==$FLINK_VERSION" >"$work/pip.log" 2>&1 \
        || { tail -5 "$work/pip.log" >&2; die "could not download apache-flink-libraries==$FLINK_VERSION"; }
    "$PYTHON" -m pip download --quiet --no-deps --only-binary :all: --python-version 3.11 \
        --platform manylinux2014_x86_64 -d "$work" "apache-flink==$FLINK_VERSION" >>"$work/pip.log" 2>&1 \
        || { tail -5 "$work/pip.log" >&2; die "could not download apache-flink==$FLINK_VERSION"; }
    tar -xzf "$work"/apache-flink-libraries-"$FLINK_VERSION".tar.gz -C "$work"
    "$PYTHON" -m zipfile -e "$work"/apache_flink-"$FLINK_VERSION"-*.whl "$work/wheel"
    local libs="$work/apache-flink-libraries-$FLINK_VERSION/deps" staging="$FLINK_HOME.tmp"
    rm -rf "$staging"
    mkdir -p "$staging/log"
    cp -r "$libs/lib" "$libs/opt" "$libs/plugins" "$staging/"
    cp -r "$work/wheel/pyflink/bin" "$work/wheel/pyflink/conf" "$staging/"
    cp "$libs/bin/bash-java-utils.jar" "$staging/bin/"
    chmod +x "$staging"/bin/*.sh "$staging/bin/flink"
    [[ -f "$staging/lib/flink-dist-$FLINK_VERSION.jar" ]] || die "no flink-dist jar in apache-flink-libraries $FLINK_VERSION"
    echo "$FLINK_VERSION" > "$staging/.assembled"
    mv "$staging" "$FLINK_HOME"
    rm -rf "$work"
    log "assembled Flink $FLINK_VERSION ($(du -sh "$FLINK_HOME" | cut -f1)) in $((SECONDS - t0)) s into $FLINK_HOME"
}

# ----------------------------------------------------------------------------- config
java_opts() {
    # The module flags Flink's own config.yaml sets for Java 17.
    sed -n 's/^ *all: \(--add-.*\)$/\1/p' "$FLINK_HOME/conf/config.yaml" | head -1
}

write_config() {
    mkdir -p "$CONF" "$LOGS" "$FLINK_DATA/checkpoints" "$FLINK_DATA/savepoints" "$FLINK_DATA/tmp"
    cat > "$CONF/config.yaml.tmp" <<EOF
# Written by scripts/flink.sh start (rewritten on every start).
env:
  java:
    opts:
      all: $(java_opts)
$(if [[ -n "${FLINK_TM_JAVA_OPTS:-}" ]]; then echo "      taskmanager: \"$FLINK_TM_JAVA_OPTS\""; fi)
jobmanager:
  bind-host: 127.0.0.1
  rpc: {address: 127.0.0.1, port: $FLINK_RPC_PORT}
  memory: {process: {size: $FLINK_JM_MEMORY}}
  execution: {failover-strategy: region}
taskmanager:
  bind-host: 127.0.0.1
  host: 127.0.0.1
  numberOfTaskSlots: $FLINK_SLOTS
  memory: {process: {size: $FLINK_TM_MEMORY}, managed: {fraction: 0.1}}
rest: {address: 127.0.0.1, bind-address: 127.0.0.1, port: $FLINK_REST_PORT}
blob: {server: {port: "0"}}
parallelism: {default: 1}
io: {tmp: {dirs: $FLINK_DATA/tmp}}
state:
  backend: {type: hashmap}
  checkpoints: {dir: file://$FLINK_DATA/checkpoints, num-retained: 3}
  savepoints: {dir: file://$FLINK_DATA/savepoints}
execution:
  checkpointing:
    interval: $FLINK_CHECKPOINT_INTERVAL
    mode: EXACTLY_ONCE
    externalized-checkpoint-retention: RETAIN_ON_CANCELLATION
restart-strategy:
  type: fixed-delay
  fixed-delay: {attempts: $FLINK_RESTART_ATTEMPTS, delay: $FLINK_RESTART_DELAY}
# A killed TaskManager is noticed within seconds, not the default 50 s.
heartbeat: {interval: 2000, timeout: 10000}
web: {submit: {enable: false}, cancel: {enable: true}}
EOF
    mv "$CONF/config.yaml.tmp" "$CONF/config.yaml"
    cp "$FLINK_HOME/conf/log4j.properties" "$FLINK_HOME/conf/log4j-console.properties" "$CONF/"
    cp "$FLINK_HOME/conf/log4j-cli.properties" "$CONF/"
}

# ----------------------------------------------------------------------------- processes
daemon() {
    # $1: jobmanager | taskmanager, $2: start | stop
    FLINK_CONF_DIR="$CONF" FLINK_LOG_DIR="$LOGS" FLINK_PID_DIR="$FLINK_DATA" \
        bash "$FLINK_HOME/bin/$1.sh" "$2" >>"$LOGS/daemon.out" 2>&1
}

pid_of() {
    # $1: standalonesession | taskexecutor. Prints the pid of the live process, if any.
    local file pid
    file="$(ls "$FLINK_DATA"/flink-*-"$1".pid 2>/dev/null | head -1)" || true
    [[ -n "$file" && -f "$file" ]] || return 1
    pid="$(tail -1 "$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "$CONF" || return 1
    echo "$pid"
}

pool_pid() {
    [[ -f "$POOL_PID" ]] || return 1
    local pid
    pid="$(cat "$POOL_PID")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'pipelines.worker_pool' || return 1
    echo "$pid"
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

clear_pidfile() {
    rm -f "$FLINK_DATA"/flink-*-"$1".pid
}

start_jobmanager() {
    local pid
    if pid="$(pid_of standalonesession)"; then
        log "JobManager already running (pid $pid)"
        return 0
    fi
    local port
    for port in "$FLINK_REST_PORT" "$FLINK_RPC_PORT"; do
        port_free "$port" || die "port 127.0.0.1:$port is in use (another Flink? set FLINK_REST_PORT / FLINK_RPC_PORT)"
    done
    clear_pidfile standalonesession
    log "starting JobManager (REST $REST, RPC 127.0.0.1:$FLINK_RPC_PORT, data $FLINK_DATA)"
    daemon jobmanager start
}

start_taskmanager() {
    local pid
    if pid="$(pid_of taskexecutor)"; then
        log "TaskManager already running (pid $pid)"
        return 0
    fi
    clear_pidfile taskexecutor
    log "starting TaskManager ($FLINK_SLOTS slots)"
    daemon taskmanager start
}

start_pool() {
    local pid
    if pid="$(pool_pid)"; then
        log "worker pool already running (pid $pid)"
        return 0
    fi
    [[ -x "$PYTHON" ]] || die "python '$PYTHON' not found (run: make install, or set PYTHON)"
    port_free "$FLINK_WORKER_POOL_PORT" || die "port 127.0.0.1:$FLINK_WORKER_POOL_PORT is in use (set FLINK_WORKER_POOL_PORT)"
    log "starting the Python worker pool on 127.0.0.1:$FLINK_WORKER_POOL_PORT ($PYTHON)"
    (
        cd "$FLINK_DATA"
        nohup "$PYTHON" -m pipelines.worker_pool --host 127.0.0.1 --port "$FLINK_WORKER_POOL_PORT" \
            >"$LOGS/worker-pool.log" 2>&1 </dev/null &
        echo $! >"$POOL_PID"
    )
}

stop_pid() {
    # $1: pid, $2: name
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "$2 did not stop within 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

taskmanagers() {
    # Prints the number of registered TaskManagers, or fails if the REST API does not answer.
    local body
    body="$(curl -sf --max-time 5 "$REST/overview")" || return 1
    echo "$body" | sed -n 's/.*"taskmanagers":\([0-9]*\).*/\1/p'
}

cmd_wait() {
    local deadline=$((SECONDS + FLINK_WAIT_S)) n
    while true; do
        n="$(taskmanagers || true)"
        # the pool listens once it has imported the pipeline's modules (a few seconds)
        if [[ -n "$n" && "$n" -ge 1 ]] && pool_pid >/dev/null && ! port_free "$FLINK_WORKER_POOL_PORT"; then
            log "ready: $REST ($n TaskManager(s)), worker pool on 127.0.0.1:$FLINK_WORKER_POOL_PORT"
            return 0
        fi
        if ! pid_of standalonesession >/dev/null; then
            log "the JobManager is not running; last lines of its log:"
            tail -n 20 "$LOGS"/flink-*-standalonesession-*.log >&2 2>/dev/null || true
            return 1
        fi
        if ! pool_pid >/dev/null; then
            log "the worker pool is not running; last lines of its log:"
            tail -n 20 "$LOGS/worker-pool.log" >&2 2>/dev/null || true
            return 1
        fi
        ((SECONDS < deadline)) || die "Flink at $REST not ready after ${FLINK_WAIT_S}s (logs: $LOGS)"
        sleep 1
    done
}

cmd_start() {
    command -v curl >/dev/null || die "curl not found"
    command -v java >/dev/null || [[ -n "${JAVA_HOME:-}" ]] || die "java not found (set JAVA_HOME)"
    cmd_fetch
    if ! pid_of standalonesession >/dev/null; then
        write_config
    fi
    start_jobmanager
    start_taskmanager
    start_pool
    cmd_wait
}

wait_taskmanagers() {
    # $1: wanted count
    local deadline=$((SECONDS + FLINK_WAIT_S)) n
    while true; do
        n="$(taskmanagers || true)"
        [[ "$n" == "$1" ]] && return 0
        ((SECONDS < deadline)) || die "expected $1 TaskManager(s) at $REST, found ${n:-none} after ${FLINK_WAIT_S}s"
        sleep 0.5
    done
}

cmd_start_taskmanager() {
    pid_of standalonesession >/dev/null || die "the JobManager is not running (run: $0 start)"
    start_taskmanager
    wait_taskmanagers 1
    log "TaskManager registered"
}

cmd_kill_taskmanager() {
    local pid
    pid="$(pid_of taskexecutor)" || die "no TaskManager is running"
    log "killing the TaskManager (pid $pid) with SIGKILL"
    kill -KILL "$pid"
    clear_pidfile taskexecutor
}

cmd_stop() {
    local wipe=0 pid
    case "${1:-}" in
        "") ;;
        --wipe) wipe=1 ;;
        *) usage ;;
    esac
    if pid="$(pid_of taskexecutor)"; then
        log "stopping TaskManager (pid $pid)"
        stop_pid "$pid" TaskManager
    fi
    if pid="$(pid_of standalonesession)"; then
        log "stopping JobManager (pid $pid)"
        stop_pid "$pid" JobManager
    fi
    if pid="$(pool_pid)"; then
        log "stopping worker pool (pid $pid)"
        stop_pid "$pid" "worker pool"
    fi
    rm -f "$FLINK_DATA"/flink-*.pid "$POOL_PID"
    if ((wipe)) && [[ -d "$FLINK_DATA" ]]; then
        [[ -d "$CONF" || -d "$LOGS" ]] \
            || die "refusing to wipe $FLINK_DATA: it does not look like a flink.sh data dir"
        log "wiping $FLINK_DATA"
        rm -rf "$FLINK_DATA"
    fi
}

cmd_status() {
    local pid all=0 part
    for part in standalonesession:JobManager taskexecutor:TaskManager; do
        if pid="$(pid_of "${part%%:*}")"; then
            echo "${part##*:}: running (pid $pid)"
        else
            echo "${part##*:}: stopped"
            all=1
        fi
    done
    if pid="$(pool_pid)"; then
        echo "worker pool: running (pid $pid, 127.0.0.1:$FLINK_WORKER_POOL_PORT)"
    else
        echo "worker pool: stopped"
        all=1
    fi
    echo "REST: $REST"
    return $all
}

cmd_submit() {
    local jar version
    jar="$(bash "$repo_root/scripts/flink-job-server.sh" fetch)"
    version="$(bash "$repo_root/scripts/flink-job-server.sh" flink-version)"
    exec "$PYTHON" -m ampel_monitor.cli submit --job-server-jar "$jar" --flink-version "$version" \
        --worker-pool "127.0.0.1:$FLINK_WORKER_POOL_PORT" "$@"
}

cmd_job_jar() {
    local jar
    jar="$(bash "$repo_root/scripts/flink-job-server.sh" shaded)"
    exec "$PYTHON" -m ampel_monitor.cli submit --job-server-jar "$jar" --flink-version 1.19 \
        --worker-pool "127.0.0.1:$FLINK_WORKER_POOL_PORT" "$@"
}

cmd_run_jar() {
    [[ -f "${1:-}" ]] || die "run-jar: no such jar '${1:-}'"
    pid_of standalonesession >/dev/null || die "the JobManager is not running (run: $0 start)"
    local out
    out="$(FLINK_CONF_DIR="$CONF" FLINK_LOG_DIR="$LOGS" "$FLINK_HOME/bin/flink" run -d "$1" 2>&1)" || {
        echo "$out" | grep -E 'Exception|Caused by|Error' | head -5 >&2
        die "flink run -d $1 failed"
    }
    echo "$out" | sed -n 's/^Job has been submitted with JobID \([0-9a-f]*\)$/\1/p'
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    job-jar) shift; cmd_job_jar "$@" ;;
    run-jar) shift; cmd_run_jar "$@" ;;
    start) cmd_start ;;
    stop) shift; cmd_stop "$@" ;;
    status) cmd_status ;;
    wait) cmd_wait ;;
    start-taskmanager) cmd_start_taskmanager ;;
    kill-taskmanager) cmd_kill_taskmanager ;;
    submit) shift; cmd_submit "$@" ;;
    rest-url) echo "$REST" ;;
    home) echo "$FLINK_HOME" ;;
    -h | --help | help) usage 0 ;;
    *) usage ;;
esac
