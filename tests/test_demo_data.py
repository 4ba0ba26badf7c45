"""The demo scenario: valid files, exact counts, determinism, and incidents where they say."""

import json
import subprocess
import sys
from collections import Counter, defaultdict

import fastavro
import numpy as np
import pyarrow.parquet as pq
import pytest

from ampel_monitor.config import load_config
from ampel_monitor.demo_data import MODELS, TRAFFIC_SHARE, generate
from ampel_monitor.events import EventDecoder, ModelSchema, decode_resources, iter_records
from ampel_monitor.io import read_reference
from drift.profile import ReferenceProfile
from drift.psi import psi
from schemas import load_schema

HOURS, RATE = 1.0, 20.0
TOTAL = 72_000  # 1 hour at 20 events/s
MINUTE = 60_000
WINDOW = 5 * MINUTE
EVENT_FIELDS = {f["name"] for f in load_schema("PredictionEvent")["fields"]}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("demo"), seed=7, hours=HOURS, rate_per_s=RATE)


@pytest.fixture(scope="module")
def events(scenario):
    return [json.loads(line) for line in scenario.files["events"].read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def columns(events):
    """Plain numpy columns of the events, for checks independent of the decoder."""
    return {
        "model": np.array([e["model_id"] for e in events]),
        "timestamp": np.array([e["timestamp"] for e in events], dtype=np.int64),
        "latency": np.array([e["latency_ms"] for e in events]),
        "error": np.array([e["status"] == "error" for e in events]),
    }


@pytest.fixture(scope="module")
def profiles(scenario):
    config = load_config(scenario.files["config"])
    built = {}
    for model in config.models:
        data, attributions = read_reference(model.reference)
        profile = ReferenceProfile.build(
            data, prediction=model.prediction, confidence=model.confidence, label=model.label, attributions=attributions
        )
        built[model.id] = (profile, model.task)
    return built


@pytest.fixture(scope="module")
def decoded(scenario, profiles):
    schemas = {name: ModelSchema.from_profile(profile, task) for name, (profile, task) in profiles.items()}
    decoder = EventDecoder(schemas, slide_ms=MINUTE)
    batches, dead = decoder.decode_records(iter_records(str(scenario.files["events"])))
    return batches, dead, decoder


def incident(scenario, kind):
    (found,) = [i for i in scenario.incidents if i.kind == kind]
    return found


def test_files_exist(scenario):
    expected = {"events", "labels", "resources", "config", *(f"reference:{m}" for m in MODELS)}
    assert set(scenario.files) == expected
    for path in scenario.files.values():
        assert path.is_file() and path.stat().st_size > 0
    assert scenario.files["events"].name == "events.jsonl"
    for model in MODELS:
        assert scenario.files[f"reference:{model}"].relative_to(scenario.files["config"].parent).as_posix() == (
            f"reference/{model}.parquet"
        )


def test_reference_tables(scenario):
    for model in MODELS:
        table = pq.read_table(scenario.files[f"reference:{model}"])
        assert table.num_rows == 20_000
        assert {"prediction", "label"} <= set(table.column_names)
        assert ("confidence" in table.column_names) == (model != "demand-forecast")
        features = [c for c in table.column_names if c not in ("prediction", "confidence", "label")]
        assert len(features) >= 5
        # a few features are missing at a low rate, none at a high one
        null_rates = [table.column(c).null_count / table.num_rows for c in features]
        assert 0 < max(null_rates) < 0.03


def test_config_loads(scenario):
    config = load_config(scenario.files["config"])
    assert [m.id for m in config.models] == list(MODELS)
    assert {m.id: m.task for m in config.models} == {
        "credit-risk": "classification",
        "fraud-detector": "classification",
        "demand-forecast": "regression",
    }
    for model in config.models:
        assert model.reference == str(scenario.files[f"reference:{model.id}"].resolve())
    assert config.model("demand-forecast").confidence is None
    assert (config.windows.size, config.windows.slide, config.windows.allowed_lateness) == (300, 60, 120)
    assert config.sinks.out_dir == "out"
    assert config.labels is not None and config.labels.min_labelled == 1000
    assert config.model("credit-risk").baseline_version == "v1" and config.model("credit-risk").positive_label == "approve"
    text = scenario.files["config"].read_text(encoding="utf-8")
    assert "reference: reference/credit-risk.parquet" in text


def test_events_decode_without_dead_letters(scenario, decoded):
    batches, dead, decoder = decoded
    assert dead == []
    assert not decoder.unknown_features
    per_model = Counter()
    for batch in batches:
        per_model[batch.model] += len(batch)
    assert dict(per_model) == dict(scenario.counts)


def test_counts_are_exact(scenario, columns):
    assert sum(scenario.counts.values()) == TOTAL == columns["model"].size
    assert dict(Counter(columns["model"].tolist())) == dict(scenario.counts)
    for model, share in TRAFFIC_SHARE.items():
        assert scenario.counts[model] == round(TOTAL * share)


def test_event_records(scenario, events, columns):
    assert all(set(e) == EVENT_FIELDS for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    assert all(isinstance(e["event_id"], str) and isinstance(e["timestamp"], int) for e in events)
    timestamps = columns["timestamp"]
    assert np.all(np.diff(timestamps) >= 0)
    assert scenario.start_ms <= timestamps[0] and timestamps[-1] < scenario.end_ms
    assert scenario.end_ms - scenario.start_ms == HOURS * 3600 * 1000
    assert np.all(columns["latency"] > 0)
    for e in events:
        assert (e["status"] == "error") == (e["error_code"] is not None)
        if e["status"] == "error":
            assert e["prediction"] is None and e["confidence"] is None
        elif e["model_id"] == "demand-forecast":
            assert isinstance(e["prediction"], float) and e["confidence"] is None
        else:
            assert e["prediction"] in (("approve", "deny") if e["model_id"] == "credit-risk" else ("fraud", "legit"))
            assert 0.5 <= e["confidence"] <= 1.0
    versions = Counter(e["model_version"] for e in events if e["model_id"] == "credit-risk")
    assert set(versions) == {"v1", "v2"}
    assert versions["v2"] / sum(versions.values()) == pytest.approx(0.20, abs=0.01)
    missing = sum(v is None for e in events for v in e["features"].values())
    assert 0 < missing / len(events) < 0.05


def test_labels_are_the_ground_truth_of_a_share_of_the_predictions_later(scenario, events):
    from ampel_monitor.demo_data import LABELLED_SHARE
    from ampel_monitor.labels import decode_labels

    labels = [json.loads(line) for line in scenario.files["labels"].read_text().splitlines()]
    by_id = {e["event_id"]: e for e in events}
    assert len({label["event_id"] for label in labels}) == len(labels)
    assert len(labels) / len(events) == pytest.approx(LABELLED_SHARE, abs=0.01)
    delays = np.array([label["timestamp"] - by_id[label["event_id"]]["timestamp"] for label in labels])
    assert delays.min() >= 60_000 and delays.max() < 30 * 60_000
    assert [label["timestamp"] for label in labels] == sorted(label["timestamp"] for label in labels)
    assert all(label["model_id"] == by_id[label["event_id"]]["model_id"] for label in labels)
    credit = [(by_id[l["event_id"]]["prediction"], l["label"]) for l in labels if l["model_id"] == "credit-risk"
              and by_id[l["event_id"]]["prediction"] is not None]
    assert {label for _, label in credit} == {"approve", "deny"}
    assert np.mean([p == t for p, t in credit]) == pytest.approx(0.76, abs=0.02)  # as in the reference
    batches, dead = decode_labels(iter_records(str(scenario.files["labels"])), MODELS)
    assert dead == [] and sum(len(b) for b in batches) == len(labels)


def test_same_seed_same_bytes_other_seed_differs(scenario, tmp_path):
    again = generate(tmp_path / "again", seed=7, hours=HOURS, rate_per_s=RATE)
    for key in ("events", "resources", "config"):
        assert again.files[key].read_bytes() == scenario.files[key].read_bytes(), key
    assert again.incidents == scenario.incidents
    other = generate(tmp_path / "other", seed=8, hours=HOURS, rate_per_s=RATE)
    assert other.files["events"].read_bytes() != scenario.files["events"].read_bytes()
    assert dict(other.counts) == dict(scenario.counts)


def test_incidents_are_placed_on_whole_minutes(scenario):
    kinds = {i.kind: i for i in scenario.incidents}
    assert set(kinds) == {"drift", "latency_spike", "error_burst", "resource_pressure"}
    assert {k: i.model for k, i in kinds.items()} == {
        "drift": "credit-risk",
        "latency_spike": "fraud-detector",
        "error_burst": "demand-forecast",
        "resource_pressure": "demand-forecast",
    }
    for i in scenario.incidents:
        assert i.start_ms % MINUTE == 0 and i.end_ms % MINUTE == 0
        assert scenario.start_ms <= i.start_ms < i.end_ms <= scenario.end_ms
        assert i.version is None and i.detail
        if i.kind != "drift":
            assert i.end_ms - i.start_ms == 10 * MINUTE
    span = scenario.end_ms - scenario.start_ms
    assert kinds["drift"].end_ms == scenario.end_ms
    assert kinds["drift"].start_ms - scenario.start_ms == pytest.approx(0.55 * span, abs=MINUTE)
    for kind, where in (("latency_spike", 0.30), ("resource_pressure", 0.40), ("error_burst", 0.75)):
        middle = (kinds[kind].start_ms + kinds[kind].end_ms) / 2 - scenario.start_ms
        assert middle == pytest.approx(where * span, abs=MINUTE)
    assert list(scenario.incidents) == sorted(scenario.incidents, key=lambda i: i.start_ms)


def test_error_burst(scenario, columns):
    burst = incident(scenario, "error_burst")
    ts, error = columns["timestamp"], columns["error"]
    demand = columns["model"] == "demand-forecast"
    inside = demand & (ts >= burst.start_ms) & (ts < burst.end_ms)
    assert error[inside].mean() > 0.05
    assert error[demand & ~inside].mean() < 0.01
    assert 0 < error[~demand].mean() < 0.01  # the normal background of failures


def test_latency_spike(scenario, columns):
    spike = incident(scenario, "latency_spike")
    ts, latency, model = columns["timestamp"], columns["latency"], columns["model"]
    fraud = model == "fraud-detector"
    inside = fraud & (ts >= spike.start_ms) & (ts < spike.end_ms)
    assert np.percentile(latency[inside], 95) > 1000
    assert np.percentile(latency[fraud & ~inside], 95) < 1000
    assert 40 <= np.median(latency[fraud & ~inside]) <= 80
    for name in ("credit-risk", "demand-forecast"):
        assert np.percentile(latency[model == name], 95) < 1000
    pressure = incident(scenario, "resource_pressure")
    calm = (model == "credit-risk") | ((model == "demand-forecast") & ((ts < pressure.start_ms) | (ts >= pressure.end_ms)))
    for name in ("credit-risk", "demand-forecast"):
        assert 40 <= np.median(latency[calm & (model == name)]) <= 80


def test_income_shift(scenario, events):
    drift = incident(scenario, "drift")
    reference = pq.read_table(scenario.files["reference:credit-risk"]).column("income").to_numpy(zero_copy_only=False)
    ref_mean, ref_sd = np.nanmean(reference), np.nanstd(reference)

    def income(after: bool) -> np.ndarray:
        values = [
            e["features"]["income"]
            for e in events
            if e["model_id"] == "credit-risk" and (e["timestamp"] >= drift.start_ms) == after
        ]
        return np.array([np.nan if v is None else v for v in values])

    assert (np.nanmean(income(True)) - ref_mean) / ref_sd > 0.5
    assert abs(np.nanmean(income(False)) - ref_mean) / ref_sd < 0.1


def window_psi(profile, batches, start_ms):
    """PSI per feature of one model over the 5-minute window starting at ``start_ms``."""
    inside = [b for b in batches if start_ms <= b.slice_start_ms < start_ms + WINDOW]
    result = {}
    for name, feature in profile.features.items():
        values = np.concatenate([b.features[name] for b in inside])
        if feature.kind == "numeric":
            current = feature.coarse(feature.new_state().add_many(values).counts)
        else:
            current = feature.new_state().add_many(values).counts
        result[name] = psi(feature.counts, current)
    return result


def test_drift_shows_in_windows_and_only_there(scenario, profiles, decoded):
    batches, _, _ = decoded
    drift = incident(scenario, "drift")
    by_model = defaultdict(list)
    for batch in batches:
        by_model[batch.model].append(batch)
    starts = range(scenario.start_ms, scenario.end_ms - WINDOW + 1, MINUTE)
    checked_inside = checked_outside = 0
    for model, (profile, _) in profiles.items():
        for start in starts:
            scores = window_psi(profile, by_model[model], start)
            if model == "credit-risk" and start >= drift.start_ms:
                checked_inside += 1
                assert scores["income"] > 0.2 and scores["region"] > 0.2, (start, scores)
                assert max(v for k, v in scores.items() if k not in ("income", "region")) < 0.1, (start, scores)
            elif model != "credit-risk" or start + WINDOW <= drift.start_ms:
                checked_outside += 1
                assert max(scores.values()) < 0.1, (model, start, scores)
    assert checked_inside >= 20 and checked_outside >= 100


def test_resources(scenario, profiles):
    lines = scenario.files["resources"].read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert all(set(r) == {f["name"] for f in load_schema("ResourceSample")["fields"]} for r in records)
    batches, dead = decode_resources(((f"resources.jsonl:{i}", r, None) for i, r in enumerate(records)), MODELS, MINUTE)
    assert dead == []
    hosts = defaultdict(list)
    for r in records:
        hosts[(r["model_id"], r["host"])].append(r)
    assert sorted(Counter(m for m, _ in hosts).items()) == sorted((m, 2) for m in MODELS)
    for (model, _), samples in hosts.items():
        ts = np.array([s["timestamp"] for s in samples])
        assert ts.size == HOURS * 3600 / 15
        assert np.all(np.diff(ts) == 15_000)
        assert all((s["gpu"] is not None) == (model == "fraud-detector") for s in samples)
    pressure = incident(scenario, "resource_pressure")
    for r in records:
        assert 0 <= r["cpu"] <= 1 and 0 <= r["memory"] <= 1 and (r["gpu"] is None or 0 <= r["gpu"] <= 1)
        under = r["model_id"] == pressure.model and pressure.start_ms <= r["timestamp"] < pressure.end_ms
        if under:
            assert r["cpu"] > 0.9
        else:
            assert 0.3 <= r["cpu"] <= 0.6 and r["memory"] < 0.8 and (r["gpu"] or 0) < 0.8
    assert [r["timestamp"] for r in records] == sorted(r["timestamp"] for r in records)


def test_avro_events(tmp_path, profiles):
    small = generate(tmp_path, seed=3, hours=0.25, rate_per_s=4, fmt="avro")
    assert small.files["events"].name == "events.avro"
    with small.files["events"].open("rb") as handle:
        reader = fastavro.reader(handle)
        assert reader.writer_schema["name"] == "ampel.monitor.PredictionEvent"
        records = list(reader)
    assert len(records) == sum(small.counts.values()) == 3600
    schemas = {name: ModelSchema.from_profile(profile, task) for name, (profile, task) in profiles.items()}
    batches, dead = EventDecoder(schemas, MINUTE).decode_records(
        (f"events.avro:{i}", record, None) for i, record in enumerate(records)
    )
    assert dead == []
    assert sum(len(b) for b in batches) == 3600
    again = generate(tmp_path / "again", seed=3, hours=0.25, rate_per_s=4, fmt="avro")
    assert again.files["events"].read_bytes() == small.files["events"].read_bytes()


@pytest.mark.parametrize(
    "kwargs",
    [{"fmt": "csv"}, {"hours": 0.1}, {"hours": float("nan")}, {"rate_per_s": 0}, {"start": "2026-01-01T00:00:00"}],
)
def test_invalid_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate(tmp_path, **kwargs)


def test_does_not_import_beam():
    code = "import sys, ampel_monitor.demo_data\nassert 'apache_beam' not in sys.modules\nprint('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
