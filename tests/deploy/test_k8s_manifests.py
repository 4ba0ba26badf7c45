"""deploy/k8s validated without a cluster: built-in kinds and pod templates against the
Kubernetes schemas (kubernetes-validate, strict), the FlinkDeployment against the Flink
Kubernetes Operator's CRD schema (deploy/k8s/schemas, strict), and what the deployment
must say (savepoint upgrades, state directories on the mounted volume, the sidecar)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMA = K8S / "schemas" / "flinkdeployment-flink-v1beta1.json"
KUBERNETES = "1.33.0"


def documents() -> list[dict]:
    return [d for path in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]


def flink_deployment() -> dict:
    (deployment,) = [d for d in documents() if d["kind"] == "FlinkDeployment"]
    return deployment


def crd_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def pod_templates(deployment: dict) -> list[dict]:
    spec = deployment["spec"]
    return [t for t in (spec.get("podTemplate"), spec["jobManager"].get("podTemplate"),
                        spec["taskManager"].get("podTemplate")) if t]


def as_pod(template: dict) -> dict:
    """A pod template as a Pod; the operator fills in the main container's image."""
    pod = copy.deepcopy(template)
    for container in pod["spec"].get("containers", []):
        container.setdefault("image", "flink")
    return pod


def test_manifests_are_there():
    assert {d["kind"] for d in documents()} == {"FlinkDeployment", "PersistentVolumeClaim"}


@pytest.mark.parametrize("document", [d for d in documents() if d["kind"] != "FlinkDeployment"],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_builtin_kinds_match_the_kubernetes_schemas(document):
    kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_flink_deployment_matches_the_operator_crd_schema():
    errors = sorted(crd_validator().iter_errors(flink_deployment()), key=str)
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def test_pod_templates_match_the_kubernetes_pod_schema():
    for template in pod_templates(flink_deployment()):
        kubernetes_validate.validate(as_pod(template), KUBERNETES, strict=True)


@pytest.mark.parametrize("path, value, message", [
    (("spec", "job", "upgradeMod"), "savepoint", "Additional properties are not allowed ('upgradeMod' was unexpected)"),
    (("spec", "job", "upgradeMode"), "snapshot", "'snapshot' is not one of ['last-state', 'savepoint', 'stateless']"),
    (("spec", "flinkVersion"), "v1_12", "'v1_12' is not one of"),
    (("spec", "taskManager", "resource", "cpu"), "two", "'two' is not of type 'number'"),
    (("kind",), "FlinkSessionJob", "'FlinkSessionJob' is not one of ['FlinkDeployment']"),
])
def test_the_crd_schema_rejects_mistakes(path, value, message):
    broken = copy.deepcopy(flink_deployment())
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = [e.message for e in crd_validator().iter_errors(broken)]
    assert any(message in e for e in errors), errors


def test_the_pod_schema_rejects_mistakes():
    template = copy.deepcopy(pod_templates(flink_deployment())[-1])
    template["spec"]["containers"][-1]["comand"] = ["python"]
    with pytest.raises(kubernetes_validate.ValidationError, match="comand"):
        kubernetes_validate.validate(as_pod(template), KUBERNETES, strict=True)


def test_deployment_upgrades_with_savepoints_onto_the_mounted_volume():
    spec = flink_deployment()["spec"]
    assert spec["job"]["upgradeMode"] == "savepoint"
    assert spec["flinkVersion"] == "v1_19"
    config = spec["flinkConfiguration"]
    mount = next(m["mountPath"] for m in spec["podTemplate"]["spec"]["containers"][0]["volumeMounts"])
    for key in ("state.checkpoints.dir", "state.savepoints.dir", "high-availability.storageDir"):
        assert config[key].startswith(f"file://{mount}/"), key
    claim = spec["podTemplate"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    (pvc,) = [d for d in documents() if d["kind"] == "PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == claim and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert spec["jobManager"]["resource"]["memory"] and spec["taskManager"]["resource"]["memory"]


def test_sidecar_runs_the_worker_pool_of_the_image():
    spec = flink_deployment()["spec"]
    (sidecar,) = [c for c in spec["taskManager"]["podTemplate"]["spec"]["containers"]
                  if c["name"] != "flink-main-container"]
    assert sidecar["image"] == spec["image"]
    command = [*sidecar["command"], *sidecar["args"]]
    assert command[1:3] == ["-m", "pipelines.worker_pool"]
    assert command[command.index("--port") + 1] == "50000"
    assert spec["job"]["jarURI"] == "local:///opt/flink/usrlib/ampel-monitor-job.jar"
    dockerfile = (K8S / "Dockerfile").read_text()
    assert re.search(r"^FROM flink:1\.19\.\d+-scala_2\.12-java17$", dockerfile, re.M)
    assert "/opt/flink/usrlib/ampel-monitor-job.jar" in dockerfile
    assert f"{command[0].rsplit('/bin/', 1)[0]}" == "/opt/ampel-monitor/venv"
    assert "python3.11 -m venv venv" in dockerfile and "WORKDIR /opt/ampel-monitor" in dockerfile


def test_vendored_crd_schema_is_what_the_script_derives(tmp_path):
    """Re-derives the schema from the operator's jar (Maven Central, cached) and compares."""
    out = tmp_path / "schema.json"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "flink-crd-schema.sh"), str(out)],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == SCHEMA.read_text()
