"""The prediction-label join of one shard: pairs, expiry, labels without predictions."""

from __future__ import annotations

import json
import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ampel_monitor.events import EventBatch
from ampel_monitor.labels import Arrivals, LabelBatch, Offsets, PendingJoin, decode_labels, event_keys

MINUTE = 60_000


def predictions(ids, ts, version="v1", prediction=None):
    n = len(ids)
    return EventBatch("m", version, 0, np.array(ts, dtype=np.int64), np.ones(n), np.zeros(n, bool), np.full(n, 0.8),
                      np.array(prediction or ["yes"] * n, dtype=object), {}, np.array(ids, dtype=object),
                      {"sex": np.array(["f", "m"] * (n // 2) + ["f"] * (n % 2), dtype=object)})


def labels(ids, ts, values=None, sources=()):
    return LabelBatch("m", np.array(ids, dtype=object), np.array(values or ["yes"] * len(ids), dtype=object),
                      np.array(ts, dtype=np.int64), sources)


def keyed(ids) -> list[tuple[int, int]]:
    """The keys of event ids as the join holds them, sorted."""
    return waiting(event_keys(np.array(list(ids), dtype=object)))


def waiting(keys: np.ndarray) -> list[tuple[int, int]]:
    return sorted(map(tuple, keys.tolist()))


def test_labels_meet_their_predictions_in_either_order_and_pairs_keep_the_prediction_time():
    join = PendingJoin(max_delay_ms=60 * MINUTE, grace_ms=5 * MINUTE, slide_ms=MINUTE, sensitive=("sex",))
    pairs, dead = join.add_predictions(predictions(["a", "b", "c"], [10, MINUTE + 5, 2 * MINUTE], prediction=["yes", "no", "yes"]))
    assert pairs == [] and dead == [] and len(join) == 3
    pairs, dead = join.add_labels(labels(["b", "a", "z"], [3 * MINUTE, 4 * MINUTE, 4 * MINUTE], ["yes", "no", "no"]))
    assert not dead
    got = sorted((p.slice_start_ms, list(p.predictions), list(p.labels), list(p.attributes["sex"])) for p in pairs)
    assert got == [(0, ["yes"], ["no"], ["f"]), (MINUTE, ["no"], ["yes"], ["m"])]
    assert waiting(join.predictions) == keyed(["c"]) and waiting(join.labels) == keyed(["z"])
    pairs, _ = join.add_predictions(predictions(["z"], [3 * MINUTE]))  # the label came first
    assert [list(p.labels) for p in pairs] == [["no"]] and len(join) == 1


def test_waiting_expires_predictions_and_dead_letters_lonely_labels():
    join = PendingJoin(max_delay_ms=10 * MINUTE, grace_ms=2 * MINUTE, slide_ms=MINUTE)
    join.add_predictions(predictions(["a", "b"], [0, 5 * MINUTE]))
    join.add_labels(labels(["x", "y"], [MINUTE, MINUTE]))
    join.add_labels(labels(["w"], [MINUTE], sources=Offsets("labels/1@", np.array([41]))))
    join = pickle.loads(pickle.dumps(join))  # as the streaming join keeps it between ticks
    assert join.next_deadline() == 4 * MINUTE  # 3 min + 1 ms, rounded up to the slice
    expired, dead = join.expire("m", 4 * MINUTE)
    assert expired == 0 and [d.reason for d in dead] == ["label_without_prediction"] * 3
    assert [d.source for d in dead] == ["labels of m", "labels of m", "labels/1@41"]
    expired, dead = join.expire("m", 10 * MINUTE + 1)
    assert expired == 1 and not dead and waiting(join.predictions) == keyed(["b"])
    # a label later than the maximum delay is dead-lettered even before its prediction expired
    pairs, dead = join.add_labels(labels(["b"], [16 * MINUTE], sources=("l.jsonl:7",)))
    assert pairs == [] and [d.reason for d in dead] == ["label_too_late"] and len(join) == 0
    assert dead[0].source == "l.jsonl:7"


def test_offsets_name_messages_only_when_asked_and_follow_a_selection():
    names = Offsets("labels/0@", np.array([7, 9, 12]))
    batch = labels(["a", "b", "c"], [1, 2, 3], sources=names)
    picked = batch.take(np.array([False, True, True]))
    assert list(picked.sources) == ["labels/0@9", "labels/0@12"] and list(picked.event_ids) == ["b", "c"]
    assert list(labels(["a", "b"], [1, 2], sources=("f:1", "f:2")).take(np.array([1])).sources) == ["f:2"]
    assert labels(["a"], [1]).take(np.array([0])).sources == ()
    # what the join is sent of a partition's labels holds its name once, not once a label
    many = labels([f"e{i}" for i in range(1000)], list(range(1000)), sources=Offsets("labels/0@", np.arange(1000)))
    origin = Arrivals.labels(many).columns["origin"]
    assert origin.tolist() == ["labels/0@"] * 1000 and len(pickle.dumps(origin)) < 3 * 1000


def test_decode_labels_rejects_bad_records_with_reasons():
    records = [("l:1", {"event_id": "a", "model_id": "m", "label": "yes", "timestamp": 5}, None),
               ("l:2", {"event_id": "b", "model_id": "other", "label": "yes", "timestamp": 5}, None),
               ("l:3", {"event_id": "c", "model_id": "m", "timestamp": 5}, None),
               ("l:4", {"event_id": "d", "model_id": "m", "label": [1], "timestamp": 5}, None),
               ("l:5", {"event_id": "e", "model_id": "m", "label": 2.5, "timestamp": "2026-01-01T00:00:00Z"}, None)]
    batches, dead = decode_labels(records, ["m"])
    assert [d.reason for d in dead] == ["unknown_model", "missing_field", "bad_type"]
    (batch,) = batches
    assert list(batch.event_ids) == ["a", "e"] and list(batch.labels) == ["yes", 2.5]
    assert list(batch.timestamps) == [5, 1_767_225_600_000] and batch.sources == ("l:1", "l:5")


def test_waiting_state_stays_bounded_however_many_predictions_expire():
    """Two hours of 100 unlabelled predictions a minute, the watermark one minute behind: what
    waits is at most the last ``max_delay`` of predictions, and its pickled size levels off."""
    import pickle

    join = PendingJoin(max_delay_ms=10 * MINUTE, grace_ms=MINUTE, slide_ms=MINUTE)
    sizes, expired = [], 0
    for minute in range(120):
        ids = [f"p{minute:04d}-{i:03d}" for i in range(100)]
        join.add_predictions(predictions(ids, [minute * MINUTE + i for i in range(100)]))
        gone, _ = join.expire("m", minute * MINUTE)
        expired += gone
        sizes.append((len(join), len(pickle.dumps(join))))
    assert max(n for n, _ in sizes) == 1100 and sizes[-1][0] == 1100  # 11 minutes of predictions
    assert expired == 120 * 100 - 1100
    assert sizes[-1][1] <= 1.01 * sizes[20][1]  # the same size after 20 minutes as after 120


class _DictJoin:
    """The join's rules one event at a time, in dicts: the oracle for PendingJoin's columns."""

    def __init__(self, max_delay_ms, grace_ms, slide_ms):
        self.max_delay_ms, self.grace_ms, self.slide_ms = max_delay_ms, grace_ms, slide_ms
        self.predictions, self.labels = {}, {}

    def _pair(self, event_id, entry, label, made, dead):
        if label[1] - entry[1] > self.max_delay_ms:
            dead.append(("label_too_late", event_id))
        else:
            made.append((entry[0], entry[1] - entry[1] % self.slide_ms, entry[2], label[0], entry[3], entry[4]))

    def add_predictions(self, batch):
        made, dead = [], []
        for i, event_id in enumerate(batch.event_ids.tolist()):
            entry = (batch.version, int(batch.timestamps[i]), batch.prediction[i], float(batch.confidence[i]),
                     batch.attributes["sex"][i])
            label = self.labels.pop(event_id, None)
            if label is None:
                self.predictions[event_id] = entry
            else:
                self._pair(event_id, entry, label, made, dead)
        return made, dead

    def add_labels(self, batch):
        made, dead = [], []
        for event_id, label, ts in zip(batch.event_ids.tolist(), batch.labels.tolist(), batch.timestamps.tolist()):
            entry = self.predictions.pop(event_id, None)
            if entry is None:
                self.labels[event_id] = (label, ts)
            else:
                self._pair(event_id, entry, (label, ts), made, dead)
        return made, dead

    def expire(self, watermark_ms):
        old = [k for k, v in self.predictions.items() if v[1] + self.max_delay_ms < watermark_ms]
        for key in old:
            del self.predictions[key]
        stale = [k for k, v in self.labels.items() if v[1] + self.grace_ms < watermark_ms]
        for key in stale:
            del self.labels[key]
        return len(old), [("label_without_prediction", k) for k in stale]


def _flat(pairs):
    return sorted((p.version, p.slice_start_ms, pred, label, conf, sex) for p in pairs for pred, label, conf, sex in
                  zip(p.predictions.tolist(), p.labels.tolist(), p.confidence.tolist(), p.attributes["sex"].tolist()))


OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("p"), st.lists(st.tuples(st.integers(0, 30), st.integers(0, 20), st.sampled_from(["v1", "v2"])),
                                     max_size=12)),
    st.tuples(st.just("l"), st.lists(st.tuples(st.integers(0, 30), st.integers(0, 40)), max_size=12)),
    st.tuples(st.just("x"), st.integers(0, 60)),
    st.tuples(st.just("pickle"), st.none()),
), max_size=25)


@settings(max_examples=400, deadline=None)
@given(OPERATIONS)
def test_the_columnar_join_pairs_expires_and_dead_letters_as_the_rules_one_by_one(operations):
    import pickle

    join, oracle = PendingJoin(10 * MINUTE, 3 * MINUTE, MINUTE, sensitive=("sex",)), _DictJoin(10 * MINUTE, 3 * MINUTE, MINUTE)
    for kind, arg in operations:
        if kind == "p":
            for version in ("v1", "v2"):
                rows = [(i, t) for i, t, v in arg if v == version]
                if not rows:
                    continue
                n = len(rows)
                batch = EventBatch("m", version, 0, np.array([t * MINUTE // 2 for _, t in rows], dtype=np.int64), np.ones(n),
                                   np.zeros(n, bool), np.arange(n) / 10, np.array([f"c{i % 3}" for i, _ in rows], dtype=object),
                                   {}, np.array([f"e{i}" for i, _ in rows], dtype=object),
                                   {"sex": np.array([("f", "m")[i % 2] for i, _ in rows], dtype=object)})
                (pairs, dead), (want, want_dead) = join.add_predictions(batch), oracle.add_predictions(batch)
                assert _flat(pairs) == sorted(want) and sorted((d.reason, json.loads(d.record)["event_id"]) for d in dead) == sorted(want_dead)
        elif kind == "l":
            if not arg:
                continue
            batch = LabelBatch("m", np.array([f"e{i}" for i, _ in arg], dtype=object),
                               np.array([f"c{(i + t) % 3}" for i, t in arg], dtype=object),
                               np.array([t * MINUTE // 2 for _, t in arg], dtype=np.int64))
            (pairs, dead), (want, want_dead) = join.add_labels(batch), oracle.add_labels(batch)
            assert _flat(pairs) == sorted(want) and sorted((d.reason, json.loads(d.record)["event_id"]) for d in dead) == sorted(want_dead)
        elif kind == "x":
            (expired, dead), (want, want_dead) = join.expire("m", arg * MINUTE // 2), oracle.expire(arg * MINUTE // 2)
            assert expired == want and sorted((d.reason, json.loads(d.record)["event_id"]) for d in dead) == sorted(want_dead)
        else:
            join = pickle.loads(pickle.dumps(join))
        assert waiting(join.predictions) == keyed(oracle.predictions) and waiting(join.labels) == keyed(oracle.labels)
        assert len(join) == len(oracle.predictions) + len(oracle.labels)
        times = [v[1] + oracle.max_delay_ms for v in oracle.predictions.values()] + [
            v[1] + oracle.grace_ms for v in oracle.labels.values()]
        assert join.next_deadline() == (None if not times else min(times) + 1 + (-(min(times) + 1)) % MINUTE)


def test_keys_are_the_xxh3_128_of_the_ids_and_rows_sharing_a_high_half_are_told_apart():
    import xxhash

    from ampel_monitor.labels import _Waiting

    (key,) = event_keys(np.array(["e-1"], dtype=object)).tolist()
    digest = xxhash.xxh3_128_digest(b"e-1")
    assert key == [int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little")]
    # keys made to share their high half (a 2^-64 chance between two ids): each finds its own row
    side = _Waiting()
    side.add(np.array([[1, 5], [1, 6], [2, 5]], dtype=np.uint64), {"ts": np.array([10, 11, 12])})
    side.remove(np.array([0]))  # (1, 5) leaves, then waits again, newer, twice in one batch
    side.add(np.array([[1, 5], [1, 5]], dtype=np.uint64), {"ts": np.array([13, 14])})
    found = side.find(np.array([[1, 6], [1, 5], [1, 7], [2, 5], [3, 5]], dtype=np.uint64))
    assert side.take(found[found >= 0])["ts"].tolist() == [11, 14, 12] and (found < 0).tolist() == [
        False, False, True, False, True]
    assert len(side) == 3 and waiting(side.keys()) == [(1, 5), (1, 6), (2, 5)]
