"""Reference profiles: what they hold, how they round-trip, how they fail."""

import json

import numpy as np
import pytest

from drift import EncodedColumn, ReferenceProfile


def sample(rows=2000, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "age": rng.normal(40, 10, rows),
        "score": np.where(rng.random(rows) < 0.1, np.nan, rng.exponential(1, rows)),
        "city": rng.choice(np.array(["a", "b", "c", None], dtype=object), rows),
        "pred": rng.choice(np.array(["yes", "no"], dtype=object), rows),
        "label": rng.choice(np.array(["yes", "no"], dtype=object), rows),
        "conf": rng.uniform(0.5, 1, rows),
    }


def test_holds_deciles_counts_and_quality():
    data = sample()
    profile = ReferenceProfile.build(data, prediction="pred", label="label", confidence="conf")
    assert list(profile.features) == ["age", "score", "city"]
    score = profile.features["score"]
    present = data["score"][~np.isnan(data["score"])]
    assert score.edges.tolist() == np.quantile(present, np.arange(1, 10) / 10).tolist()
    assert score.count == present.size and score.missing == np.isnan(data["score"]).sum()
    city = profile.features["city"]
    assert sorted(city.categories) == ["a", "b", "c"]
    assert city.counts.tolist() == [float(np.sum(data["city"] == c)) for c in city.categories] + [0.0]
    assert city.missing == sum(v is None for v in data["city"])
    assert profile.quality == {"accuracy": pytest.approx(np.mean(data["pred"] == data["label"]))}
    assert profile.prediction.kind == "categorical" and profile.confidence.kind == "numeric"
    assert profile.rows == 2000


def test_regression_quality():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=500)
    pred = truth + rng.normal(0, 0.3, 500)
    profile = ReferenceProfile.build({"x": truth, "p": pred, "y": truth}, numeric=["x"], prediction="p", label="y")
    assert profile.quality["mae"] == pytest.approx(np.mean(np.abs(pred - truth)))
    assert profile.quality["rmse"] == pytest.approx(np.sqrt(np.mean((pred - truth) ** 2)))


def test_json_round_trip_is_exact(tmp_path):
    profile = ReferenceProfile.build(sample(), prediction="pred", label="label", confidence="conf")
    path = tmp_path / "profile.json"
    profile.save(path)
    loaded = ReferenceProfile.load(path)
    assert loaded.to_dict() == profile.to_dict()
    for name, feature in profile.features.items():
        assert np.array_equal(loaded.features[name].counts, feature.counts)
    document = json.loads(path.read_text())
    assert (document["format"], document["version"]) == ("ampel-profile", 1)


def test_max_categories_sends_the_rest_to_overflow():
    values = np.array(["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 3, dtype=object)
    feature = ReferenceProfile.build({"c": values}, max_categories=2).features["c"]
    assert feature.categories == ("a", "b")
    assert feature.counts.tolist() == [5.0, 4.0, 6.0]
    encoded = EncodedColumn(np.array([0, 0, 1, 2, -1]), ["x", "y", "z"])
    assert ReferenceProfile.build({"c": encoded}, max_categories=1).features["c"].counts.tolist() == [2.0, 2.0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"numeric": ["nope"]}, "unknown column 'nope'"),
        ({"numeric": ["city"]}, "feature 'city' is not numeric"),
        ({"numeric": ["empty"]}, "feature 'empty' has no values"),
        ({"categorical": ["nothing"]}, "feature 'nothing' has no values"),
        ({"label": "label"}, "needs a prediction column"),
    ],
)
def test_fails_naming_the_column(kwargs, message):
    data = {**sample(50), "empty": np.full(50, np.nan), "nothing": np.array([None] * 50, dtype=object)}
    with pytest.raises(ValueError, match=message):
        ReferenceProfile.build(data, **kwargs)


def test_refuses_foreign_documents():
    with pytest.raises(ValueError, match="not a reference profile"):
        ReferenceProfile.from_dict({"hello": 1})
    document = ReferenceProfile.build({"x": np.arange(10.0)}).to_dict()
    with pytest.raises(ValueError, match="unsupported profile version 99"):
        ReferenceProfile.from_dict({**document, "version": 99})


def test_importance_is_the_mean_absolute_attribution_of_profiled_features():
    rng = np.random.default_rng(3)
    data = sample()
    attributions = {"age": rng.normal(0, 2, 2000), "score": np.where(rng.random(2000) < 0.2, np.nan, 1.0),
                     "unknown": np.ones(2000)}
    profile = ReferenceProfile.build(data, prediction="pred", attributions=attributions)
    assert profile.importance == {"age": pytest.approx(np.mean(np.abs(attributions["age"]))),
                                  "score": pytest.approx(np.nansum(attributions["score"]) / 2000)}
    assert ReferenceProfile.from_json(profile.to_json()).importance == profile.importance
    with pytest.raises(ValueError, match="attributions of 'age': non-finite"):
        ReferenceProfile.build(data, attributions={"age": np.full(2000, np.inf)})


def test_reference_data_with_nested_attributions(tmp_path):
    from ampel_monitor.io import read_reference

    path = tmp_path / "reference.jsonl"
    rows = [{"age": 30 + i, "pred": "yes", "attributions": {"age": (-1) ** i * i}} for i in range(10)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    columns, attributions = read_reference(path)
    assert sorted(columns) == ["age", "pred"] and attributions["age"].tolist() == [(-1) ** i * i for i in range(10)]
    profile = ReferenceProfile.build(columns, prediction="pred", attributions=attributions)
    assert profile.importance == {"age": 4.5}

