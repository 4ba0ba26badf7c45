#!/usr/bin/env bash
# Get a Beam Flink job-server jar for the Python SDK's FlinkRunner (--flink_job_server_jar).
#
# Usage: scripts/flink-job-server.sh fetch | path | flink-version | java | shaded
#   fetch          get the jar into $AMPEL_CACHE/flink-job-server/ (once), print its path
#   path           print the jar path if it is there (exit 1 otherwise)
#   flink-version  print the Flink version of that jar (pass it as --flink_version)
#   shaded         build (once) and print a self-contained job server: the assembled one's
#                  classes and dependencies in one jar (maven-shade-plugin, service files
#                  merged). `ampel-monitor submit --output-jar` needs it: Beam copies the
#                  job server jar into the job jar it writes, which Flink then runs alone.
#   java           print a Java 17+ launcher (pass it as --job_server_java_launcher when
#                  `java` on PATH is older: the Python FlinkRunner ignores JAVA_HOME)
#
# Two ways, tried in this order (FLINK_JOB_SERVER_SOURCE=auto|published|assembled):
#   published  the shaded org.apache.beam:beam-runners-flink-<flink>-job-server:<beam>
#              for the installed apache-beam and the newest Flink it publishes for
#              (mvn dependency:copy: just that one jar).
#   assembled  when that jar is not served by the Maven repository here (true for all
#              Beam Flink job-server jars at the time of writing): the unshaded
#              org.apache.beam:beam-runners-flink-<FLINK_ASSEMBLE_FLINK>:<FLINK_ASSEMBLE_BEAM>
#              with its runtime dependencies (mvn dependency:copy-dependencies) plus a
#              manifest-only jar (Main-Class FlinkJobServerDriver, Class-Path libs/...),
#              so `java -jar` works as with the shaded jar.
#
# Use with the Python SDK (embedded Flink mini cluster, Python workers in-process):
#   --runner=FlinkRunner --flink_master=[local] --environment_type=LOOPBACK
#   --flink_version="$(scripts/flink-job-server.sh flink-version)"
#   --flink_job_server_jar="$(scripts/flink-job-server.sh path)"
#
# Environment (defaults):
#   AMPEL_CACHE              $HOME/.cache/ampel-monitor
#   PYTHON                   .venv/bin/python
#   BEAM_VERSION             apache_beam.__version__ from $PYTHON
#   FLINK_VERSION            last of FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS from $PYTHON
#   FLINK_JOB_SERVER_SOURCE  auto
#   FLINK_ASSEMBLE_FLINK     1.19     (newest Beam Flink runner served here)
#   FLINK_ASSEMBLE_BEAM      2.62.0   (newest version of it whose dependencies are served)
#   MVN                      mvn
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

case "${1:-}" in
    fetch | path | flink-version | java | shaded) ;;
    -h | --help | help) usage 0 ;;
    *) usage ;;
esac

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AMPEL_CACHE:-$HOME/.cache/ampel-monitor}"
PYTHON="${PYTHON:-$repo_root/.venv/bin/python}"
MVN="${MVN:-mvn}"
SOURCE="${FLINK_JOB_SERVER_SOURCE:-auto}"
ASM_FLINK="${FLINK_ASSEMBLE_FLINK:-1.19}"
ASM_BEAM="${FLINK_ASSEMBLE_BEAM:-2.62.0}"
DIR="$CACHE/flink-job-server"

log() { echo "flink-job-server.sh: $*" >&2; }
die() { log "$*"; exit 1; }

py() {
    [[ -x "$PYTHON" ]] || die "python '$PYTHON' not found (set PYTHON, or BEAM_VERSION and FLINK_VERSION)"
    "$PYTHON" -c "$1" 2>/dev/null || die "could not read apache_beam with $PYTHON"
}

case "$SOURCE" in
    auto | published | assembled) ;;
    *) die "FLINK_JOB_SERVER_SOURCE must be auto, published or assembled" ;;
esac

# The published jar's coordinates (not needed for FLINK_JOB_SERVER_SOURCE=assembled).
PUB_JAR=""
if [[ "$SOURCE" != assembled ]]; then
    BEAM_VERSION="${BEAM_VERSION:-$(py 'import apache_beam; print(apache_beam.__version__)')}"
    FLINK_VERSION="${FLINK_VERSION:-$(py 'from apache_beam.options.pipeline_options import FlinkRunnerOptions as o; print(o.PUBLISHED_FLINK_VERSIONS[-1])')}"
    PUB_JAR="$DIR/beam-runners-flink-$FLINK_VERSION-job-server-$BEAM_VERSION.jar"
fi
ASM_DIR="$DIR/assembled-flink-$ASM_FLINK-beam-$ASM_BEAM"
ASM_JAR="$ASM_DIR/beam-runners-flink-$ASM_FLINK-job-server-$ASM_BEAM.jar"
SHADED_JAR="$DIR/beam-runners-flink-$ASM_FLINK-job-server-$ASM_BEAM-shaded.jar"

# Prints "<jar> <flink version>" of the jar in use, or fails.
current() {
    if [[ -n "$PUB_JAR" && -f "$PUB_JAR" ]]; then
        echo "$PUB_JAR $FLINK_VERSION"
        return 0
    fi
    if [[ "$SOURCE" != published && -f "$ASM_JAR" ]]; then
        echo "$ASM_JAR $ASM_FLINK"
        return 0
    fi
    return 1
}

java_major() {
    "$1" -XshowSettings:properties -version 2>&1 \
        | sed -n 's/^ *java\.specification\.version = //p' | sed 's/^1\.//'
}

# Flink 2.x job servers need Java 17+; Flink 1.19 runs on 11 and 17. Prefer `java` on
# PATH (what the Python FlinkRunner starts), else a JDK 17+ under /usr/lib/jvm.
select_java() {
    local java major
    for java in java ${JAVA_HOME:+"$JAVA_HOME/bin/java"} /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/*/bin/java; do
        command -v "$java" >/dev/null 2>&1 || continue
        major="$(java_major "$java")" || continue
        if [[ "${major:-0}" -ge 17 ]]; then
            command -v "$java"
            return 0
        fi
    done
    die "no Java 17+ found (set JAVA_HOME)"
}

fetch_published() {
    log "fetching org.apache.beam:beam-runners-flink-$FLINK_VERSION-job-server:$BEAM_VERSION"
    mkdir -p "$DIR"
    # dependency:copy fetches just this one (shaded) jar, not its dependency tree.
    (cd "$DIR" && "$MVN" -B -Dstyle.color=never dependency:copy \
        -Dartifact="org.apache.beam:beam-runners-flink-$FLINK_VERSION-job-server:$BEAM_VERSION:jar" \
        -DoutputDirectory="$DIR" -Dmdep.overWriteIfNewer=true) >"$DIR/mvn-published.log" 2>&1 \
        && [[ -f "$PUB_JAR" ]]
}

write_manifest_jar() {
    # $1: jar to write, $2: directory holding libs/. Main-Class + Class-Path (relative).
    local jar="$1" dir="$2" tmp cp
    tmp="$(mktemp -d)"
    cp="$(cd "$dir/libs" && ls -- *.jar | sed 's|^|libs/|' | tr '\n' ' ')"
    {
        echo "Manifest-Version: 1.0"
        echo "Main-Class: org.apache.beam.runners.flink.FlinkJobServerDriver"
        # Manifest lines are at most 72 bytes; continuation lines start with a space.
        echo "Class-Path: $cp" | fold -w 70 | sed '2,$s/^/ /'
        echo
    } > "$tmp/MANIFEST.MF"
    # slf4j-simple: warnings and errors only, to stderr (shown in the Python log).
    printf 'org.slf4j.simpleLogger.defaultLogLevel=warn\norg.slf4j.simpleLogger.logFile=System.err\n' \
        > "$tmp/simplelogger.properties"
    rm -f "$jar.tmp"
    (cd "$tmp" && jar cfm "$jar.tmp" MANIFEST.MF simplelogger.properties) \
        || die "could not write $jar (the JDK's jar tool is needed)"
    mv "$jar.tmp" "$jar"
    rm -rf "$tmp"
}

fetch_assembled() {
    local work="$ASM_DIR/fetch" slf4j binding
    log "assembling a job server from org.apache.beam:beam-runners-flink-$ASM_FLINK:$ASM_BEAM and its runtime dependencies"
    rm -rf "$ASM_DIR"
    mkdir -p "$work"
    cat > "$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ampel-monitor.local</groupId>
  <artifactId>flink-job-server-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.beam</groupId>
      <artifactId>beam-runners-flink-$ASM_FLINK</artifactId>
      <version>$ASM_BEAM</version>
    </dependency>
  </dependencies>
</project>
EOF
    (cd "$work" && "$MVN" -B -Dstyle.color=never dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$ASM_DIR/libs") > "$work/mvn.log" 2>&1 || {
        grep -E '^\[ERROR\]' "$work/mvn.log" | head -5 >&2
        die "maven could not resolve org.apache.beam:beam-runners-flink-$ASM_FLINK:$ASM_BEAM (log: $work/mvn.log)"
    }
    # An SLF4J binding for the slf4j-api that came along (the shaded jar has one too).
    slf4j="$(ls "$ASM_DIR/libs" | sed -n 's/^slf4j-api-\(.*\)\.jar$/\1/p' | head -1)"
    binding="org.slf4j:slf4j-simple:${slf4j:-1.7.30}"
    (cd "$work" && "$MVN" -B -Dstyle.color=never dependency:copy \
        -Dartifact="$binding" -DoutputDirectory="$ASM_DIR/libs") > "$work/mvn.log" 2>&1 \
        || die "maven could not fetch $binding (log: $work/mvn.log)"
    rm -rf "$work"
    write_manifest_jar "$ASM_JAR" "$ASM_DIR"
}

cmd_fetch() {
    local cur t0=$SECONDS
    if cur="$(current)"; then
        log "already fetched"
        echo "${cur% *}"
        return 0
    fi
    command -v "$MVN" >/dev/null || die "maven ('$MVN') not found"
    if [[ "$SOURCE" != assembled ]]; then
        if fetch_published; then
            log "fetched in $((SECONDS - t0)) s"
            cmd_path
            return 0
        fi
        log "org.apache.beam:beam-runners-flink-$FLINK_VERSION-job-server:$BEAM_VERSION is not served (see $DIR/mvn-published.log)"
        [[ "$SOURCE" == auto ]] || exit 1
    fi
    fetch_assembled
    log "assembled $(ls "$ASM_DIR/libs" | wc -l) jars ($(du -sh "$ASM_DIR/libs" | cut -f1)) in $((SECONDS - t0)) s"
    cmd_path
}

cmd_path() {
    local cur
    if cur="$(current)"; then
        echo "${cur% *}"
    else
        log "no Flink job-server jar yet (run: $0 fetch)"
        return 1
    fi
}

cmd_flink_version() {
    local cur
    cur="$(current)" || die "no Flink job-server jar yet (run: $0 fetch)"
    echo "${cur##* }"
}

cmd_shaded() {
    if [[ -f "$SHADED_JAR" ]]; then
        log "already built"
        echo "$SHADED_JAR"
        return 0
    fi
    command -v "$MVN" >/dev/null || die "maven ('$MVN') not found"
    local work="$DIR/shade" t0=$SECONDS
    rm -rf "$work"
    mkdir -p "$work"
    log "building a shaded job server from org.apache.beam:beam-runners-flink-$ASM_FLINK:$ASM_BEAM"
    cat > "$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ampel-monitor.local</groupId>
  <artifactId>flink-job-server-shaded</artifactId>
  <version>1</version>
  <packaging>jar</packaging>
  <properties><project.build.sourceEncoding>UTF-8</project.build.sourceEncoding></properties>
  <dependencies>
    <dependency>
      <groupId>org.apache.beam</groupId>
      <artifactId>beam-runners-flink-$ASM_FLINK</artifactId>
      <version>$ASM_BEAM</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>1.7.30</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-shade-plugin</artifactId>
        <version>3.6.0</version>
        <executions>
          <execution>
            <phase>package</phase>
            <goals><goal>shade</goal></goals>
            <configuration>
              <createDependencyReducedPom>false</createDependencyReducedPom>
              <filters>
                <filter>
                  <artifact>*:*</artifact>
                  <excludes>
                    <exclude>META-INF/*.SF</exclude>
                    <exclude>META-INF/*.DSA</exclude>
                    <exclude>META-INF/*.RSA</exclude>
                    <exclude>module-info.class</exclude>
                  </excludes>
                </filter>
              </filters>
              <transformers>
                <transformer implementation="org.apache.maven.plugins.shade.resource.ServicesResourceTransformer"/>
                <transformer implementation="org.apache.maven.plugins.shade.resource.ManifestResourceTransformer">
                  <mainClass>org.apache.beam.runners.flink.FlinkJobServerDriver</mainClass>
                </transformer>
              </transformers>
            </configuration>
          </execution>
        </executions>
      </plugin>
    </plugins>
  </build>
</project>
EOF
    (cd "$work" && "$MVN" -B -Dstyle.color=never package) > "$work/mvn.log" 2>&1 || {
        grep -E '^\[ERROR\]' "$work/mvn.log" | head -5 >&2
        die "maven could not build the shaded job server (log: $work/mvn.log)"
    }
    mv "$work/target/flink-job-server-shaded-1.jar" "$SHADED_JAR"
    rm -rf "$work"
    log "built $SHADED_JAR ($(du -sh "$SHADED_JAR" | cut -f1)) in $((SECONDS - t0)) s"
    echo "$SHADED_JAR"
}

case "$1" in
    fetch) cmd_fetch ;;
    shaded) cmd_shaded ;;
    path) cmd_path ;;
    flink-version) cmd_flink_version ;;
    java) select_java ;;
esac
