"""Window accumulators and the CombineFns, without a runner: shard, add, merge, extract."""

from __future__ import annotations

import pickle

import numpy as np

from ampel_monitor.events import EventDecoder, ModelSchema
from ampel_monitor.window import ModelAccumulator, ModelSpec, SliceSpec
from drift.profile import ReferenceProfile
from transforms.windows import SliceCombineFn, WindowCombineFn

T0 = 1_767_225_600_000


def make_batches(n=600, seed=0):
    rng = np.random.default_rng(seed)
    profile = ReferenceProfile.build({"x": rng.normal(size=2000), "c": rng.choice(np.array(["a", "b"], dtype=object), 2000),
                                      "prediction": rng.choice(np.array(["y", "n"], dtype=object), 2000)},
                                     prediction="prediction")
    spec = ModelSpec("m", profile)
    decoder = EventDecoder({"m": ModelSchema.from_profile(profile, "classification")}, slide_ms=10_000)
    records = [(f"s:{i}", {"event_id": str(i), "model_id": "m", "model_version": "v1", "timestamp": T0 + i * 100,
                           "latency_ms": float(rng.lognormal(3, 1)), "status": "ok" if i % 9 else "error",
                           "features": {"x": float(rng.normal(0.3)), "c": str(rng.choice(["a", "b", "z"]))},
                           "prediction": "y", "confidence": float(rng.uniform())}, None) for i in range(n)]
    batches, dead = decoder.decode_records(records)
    assert not dead and len(batches) == 6
    return spec, batches


def test_sharded_combine_equals_one_pass():
    spec, batches = make_batches()
    combine = pickle.loads(pickle.dumps(SliceCombineFn({"m": spec})))  # as a runner ships it
    whole = combine.add_inputs(combine.create_accumulator(), batches)
    shards = [combine.add_inputs(combine.create_accumulator(), batches[i::3]) for i in range(3)]
    merged = combine.merge_accumulators(shards)
    a = merged.metrics(spec, T0, T0 + 60_000, late=False)
    b = whole.metrics(spec, T0, T0 + 60_000, late=False)
    assert a == b
    assert a[0]["count"] == 600 and a[0]["errors"] == 67


def test_large_batches_folded_before_the_shuffle_combine_as_the_batches_do(monkeypatch):
    """``fold_large`` turns a batch of at least FOLD_MIN_EVENTS into its accumulator (what
    crosses to the combiner on a runner that does not lift it); small ones pass as they are.
    Folded, raw or mixed, the slice's metrics are the same."""
    import transforms.windows as windows

    spec, batches = make_batches(n=599)  # 5 batches of 100 events and one of 99
    monkeypatch.setattr(windows, "FOLD_MIN_EVENTS", 100)
    combine = pickle.loads(pickle.dumps(SliceCombineFn({"m": spec})))
    folded = [combine.fold_large(("m", b)) for b in batches]
    assert folded[-1] == ("m", batches[-1])
    assert all(model == "m" and isinstance(value, ModelAccumulator) for model, value in folded[:-1])
    raw = combine.add_inputs(combine.create_accumulator(), batches)
    mixed = combine.add_inputs(combine.create_accumulator(), [value for _, value in folded])
    a, b = (acc.metrics(spec, T0, T0 + 60_000, late=False) for acc in (mixed, raw))
    assert a == b and a[0]["count"] == 599


def test_large_labelled_pairs_folded_before_the_shuffle_combine_as_the_pairs_do():
    """The quality slices' ``fold_large``: labelled pairs of at least FOLD_MIN_PAIRS cross as
    their own ``QualityState``, smaller ones and prediction counts as they are; the
    slice's quality is the same folded, raw or mixed."""
    from ampel_monitor.labels import LabelledBatch
    from ampel_monitor.quality import QualitySpec, QualityState
    from transforms.labels import FOLD_MIN_PAIRS, _QualityCombineFn

    rng = np.random.default_rng(3)
    classes, regions = np.array(["fraud", "ok"], dtype=object), np.array(["eu", "us", None], dtype=object)

    def pairs(n):
        return LabelledBatch("m", "v1", T0, classes[rng.integers(0, 2, n)], classes[rng.integers(0, 2, n)],
                             rng.uniform(0.5, 1.0, n), {"region": regions[rng.integers(0, 3, n)]})

    key = ("m", "v1")
    inputs = [(key, ("m", value)) for value in (pairs(FOLD_MIN_PAIRS), 250, pairs(FOLD_MIN_PAIRS - 1), pairs(3 * FOLD_MIN_PAIRS))]
    combine = pickle.loads(pickle.dumps(_QualityCombineFn({"m": QualitySpec("classification", "fraud", ("region",))})))
    folded = [combine.fold_large(element) for element in inputs]
    assert [type(value).__name__ for _, (_, value) in folded] == ["QualityState", "int", "LabelledBatch", "QualityState"]
    assert folded[1:3] == inputs[1:3] and all(k == key and model == "m" for k, (model, _) in folded)

    def quality(elements):
        accumulator = combine.create_accumulator()
        for _, value in elements:
            accumulator = combine.add_input(accumulator, value)
        state = combine.extract_output(accumulator)
        assert isinstance(state, QualityState)
        return state.metrics({"accuracy": 0.5})

    raw, mixed = quality(inputs), quality(folded)
    assert mixed == raw
    assert raw["labelled"] == 5 * FOLD_MIN_PAIRS - 1 and raw["predictions"] == 250


def test_window_merge_leaves_its_inputs_unchanged():
    spec, batches = make_batches()
    slices = [ModelAccumulator().add_batch(b, SliceSpec(spec)) for b in batches]
    before = [s.metrics(spec, T0, T0 + 10_000, False) for s in slices]
    combine = WindowCombineFn()
    window = combine.create_accumulator()
    for s in slices:
        window = combine.add_input(window, s)
    assert [s.metrics(spec, T0, T0 + 10_000, False) for s in slices] == before
    total = combine.extract_output(window).metrics(spec, T0, T0 + 60_000, False)[0]
    assert total["count"] == 600
    assert total["features"]["c"]["count"] == 600


def test_event_batches_cross_a_stage_whole_and_are_not_pickled_to_be_measured():
    import apache_beam as beam

    from transforms.coders import BatchCoder

    _, batches = make_batches()
    coder = beam.coders.registry.get_coder(type(batches[0]))
    assert isinstance(coder, BatchCoder)
    batch = batches[0]
    back = coder.decode(coder.encode(batch))
    assert (back.model, back.version, back.slice_start_ms) == (batch.model, batch.version, batch.slice_start_ms)
    for name in ("timestamps", "latency_ms", "error", "confidence", "prediction", "event_ids"):
        np.testing.assert_array_equal(getattr(back, name), getattr(batch, name))
    assert back.features.keys() == batch.features.keys()
    for name, column in batch.features.items():
        np.testing.assert_array_equal(back.features[name], column)
    # the estimate Beam samples on every edge: from the columns, not from an encoding
    assert coder.estimate_size(batch) == 8 * len(batch) * (6 + len(batch.features))
