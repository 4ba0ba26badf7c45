"""The YAML config: defaults, overrides, and errors that name the field."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from ampel_monitor.config import DEFAULT_RULES, load_config
from drift.profile import ReferenceProfile


@pytest.fixture
def base(tmp_path):
    ReferenceProfile.build({"x": np.arange(50.0)}).save(tmp_path / "p.json")
    return {"models": [{"id": "m", "task": "classification", "reference": "p.json"}]}


def write(tmp_path, document):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document) if not isinstance(document, str) else document)
    return path


def test_defaults_follow_the_operating_spec(tmp_path, base):
    config = load_config(write(tmp_path, base))
    assert (config.windows.size, config.windows.slide, config.windows.allowed_lateness) == (300, 60, 120)
    rules = {(r.name, r.severity): r.threshold for r in config.rules}
    assert rules == {("latency_p95", "critical"): 1.0, ("error_rate", "critical"): 0.01,
                     ("accuracy_drop", "critical"): 0.10, ("accuracy_drop", "warning"): 0.05,
                     ("data_drift", "warning"): 0.2, ("resource_utilisation", "warning"): 0.8,
                     ("feature_drift", "info"): 0.1, ("importance_shift", "info"): 0.15,
                     ("disparate_impact", "warning"): 0.8}
    assert config.rules == DEFAULT_RULES
    assert config.drift.thresholds == {"psi": 0.2, "js": 0.1}
    assert config.models[0].reference == str(tmp_path / "p.json")


def test_overrides(tmp_path, base):
    config = load_config(write(tmp_path, {
        **base,
        "windows": {"size": "10m", "slide": "2m", "allowed_lateness": 30},
        "alerts": {"latency_p95": {"threshold": 0.25}, "accuracy_drop": {"warning": 0.03, "critical": 0.2},
                   "resource_utilisation": {"enabled": False}},
        "drift": {"thresholds": {"psi": 0.1}, "per_feature": {"x": {"psi": 0.5}}, "min_count": 50},
        "sinks": {"out_dir": "results", "metrics_port": 9109},
    }))
    assert (config.windows.size_ms, config.windows.slide_ms, config.windows.lateness_ms) == (600_000, 120_000, 30_000)
    rules = {(r.name, r.severity): r.threshold for r in config.rules}
    assert rules[("latency_p95", "critical")] == 0.25
    assert rules[("accuracy_drop", "warning")] == 0.03 and rules[("accuracy_drop", "critical")] == 0.2
    assert "resource_utilisation" not in {r.name for r in config.rules}
    assert config.drift.thresholds_for("x") == {"psi": 0.5} and config.drift.min_count == 50
    assert (config.sinks.out_dir, config.sinks.metrics_port) == ("results", 9109)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"models": []}, "models: expected a non-empty list"),
        ({"models": [{"id": "m", "task": "ranking", "reference": "p.json"}]}, r"models\[0\]\.task: expected one of"),
        ({"models": [{"id": "m", "task": "regression"}]}, r"models\[0\]\.reference: missing"),
        ({"models": [{"id": "m", "task": "regression", "reference": "nope.json"}]}, r"models\[0\]\.reference: no such file"),
        ({"models": [{"id": "m", "task": "regression", "reference": "p.json", "colour": 1}]}, r"models\[0\]\.colour: unknown field"),
        ({"windows": {"size": "5 minutes"}}, "windows.size: expected a duration"),
        ({"windows": {"size": "5m", "slide": "2m"}}, "windows.size: must be a multiple of windows.slide"),
        ({"windows": {"slide": 0}}, "must be positive"),
        ({"alerts": {"latency_p99": {"threshold": 1}}}, "alerts.latency_p99: unknown rule"),
        ({"alerts": {"error_rate": {"threshold": "high"}}}, "alerts.error_rate.threshold: expected a number"),
        ({"alerts": {"error_rate": {"severity": "fatal"}}}, "alerts.error_rate.severity: expected one of"),
        ({"drift": {"thresholds": {"psy": 0.2}}}, "drift.thresholds: unknown drift test 'psy'"),
        ({"confidence_threshold": 2}, r"confidence_threshold: must be within \[0, 1\]"),
        ({"sinks": {"metrics_port": 70000}}, "sinks.metrics_port: must be within"),
        ({"extra": 1}, "config.extra: unknown field"),
    ],
)
def test_errors_name_the_field(tmp_path, base, change, message):
    with pytest.raises(ValueError, match=message):
        load_config(write(tmp_path, {**base, **change}))


def test_duplicate_models_and_bad_yaml(tmp_path, base):
    with pytest.raises(ValueError, match="model id 'm' appears twice"):
        load_config(write(tmp_path, {"models": base["models"] * 2}))
    with pytest.raises(ValueError, match="invalid YAML"):
        load_config(write(tmp_path, "models: [unclosed"))
    with pytest.raises(ValueError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


def test_run_fails_before_starting_on_a_bad_config(tmp_path, base):
    import subprocess
    import sys

    path = write(tmp_path, {**base, "windows": {"size": "7m", "slide": "2m"}})
    result = subprocess.run([sys.executable, "-m", "ampel_monitor.cli", "run", "--config", str(path), "--input", "x.jsonl"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("windows.size: must be a multiple of windows.slide (120s), got 420s")
    assert "Traceback" not in result.stderr
