#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, broker+controller) for local runs and tests.
# No Kafka distribution is needed: the broker jars (org.apache.kafka:kafka_2.13) and
# their runtime dependencies are fetched with Maven.
#
# Usage: scripts/kafka.sh fetch | start | stop [--wipe] | status | wait
#   fetch   download the jars into $AMPEL_CACHE/kafka-$KAFKA_VERSION/libs (once)
#   start   fetch if needed, format storage once, start the broker, wait until ready
#           (a no-op success when it is already running)
#   wait    wait until the broker answers an ApiVersions request (KAFKA_WAIT_S)
#   stop    SIGTERM, up to 30 s, then SIGKILL; --wipe also deletes $KAFKA_DATA
#   status  print "running ..." (exit 0) or "stopped" (exit 1)
#   libs    print the jar directory (class path: "$(scripts/kafka.sh libs)/*")
#   run-class CLASS [ARGS...]   run a Kafka command-line class with quiet logging, e.g.
#           scripts/kafka.sh run-class org.apache.kafka.tools.ConsoleProducer \
#               --bootstrap-server 127.0.0.1:19092 --topic t
#
# Environment (defaults):
#   AMPEL_CACHE            $HOME/.cache/ampel-monitor
#   KAFKA_VERSION          4.1.1
#   KAFKA_PORT             19092   (PLAINTEXT, 127.0.0.1)
#   KAFKA_CONTROLLER_PORT  19093   (CONTROLLER, 127.0.0.1)
#   KAFKA_DATA             $AMPEL_CACHE/kafka-data   (server.properties, logs/, broker.log, pid)
#   KAFKA_WAIT_S           60
#   KAFKA_HEAP_OPTS        -Xmx512m -Xms256m
#   JAVA                   java    (Kafka 4 brokers need Java 17+)
#   MVN                    mvn
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

CACHE="${AMPEL_CACHE:-$HOME/.cache/ampel-monitor}"
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_DATA="${KAFKA_DATA:-$CACHE/kafka-data}"
KAFKA_WAIT_S="${KAFKA_WAIT_S:-60}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
JAVA="${JAVA:-java}"
MVN="${MVN:-mvn}"

HOME_DIR="$CACHE/kafka-$KAFKA_VERSION"
LIBS="$HOME_DIR/libs"
STAMP="$HOME_DIR/.fetched"
LOG4J_BROKER="$HOME_DIR/log4j2-broker.properties"
LOG4J_TOOLS="$HOME_DIR/log4j2-tools.properties"
PIDFILE="$KAFKA_DATA/kafka.pid"
PROPS="$KAFKA_DATA/server.properties"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

log() { echo "kafka.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# ----------------------------------------------------------------------------- fetch
write_log4j_configs() {
    # Broker: INFO to $KAFKA_DATA/broker.log (path given as -Dkafka.logs.dir at start),
    # with the chattiest loggers turned down.
    cat > "$LOG4J_BROKER.tmp" <<'EOF'
status = warn
name = ampel-kafka-broker
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/broker.log
appender.file.filePattern = ${sys:kafka.logs.dir}/broker.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.controller.name = kafka.controller
logger.controller.level = warn
logger.statechange.name = state.change.logger
logger.statechange.level = warn
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = warn
logger.clients.name = org.apache.kafka.clients
logger.clients.level = warn
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = warn
logger.appinfo.name = org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level = warn
EOF
    mv "$LOG4J_BROKER.tmp" "$LOG4J_BROKER"
    # Command-line tools (storage format, readiness probe, console clients): errors only.
    cat > "$LOG4J_TOOLS.tmp" <<'EOF'
status = warn
name = ampel-kafka-tools
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = error
rootLogger.appenderRef.err.ref = STDERR
EOF
    mv "$LOG4J_TOOLS.tmp" "$LOG4J_TOOLS"
}

cmd_fetch() {
    if [[ -f "$STAMP" ]]; then
        log "kafka $KAFKA_VERSION already fetched ($LIBS)"
        return 0
    fi
    command -v "$MVN" >/dev/null || die "maven ('$MVN') not found"
    mkdir -p "$HOME_DIR"
    local work="$HOME_DIR/fetch" t0=$SECONDS
    rm -rf "$work" "$LIBS.tmp"
    mkdir -p "$work"
    # kafka-tools brings the console clients and BrokerApiVersionsCommand; its Kafka
    # Connect dependencies (Jetty, Jersey) are not needed here.
    cat > "$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ampel-monitor.local</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
        <exclusion><groupId>com.fasterxml.jackson.jakarta.rs</groupId><artifactId>*</artifactId></exclusion>
      </exclusions>
    </dependency>
  </dependencies>
</project>
EOF
    log "fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and runtime dependencies"
    (cd "$work" && "$MVN" -B -Dstyle.color=never dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp") > "$work/mvn.log" 2>&1 || {
        grep -E '^\[ERROR\]' "$work/mvn.log" | head -5 >&2
        die "maven could not resolve kafka_2.13:$KAFKA_VERSION (set KAFKA_VERSION to another 4.x release; log: $work/mvn.log)"
    }

    # SLF4J binding matching the slf4j-api and log4j-core versions Kafka brought along
    # (Kafka 4.x still uses slf4j-api 1.7 -> log4j-slf4j-impl; 2.x -> log4j-slf4j2-impl).
    local log4j slf4j binding
    log4j="$(ls "$LIBS.tmp" | sed -n 's/^log4j-core-\(.*\)\.jar$/\1/p' | head -1)"
    slf4j="$(ls "$LIBS.tmp" | sed -n 's/^slf4j-api-\(.*\)\.jar$/\1/p' | head -1)"
    [[ -n "$log4j" ]] || die "no log4j-core among the kafka dependencies (unexpected for Kafka 4)"
    case "$slf4j" in
        1.*) binding="log4j-slf4j-impl" ;;
        *) binding="log4j-slf4j2-impl" ;;
    esac
    if ! compgen -G "$LIBS.tmp/$binding-*.jar" >/dev/null; then
        log "adding org.apache.logging.log4j:$binding:$log4j (slf4j-api $slf4j)"
        (cd "$work" && "$MVN" -B -Dstyle.color=never dependency:copy \
            -Dartifact="org.apache.logging.log4j:$binding:$log4j" \
            -DoutputDirectory="$LIBS.tmp" -Dmdep.overWriteIfNewer=true) > "$work/mvn.log" 2>&1 \
            || die "maven could not fetch $binding:$log4j (log: $work/mvn.log)"
    fi
    rm -rf "$LIBS"
    mv "$LIBS.tmp" "$LIBS"
    rm -rf "$work"
    write_log4j_configs
    echo "$KAFKA_VERSION" > "$STAMP"
    log "fetched $(ls "$LIBS" | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $((SECONDS - t0)) s into $LIBS"
}

# ----------------------------------------------------------------------------- helpers
running_pid() {
    # Prints the broker pid and succeeds when the pid file names a live kafka.Kafka.
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
    echo "$pid"
}

tool() {
    # Runs a Kafka command-line class with quiet logging.
    "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="$LOG4J_TOOLS" -cp "$LIBS/*" "$@"
}

broker_ready() {
    timeout 20 "$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="$LOG4J_TOOLS" -cp "$LIBS/*" \
        org.apache.kafka.tools.BrokerApiVersionsCommand \
        --bootstrap-server "$BOOTSTRAP" --command-config "$HOME_DIR/probe.properties" \
        >/dev/null 2>&1
}

write_server_properties() {
    cat > "$PROPS.tmp" <<EOF
# Written by scripts/kafka.sh start (rewritten on every start).
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# Static quorum of one voter (no --standalone format needed).
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
log.dirs=$KAFKA_DATA/logs
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Retention is judged on record timestamps: keep everything (replays of old events).
log.retention.ms=-1
log.retention.bytes=-1
EOF
    mv "$PROPS.tmp" "$PROPS"
    printf 'request.timeout.ms=3000\ndefault.api.timeout.ms=3000\n' > "$HOME_DIR/probe.properties"
}

# ----------------------------------------------------------------------------- commands
cmd_wait() {
    [[ -f "$STAMP" ]] || die "kafka $KAFKA_VERSION not fetched (run: $0 fetch)"
    [[ -f "$HOME_DIR/probe.properties" ]] \
        || printf 'request.timeout.ms=3000\ndefault.api.timeout.ms=3000\n' > "$HOME_DIR/probe.properties"
    local deadline=$((SECONDS + KAFKA_WAIT_S))
    while true; do
        if broker_ready; then
            log "broker ready on $BOOTSTRAP"
            return 0
        fi
        if [[ -f "$PIDFILE" ]] && ! running_pid >/dev/null; then
            log "broker process exited; last lines of $KAFKA_DATA/broker.log and broker.out:"
            tail -n 20 "$KAFKA_DATA/broker.log" >&2 2>/dev/null || true
            tail -n 20 "$KAFKA_DATA/broker.out" >&2 2>/dev/null || true
            return 1
        fi
        if ((SECONDS >= deadline)); then
            die "broker on $BOOTSTRAP not ready after ${KAFKA_WAIT_S}s (see $KAFKA_DATA/broker.log)"
        fi
        sleep 1
    done
}

cmd_start() {
    local pid
    if pid="$(running_pid)"; then
        log "already running (pid $pid)"
        cmd_wait
        return 0
    fi
    command -v "$JAVA" >/dev/null || die "java ('$JAVA') not found"
    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "port 127.0.0.1:$port is already in use (another broker? set KAFKA_PORT / KAFKA_CONTROLLER_PORT)"
        fi
    done
    cmd_fetch
    mkdir -p "$KAFKA_DATA"
    rm -f "$PIDFILE"
    write_server_properties
    if [[ ! -f "$KAFKA_DATA/logs/meta.properties" ]]; then
        local cluster_id
        cluster_id="$(tool kafka.tools.StorageTool random-uuid)"
        log "formatting storage in $KAFKA_DATA/logs (cluster id $cluster_id)"
        tool kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" >/dev/null
    fi
    log "starting broker on $BOOTSTRAP (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT, data $KAFKA_DATA)"
    # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of JVM flags
    nohup "$JAVA" $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true \
        -Dkafka.logs.dir="$KAFKA_DATA" -Dlog4j2.configurationFile="$LOG4J_BROKER" \
        -cp "$LIBS/*" kafka.Kafka "$PROPS" \
        > "$KAFKA_DATA/broker.out" 2>&1 < /dev/null &
    echo $! > "$PIDFILE"
    cmd_wait
}

cmd_stop() {
    local wipe=0 pid
    case "${1:-}" in
        "") ;;
        --wipe) wipe=1 ;;
        *) usage ;;
    esac
    if pid="$(running_pid)"; then
        log "stopping broker (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 300; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "broker did not stop within 30 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    else
        log "not running"
    fi
    rm -f "$PIDFILE"
    if ((wipe)) && [[ -d "$KAFKA_DATA" ]]; then
        # Only delete a directory this script set up.
        [[ -f "$PROPS" || -d "$KAFKA_DATA/logs" ]] \
            || die "refusing to wipe $KAFKA_DATA: it does not look like a kafka.sh data dir"
        log "wiping $KAFKA_DATA"
        rm -rf "$KAFKA_DATA"
    fi
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        echo "running (pid $pid, $BOOTSTRAP, data $KAFKA_DATA)"
        return 0
    fi
    echo "stopped"
    return 1
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    wait) cmd_wait ;;
    stop) shift; cmd_stop "$@" ;;
    status) cmd_status ;;
    libs) echo "$LIBS" ;;
    run-class)
        shift
        [[ $# -ge 1 ]] || usage
        [[ -f "$STAMP" ]] || die "kafka $KAFKA_VERSION not fetched (run: $0 fetch)"
        tool "$@"
        ;;
    -h | --help | help) usage 0 ;;
    *) usage ;;
esac
