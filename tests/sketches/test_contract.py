"""The API every sketch shares, run against each implementation."""

import pickle

import numpy as np
import pytest

from sketches import CategoryCounter, DDSketch, FixedHistogram


class SketchContract:
    """Subclasses provide ``make()`` (an empty sketch) and ``data(rng, n)`` (values)."""

    def make(self):
        raise NotImplementedError

    def data(self, rng, n):
        raise NotImplementedError

    def state(self, sketch):
        """What must be equal between two sketches fed the same values."""
        return sketch.to_bytes()

    def test_add_many_equals_add(self):
        rng = np.random.default_rng(1)
        values = self.data(rng, 200)
        one_by_one = self.make()
        for value in values:
            assert one_by_one.add(value) is one_by_one
        assert self.state(one_by_one) == self.state(self.make().add_many(values))

    def test_merge_of_shards_equals_adding_everything(self):
        rng = np.random.default_rng(2)
        values = self.data(rng, 3000)
        whole = self.make().add_many(values)
        cuts = np.sort(rng.choice(np.arange(1, 3000), size=4, replace=False))
        merged = self.make()
        for shard in np.split(values, cuts):
            assert merged.merge(self.make().add_many(shard)) is merged
        assert self.state(merged) == self.state(whole)
        assert merged.count == whole.count

    def test_merge_does_not_change_its_argument(self):
        rng = np.random.default_rng(3)
        a, b = self.make().add_many(self.data(rng, 100)), self.make().add_many(self.data(rng, 100))
        before = b.to_bytes()
        a.merge(b)
        assert b.to_bytes() == before

    def test_merge_with_empty_is_identity_both_ways(self):
        rng = np.random.default_rng(4)
        full = self.make().add_many(self.data(rng, 100))
        before = self.state(full)
        assert self.state(full.merge(self.make())) == before
        assert self.state(self.make().merge(full)) == before

    def test_pickled_sketch_is_equal_and_keeps_counting(self):
        """What a runner does to an accumulator between two steps."""
        rng = np.random.default_rng(6)
        values = self.data(rng, 600)
        sketch = pickle.loads(pickle.dumps(self.make().add_many(values[:300])))
        assert sketch == self.make().add_many(values[:300])
        sketch.add_many(values[300:]).merge(pickle.loads(pickle.dumps(self.make().add_many(values))))
        assert self.state(sketch) == self.state(self.make().add_many(values).add_many(values))

    def test_round_trip_bytes(self):
        rng = np.random.default_rng(5)
        sketch = self.make().add_many(self.data(rng, 500))
        decoded = type(sketch).from_bytes(sketch.to_bytes())
        assert decoded == sketch
        assert decoded.to_bytes() == sketch.to_bytes()
        empty = self.make()
        assert type(empty).from_bytes(empty.to_bytes()) == empty

    def test_from_bytes_rejects_garbage(self):
        sketch = self.make().add_many(self.data(np.random.default_rng(6), 10))
        data = sketch.to_bytes()
        with pytest.raises(ValueError, match="version"):
            type(sketch).from_bytes(data[:1] + b"\x09" + data[2:])
        with pytest.raises(ValueError):
            type(sketch).from_bytes(data[:-3])
        with pytest.raises(ValueError, match="type"):
            type(sketch).from_bytes(b"Z\x01" + data[2:])
        with pytest.raises(ValueError, match="trailing"):
            type(sketch).from_bytes(data + b"\x00")

    def test_copy_is_independent(self):
        rng = np.random.default_rng(7)
        first, second = self.data(rng, 100), self.data(rng, 100)
        sketch = self.make().add_many(first)
        before = sketch.to_bytes()
        clone = sketch.copy()
        clone.add_many(second)
        assert clone.count == sketch.count + self.make().add_many(second).count
        assert sketch.to_bytes() == before

    def test_empty_input_is_a_no_op(self):
        sketch = self.make()
        sketch.add_many(self.data(np.random.default_rng(8), 0))
        assert sketch.count == 0
        assert sketch == self.make()


class TestDDSketchContract(SketchContract):
    def make(self):
        return DDSketch(0.01)

    def data(self, rng, n):
        return np.concatenate([rng.lognormal(0, 2, n - n // 4), -rng.lognormal(0, 1, n // 8), np.zeros(n // 4 - n // 8)])

    def state(self, sketch):
        # float sums may differ by rounding with the order of additions
        return (sketch.positive.counts.tolist(), sketch.negative.counts.tolist(), sketch.zero_count,
                sketch.min, sketch.max, sketch.count, pytest.approx(sketch.sum, rel=1e-9))

    def test_merge_of_shards_equals_adding_everything(self):
        # bucket arrays may be allocated differently; compare canonical bytes minus the sum
        rng = np.random.default_rng(2)
        values = self.data(rng, 3000)
        whole = DDSketch().add_many(values)
        merged = DDSketch()
        for shard in np.array_split(values, 5):
            merged.merge(DDSketch().add_many(shard))
        assert merged.quantiles(np.linspace(0, 1, 101)) == whole.quantiles(np.linspace(0, 1, 101))
        assert (merged.count, merged.min, merged.max, merged.zero_count) == (
            whole.count, whole.min, whole.max, whole.zero_count)
        assert merged.sum == pytest.approx(whole.sum, rel=1e-12)

    def test_add_many_equals_add(self):
        rng = np.random.default_rng(1)
        values = self.data(rng, 200)
        one_by_one = DDSketch()
        for value in values:
            one_by_one.add(value)
        batch = DDSketch().add_many(values)
        assert one_by_one.quantiles(np.linspace(0, 1, 41)) == batch.quantiles(np.linspace(0, 1, 41))
        assert one_by_one.count == batch.count


class TestFixedHistogramContract(SketchContract):
    EDGES = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])

    def make(self):
        return FixedHistogram(self.EDGES)

    def data(self, rng, n):
        values = np.round(rng.normal(0.5, 1.0, n), 1)
        values[rng.random(n) < 0.1] = np.nan
        return values


class TestExactEdgeHistogramContract(TestFixedHistogramContract):
    def make(self):
        return FixedHistogram(self.EDGES, exact_edges=True)


class TestCategoryCounterContract(SketchContract):
    def make(self):
        return CategoryCounter(["a", "b", "c"])

    def data(self, rng, n):
        return rng.choice(np.array(["a", "b", "c", "d", "é", None], dtype=object), n)
