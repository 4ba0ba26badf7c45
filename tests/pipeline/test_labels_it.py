"""Delayed labels on the embedded runner: quality per window against scikit-learn on the same
joined data, labels too late or without a prediction dead-lettered, accuracy-drop alerts in
exactly the windows whose offline accuracy drops, bias and feature-importance alerts in
exactly the windows of their incidents."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from fastavro.validation import validate
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from statsmodels.stats.proportion import proportions_ztest

from ampel_monitor.config import load_config
from ampel_monitor.quality import rank_change
from drift.profile import ReferenceProfile
from pipelines.monitor import run
from schemas import load_schema
from tests.pipeline.streams import START_MS, make_events, reference_columns, write_setup

pytestmark = pytest.mark.it

MINUTE = 60_000
REFERENCE_ACCURACY = 0.9
INCIDENT = (12, 20)  # minutes in which alpha/v1's labels disagree with 40 % of its predictions
BIAS = (22, 28)  # minutes in which beta predicts "no" for 70 % of subgroup sex=f, whatever it would have
SHIFT = (4, 9)  # minutes in which city is alpha/v1's most important feature (else x, then y, then city)
FEATURES = ("x", "y", "city")


def _labels(events: list[dict], seed: int = 3) -> list[dict]:
    """Half the events get a label 0-10 min later; a few come after the 1 h maximum; some label nothing."""
    rng = np.random.default_rng(seed)
    out = []
    for e in events:
        if rng.random() >= 0.5:
            continue
        minute = (e["timestamp"] - START_MS) // MINUTE
        incident = e["model_id"] == "alpha" and e["model_version"] == "v1" and INCIDENT[0] <= minute < INCIDENT[1]
        right = rng.random() < (0.6 if incident else REFERENCE_ACCURACY)
        label = e["prediction"] if right else ("no" if e["prediction"] == "yes" else "yes")
        delay = int(rng.integers(0, 10 * MINUTE)) if rng.random() > 0.03 else 70 * MINUTE
        out.append({"event_id": e["event_id"], "model_id": e["model_id"], "label": label,
                    "timestamp": e["timestamp"] + delay})
    out += [{"event_id": f"ghost-{i}", "model_id": "beta", "label": "yes", "timestamp": START_MS + i * MINUTE}
            for i in range(20)]
    return out


def _setup(tmp_path):
    events = make_events(seed=9, minutes=30, per_minute=300)
    rng = np.random.default_rng(11)
    for i, e in enumerate(events):
        e["attributes"] = {"sex": "f" if (i // 3) % 2 else "m"}
        minute = (e["timestamp"] - START_MS) // MINUTE
        if e["model_id"] == "beta" and e["attributes"]["sex"] == "f" and BIAS[0] <= minute < BIAS[1] and rng.random() < 0.7:
            e["prediction"] = "no"
        shifted = (e["model_id"], e["model_version"]) == ("alpha", "v1") and SHIFT[0] <= minute < SHIFT[1]
        scale = (2.0, 1.0, 3.0) if shifted else (3.0, 2.0, 1.0)
        attributions = dict(zip(FEATURES, (float(v) for v in rng.normal(scale, 0.3) * rng.choice([-1, 1], 3))))
        if i % 13 == 0:
            del attributions["y"]  # counts as 0
        e["attributions"] = None if i % 17 == 0 else attributions
    path = write_setup(tmp_path, events, {"size": "2m", "slide": "1m", "allowed_lateness": "0s"},
                       extra={"labels": {"max_delay": "1h", "min_labelled": 30, "min_fraction": 0.1}})
    rng = np.random.default_rng(4)
    for model in ("alpha", "beta"):  # profiles with a reference accuracy of 0.9, importance x > y > city
        columns = reference_columns(rng)
        agree = rng.random(columns["prediction"].size) < REFERENCE_ACCURACY
        columns["label"] = np.where(agree, columns["prediction"], np.where(columns["prediction"] == "yes", "no", "yes"))
        attributions = {name: rng.normal(scale, 0.3, 5000) for name, scale in zip(FEATURES, (3.0, 2.0, 1.0))}
        ReferenceProfile.build(columns, prediction="prediction", confidence="confidence", label="label",
                               resolution=200, attributions=attributions).save(tmp_path / f"{model}.json")
    config = yaml.safe_load(path.read_text())
    for model in config["models"]:
        model.update({"positive_label": "yes", "sensitive": ["sex"], "baseline_version": "v1"})
    path.write_text(yaml.safe_dump(config))
    labels = _labels(events)
    with (tmp_path / "labels.jsonl").open("w") as handle:
        for label in labels:
            handle.write(json.dumps(label) + "\n")
    return load_config(path), events, labels


def test_quality_per_window_equals_sklearn_on_the_joined_data(tmp_path):
    config, events, labels = _setup(tmp_path)
    summary = run(config, [str(tmp_path / "events.jsonl")], labels=[str(tmp_path / "labels.jsonl")])

    by_id = {e["event_id"]: e for e in events}
    joined = [(by_id[l["event_id"]], l["label"]) for l in labels
              if l["event_id"] in by_id and l["timestamp"] - by_id[l["event_id"]]["timestamp"] <= 60 * MINUTE]
    too_late = sum(l["event_id"] in by_id for l in labels) - len(joined)
    assert too_late > 50
    assert summary.dead_letters == {"label_too_late": too_late, "label_without_prediction": 20}

    assert summary.quality and not any(q["late"] for q in summary.quality)
    for record in summary.quality:
        assert validate(record, load_schema("QualityMetrics"), raise_errors=True)
    for record in summary.quality:
        start = int(np.datetime64(record["window_start"].replace("Z", ""), "ms").astype(np.int64))
        end = start + 2 * MINUTE
        pairs = [(e, label) for e, label in joined if e["model_id"] == record["model"]
                 and e["model_version"] == record["version"] and start <= e["timestamp"] < end]
        window = [e for e in events if e["model_id"] == record["model"] and e["model_version"] == record["version"]
                  and start <= e["timestamp"] < end]
        y_true = [label for _, label in pairs]
        y_pred = [e["prediction"] for e, _ in pairs]
        q = record["quality"]
        assert (q["labelled"], q["predictions"]) == (len(pairs), len(window))
        assert q["labelled_fraction"] == len(pairs) / len(window)
        assert q["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
        for name, metric in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
            assert q[name] == pytest.approx(metric(y_true, y_pred, pos_label="yes", zero_division=0), abs=1e-12)
        assert q["accuracy_drop"] == pytest.approx((config_reference(tmp_path, record["model"]) - q["accuracy"])
                                                   / config_reference(tmp_path, record["model"]), abs=1e-12)
        for group in ("f", "m"):
            members = [e["prediction"] for e, _ in pairs if e["attributes"]["sex"] == group]
            entry = q["bias"]["sex"]["subgroups"][group]
            assert entry["count"] == len(members)
            assert entry["positive_rate"] == pytest.approx(np.mean([p == "yes" for p in members]), abs=1e-12)

    # accuracy-drop alerts: exactly the state machine over the offline accuracy, in window order
    expected = []
    for model, version in {(q["model"], q["version"]) for q in summary.quality}:
        state = set()
        reference = config_reference(tmp_path, model)
        for q in sorted((q for q in summary.quality if (q["model"], q["version"]) == (model, version)),
                        key=lambda q: q["window_end"]):
            if q["quality"]["labelled"] < 30 or q["quality"]["labelled_fraction"] < 0.1:
                continue
            drop = (reference - q["quality"]["accuracy"]) / reference
            for severity, threshold in (("critical", 0.10), ("warning", 0.05)):
                if (drop > threshold) != (severity in state):
                    (state.add if drop > threshold else state.discard)(severity)
                    expected.append((model, version, q["window_end"], severity, "firing" if drop > threshold else "resolved"))
    got = [(a["model"], a["version"], a["window_end"], a["severity"], a["state"])
           for a in summary.alerts if a["rule"] == "accuracy_drop"]
    assert sorted(got) == sorted(expected)
    critical = [a for a in got if a[3] == "critical" and a[4] == "firing"]
    assert [(a[0], a[1]) for a in critical] == [("alpha", "v1")]

    # concept drift: the sustained drop of alpha/v1 only, detected inside the incident, resolved after it
    drift = [a for a in summary.alerts if a["rule"] == "concept_drift"]
    assert {(a["model"], a["version"], a["severity"]) for a in drift} == {("alpha", "v1", "info")}
    fired = next(a for a in drift if a["state"] == "firing")
    resolved = next(a for a in drift if a["state"] == "resolved")
    assert START_MS + INCIDENT[0] * MINUTE < _ms(fired["window_end"]) <= START_MS + (INCIDENT[1] + 2) * MINUTE
    assert _ms(resolved["window_end"]) > START_MS + INCIDENT[1] * MINUTE


def config_reference(tmp_path, model: str) -> float:
    return ReferenceProfile.load(tmp_path / f"{model}.json").quality["accuracy"]


def test_versions_are_compared_with_the_baseline_per_window(tmp_path):
    config, events, labels = _setup(tmp_path)
    summary = run(config, [str(tmp_path / "events.jsonl")], labels=[str(tmp_path / "labels.jsonl")])
    metrics = {(m["model"], m["version"], m["window_end"]): m for m in summary.metrics}
    quality = {(q["model"], q["version"], q["window_end"]): q["quality"] for q in summary.quality}
    compared = {(r["model"], r["window_end"], r["kind"]): r for r in summary.ab}
    for record in summary.ab:
        assert validate(record, load_schema("VersionComparison"), raise_errors=True)
    assert {r["model"] for r in summary.ab} == {"alpha"}  # beta has one version only
    windows = {(m, end) for m, v, end in metrics if m == "alpha" and v == "v2" and (m, "v1", end) in metrics}
    assert {(m, end) for m, end, kind in compared if kind == "metrics"} == windows
    for model, end in windows:
        v1, v2 = metrics[(model, "v1", end)], metrics[(model, "v2", end)]
        entry = compared[(model, end, "metrics")]["versions"]["v2"]
        assert entry["error_rate_difference"] == pytest.approx(v2["error_rate"] - v1["error_rate"], abs=1e-15)
        assert entry["latency_p95_difference_ms"] == pytest.approx(v2["latency_ms"]["p95"] - v1["latency_ms"]["p95"])
        if (model, end, "quality") in compared:
            q1, q2 = quality[(model, "v1", end)], quality[(model, "v2", end)]
            got = compared[(model, end, "quality")]["versions"]["v2"]
            assert got["accuracy_difference"] == pytest.approx(q2["accuracy"] - q1["accuracy"], abs=1e-12)
            _, p = proportions_ztest([q2["correct"], q1["correct"]], [q2["labelled"], q1["labelled"]])
            assert got["accuracy_pvalue"] == pytest.approx(p, rel=1e-9)
    # the incident degrades v1 only: in its windows v2 is significantly more accurate
    incident = [r["versions"]["v2"] for (m, end, kind), r in compared.items() if kind == "quality"
                and START_MS + (INCIDENT[0] + 2) * MINUTE <= _ms(end) <= START_MS + INCIDENT[1] * MINUTE]
    assert incident and all(v["accuracy_difference"] > 0 and v["accuracy_pvalue"] < 0.05 for v in incident)


def _ms(rfc3339: str) -> int:
    return int(np.datetime64(rfc3339.replace("Z", ""), "ms").astype(np.int64))


def _state_machine(values: list[tuple[str, float | None]], breached) -> list[tuple[str, str]]:
    """(window_end, firing | resolved) transitions of one rule over (window_end, value) in order."""
    firing, out = False, []
    for end, value in sorted(values):
        if value is None or breached(value) == firing:
            continue
        firing = not firing
        out.append((end, "firing" if firing else "resolved"))
    return out


def test_bias_and_importance_alerts_fire_in_their_incidents_only(tmp_path):
    config, events, labels = _setup(tmp_path)
    summary = run(config, [str(tmp_path / "events.jsonl")], labels=[str(tmp_path / "labels.jsonl")])

    # feature importance per window: numpy's mean |attribution| over the attributed events
    reference_ranks = {"x": 1, "y": 2, "city": 3}
    expected_shift: dict[tuple[str, str], list] = {}
    for m in summary.metrics:
        assert validate(m, load_schema("WindowMetrics"), raise_errors=True)
        start, end = _ms(m["window_start"]), _ms(m["window_end"])
        window = [e for e in events if (e["model_id"], e["model_version"]) == (m["model"], m["version"])
                  and start <= e["timestamp"] < end]
        attributed = [e["attributions"] for e in window if e["attributions"] is not None]
        assert m["attributed"] == len(attributed)
        means = {f: np.mean([abs(a.get(f, 0.0)) for a in attributed]) for f in FEATURES}
        ranks = {f: r for r, f in enumerate(sorted(FEATURES, key=lambda f: -means[f]), 1)}
        for f in FEATURES:
            assert m["importance"][f]["mean_abs"] == pytest.approx(means[f], rel=1e-12)
            assert m["importance"][f]["rank"] == ranks[f]
        change = rank_change(ranks, reference_ranks, top_k=5)
        assert m["importance_rank_change"] == pytest.approx(change, abs=1e-15)
        if len(window) >= 10:
            expected_shift.setdefault((m["model"], m["version"]), []).append((m["window_end"], change))
    expected = sorted((model, version, end, state) for (model, version), values in expected_shift.items()
                      for end, state in _state_machine(values, lambda v: v > 0.15))
    got = sorted((a["model"], a["version"], a["window_end"], a["state"]) for a in summary.alerts
                 if a["rule"] == "importance_shift")
    assert got == expected
    assert {(m, v) for m, v, _, _ in got} == {("alpha", "v1")}
    fired = [_ms(end) for *_, end, state in got if state == "firing"]
    assert fired and all(START_MS + SHIFT[0] * MINUTE < t <= START_MS + (SHIFT[1] + 2) * MINUTE for t in fired)

    # bias: the disparate impact ratio per window against the offline positive rates of the
    # labelled predictions, and the four-fifths alerts in the bias incident only
    by_id = {e["event_id"]: e for e in events}
    joined = [by_id[l["event_id"]] for l in labels
              if l["event_id"] in by_id and l["timestamp"] - by_id[l["event_id"]]["timestamp"] <= 60 * MINUTE]
    expected_bias: dict[tuple[str, str], list] = {}
    for record in summary.quality:
        start, end = _ms(record["window_start"]), _ms(record["window_end"])
        members = [e for e in joined if (e["model_id"], e["model_version"]) == (record["model"], record["version"])
                   and start <= e["timestamp"] < end]
        groups = {g: [e["prediction"] == "yes" for e in members if e["attributes"]["sex"] == g] for g in ("f", "m")}
        groups = {g: v for g, v in groups.items() if len(v) >= 30}
        rates = {g: np.mean(v) for g, v in groups.items()}
        ratio = min(rates.values()) / max(rates.values()) if len(rates) == 2 and max(rates.values()) > 0 else None
        bias = record["quality"]["bias"]["sex"]
        assert bias["disparate_impact_ratio"] == (None if ratio is None else pytest.approx(ratio, abs=1e-12))
        if ratio is not None:
            _, p = proportions_ztest([sum(v) for v in groups.values()], [len(v) for v in groups.values()])
            assert bias["disparate_impact_pvalue"] == pytest.approx(p, rel=1e-9)
            if ratio < 0.8 and p >= 0.001:
                ratio = None  # inconclusive: the alert state stays
        q = record["quality"]
        if q["labelled"] >= 30 and q["labelled_fraction"] >= 0.1:
            expected_bias.setdefault((record["model"], record["version"]), []).append((record["window_end"], ratio))
    expected = sorted((model, version, end, state) for (model, version), values in expected_bias.items()
                      for end, state in _state_machine(values, lambda v: v < 0.8))
    got = sorted((a["model"], a["version"], a["window_end"], a["state"]) for a in summary.alerts
                 if a["rule"] == "disparate_impact")
    assert got == expected
    assert {(m, v) for m, v, _, _ in got} == {("beta", "v1")}
    fired = [_ms(end) for *_, end, state in got if state == "firing"]
    assert fired and all(START_MS + BIAS[0] * MINUTE < t <= START_MS + (BIAS[1] + 2) * MINUTE for t in fired)
    assert all(a["severity"] == "warning" for a in summary.alerts if a["rule"] == "disparate_impact")

