#!/usr/bin/env bash
# Derive the JSON schema that tests/deploy/test_k8s_manifests.py validates the
# FlinkDeployment of deploy/k8s against: the openAPIV3Schema of the Flink Kubernetes
# Operator's CRD (META-INF/fabric8/flinkdeployments.flink.apache.org-v1.yml in
# org.apache.flink:flink-kubernetes-operator-api, from Maven Central), made strict the way
# kubeconform's openapi2jsonschema does it: every object that lists its properties and
# does not keep unknown fields gets additionalProperties: false (a misspelt field fails),
# and x-kubernetes-int-or-string becomes integer-or-string; metadata is any object (the
# API server checks it as ObjectMeta).
#
# Usage: scripts/flink-crd-schema.sh [OUT]
#   OUT  default deploy/k8s/schemas/flinkdeployment-flink-v1beta1.json
#
# Environment (defaults):
#   AMPEL_CACHE              $HOME/.cache/ampel-monitor
#   FLINK_OPERATOR_VERSION   1.10.0   (supports flinkVersion v1_13 .. v1_20)
#   PYTHON                   .venv/bin/python
#   MVN                      mvn
set -euo pipefail

case "${1:-}" in
    -h | --help | help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
        exit 0 ;;
esac

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AMPEL_CACHE:-$HOME/.cache/ampel-monitor}"
VERSION="${FLINK_OPERATOR_VERSION:-1.10.0}"
PYTHON="${PYTHON:-$repo_root/.venv/bin/python}"
MVN="${MVN:-mvn}"
OUT="${1:-$repo_root/deploy/k8s/schemas/flinkdeployment-flink-v1beta1.json}"
DIR="$CACHE/flink-kubernetes-operator-$VERSION"
JAR="$DIR/flink-kubernetes-operator-api-$VERSION.jar"
CRD="META-INF/fabric8/flinkdeployments.flink.apache.org-v1.yml"

log() { echo "flink-crd-schema.sh: $*" >&2; }
die() { log "$*"; exit 1; }

if [[ ! -f "$JAR" ]]; then
    command -v "$MVN" >/dev/null || die "maven ('$MVN') not found"
    mkdir -p "$DIR"
    log "fetching org.apache.flink:flink-kubernetes-operator-api:$VERSION"
    (cd "$DIR" && "$MVN" -B -Dstyle.color=never dependency:copy \
        -Dartifact="org.apache.flink:flink-kubernetes-operator-api:$VERSION:jar" \
        -DoutputDirectory="$DIR") >"$DIR/mvn.log" 2>&1 \
        || die "maven could not fetch flink-kubernetes-operator-api:$VERSION (log: $DIR/mvn.log)"
fi

"$PYTHON" - "$JAR" "$CRD" "$OUT" "$VERSION" <<'PY'
import json
import sys
import zipfile

import yaml

jar, member, out, version = sys.argv[1:]
with zipfile.ZipFile(jar) as archive:
    crd = yaml.safe_load(archive.read(member))
(served,) = [v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage")]
schema = served["schema"]["openAPIV3Schema"]


def strict(node):
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: strict(v) for k, v in node.items()}
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["additionalProperties"] = False
    return node


document = strict(schema)
group = crd["spec"]["group"]
document["properties"]["apiVersion"] = {"enum": [f"{group}/{served['name']}"]}
document["properties"]["kind"] = {"enum": [crd["spec"]["names"]["kind"]]}
# the API server checks metadata itself (ObjectMeta); the CRD schema leaves it out
document["properties"]["metadata"] = {"type": "object"}
document["required"] = sorted(set(document.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
document = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$comment": (f"{crd['spec']['names']['kind']} {group}/{served['name']}: derived by scripts/flink-crd-schema.sh "
                 f"from {member} in org.apache.flink:flink-kubernetes-operator-api:{version}"),
    **document,
}
with open(out, "w", encoding="utf-8") as handle:
    json.dump(document, handle, sort_keys=True, separators=(",", ":"))
    handle.write("\n")
print(out)
PY
