#!/usr/bin/env bash
# Build Beam's Prism runner (a Go binary) for the installed apache-beam version.
#
# Usage: scripts/prism.sh build | path
#   build   go install github.com/apache/beam/sdks/v2/go/cmd/prism@v<beam version>
#           into $AMPEL_CACHE/prism-<version>/ (once), print the binary path
#   path    print the binary path if it is built (exit 1 otherwise)
#
# Use it with the Python SDK:
#   --runner=PrismRunner --prism_location="$(scripts/prism.sh path)"
# A local --prism_location is used as is; nothing is downloaded.
#
# Environment (defaults):
#   AMPEL_CACHE   $HOME/.cache/ampel-monitor   (binary, GOPATH, module and build caches)
#   PYTHON        .venv/bin/python             (reads apache_beam.__version__)
#   BEAM_VERSION  from $PYTHON                 (override to build another version)
#   GO            go on PATH, else /usr/local/go/bin/go
#   PRISM_KEEP_GO_CACHES  1 keeps $AMPEL_CACHE/go (module + build caches, ~1.5 GB) after a
#                 successful build; by default it is deleted (the binary is self-contained)
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

case "${1:-}" in
    build | path) ;;
    -h | --help | help) usage 0 ;;
    *) usage ;;
esac

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AMPEL_CACHE:-$HOME/.cache/ampel-monitor}"
PYTHON="${PYTHON:-$repo_root/.venv/bin/python}"

log() { echo "prism.sh: $*" >&2; }
die() { log "$*"; exit 1; }

beam_version() {
    if [[ -n "${BEAM_VERSION:-}" ]]; then
        echo "$BEAM_VERSION"
        return
    fi
    [[ -x "$PYTHON" ]] || die "python '$PYTHON' not found (set PYTHON or BEAM_VERSION)"
    "$PYTHON" -c 'import apache_beam; print(apache_beam.__version__)' 2>/dev/null \
        || die "could not import apache_beam with $PYTHON (set PYTHON or BEAM_VERSION)"
}

find_go() {
    if [[ -n "${GO:-}" ]]; then
        echo "$GO"
    elif command -v go >/dev/null; then
        command -v go
    elif [[ -x /usr/local/go/bin/go ]]; then
        echo /usr/local/go/bin/go
    else
        die "Go toolchain not found (set GO)"
    fi
}

VERSION="$(beam_version)"
case "$VERSION" in
    *.dev* | *rc*) die "apache-beam $VERSION is not a release; set BEAM_VERSION to a released version" ;;
esac
BIN_DIR="$CACHE/prism-$VERSION"
BIN="$BIN_DIR/prism"

cmd_build() {
    if [[ -x "$BIN" ]]; then
        log "prism $VERSION already built"
        echo "$BIN"
        return 0
    fi
    local go t0=$SECONDS
    go="$(find_go)"
    mkdir -p "$BIN_DIR" "$CACHE/go"
    log "building prism v$VERSION with $("$go" version) (first build: a few minutes)"
    # Everything Go writes stays under the cache; -modcacherw keeps the module cache
    # deletable with rm -rf. Run from the cache dir so no go.mod around us is picked up.
    (
        cd "$CACHE"
        export GOBIN="$BIN_DIR" GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/mod" \
            GOCACHE="$CACHE/go/cache" GOFLAGS="-modcacherw" GO111MODULE=on GOWORK=off CGO_ENABLED=0
        "$go" install -trimpath -ldflags="-s -w" "github.com/apache/beam/sdks/v2/go/cmd/prism@v$VERSION"
    ) || die "go install of prism v$VERSION failed"
    [[ -x "$BIN" ]] || die "go install finished but $BIN is missing"
    if [[ "${PRISM_KEEP_GO_CACHES:-0}" != 1 ]]; then
        rm -rf "$CACHE/go"
    fi
    log "built in $((SECONDS - t0)) s"
    echo "$BIN"
}

cmd_path() {
    if [[ -x "$BIN" ]]; then
        echo "$BIN"
    else
        log "prism $VERSION not built (run: $0 build)"
        return 1
    fi
}

case "${1:-}" in
    build) cmd_build ;;
    path) cmd_path ;;
    -h | --help | help) usage 0 ;;
    *) usage ;;
esac
