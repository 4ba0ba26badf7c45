#!/usr/bin/env bash
# Create (or reuse) the virtualenv holding the peer drift libraries (Evidently, NannyML)
# for benchmarks/peers/drift_peers.py, and print its python path on the last line.
#
# Idempotent: a stamp file in the venv holds the sha256 of the requirements file;
# when it matches, nothing is done. Location:
#   ${AMPEL_CACHE:-$HOME/.cache/ampel-monitor}/bench-peers-venv
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="$repo_root/benchmarks/peers/requirements.txt"
venv="${AMPEL_CACHE:-$HOME/.cache/ampel-monitor}/bench-peers-venv"
stamp="$venv/.requirements.sha256"
py="$venv/bin/python"

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$py" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "bench-peers-venv: up to date ($venv)" >&2
else
    if [[ ! -x "$py" ]]; then
        echo "bench-peers-venv: creating $venv" >&2
        rm -rf "$venv"
        mkdir -p "$(dirname "$venv")"
        python3.11 -m venv "$venv"
    fi
    rm -f "$stamp"
    echo "bench-peers-venv: installing $req" >&2
    "$py" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
fi
echo "$py"
