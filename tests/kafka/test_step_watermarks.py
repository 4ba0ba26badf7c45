"""A Kafka read step's partitions are held to the slowest of them (no broker needed)."""

from __future__ import annotations

import time

from transforms.kafka import _StepWatermarks

P0, P1, L0 = ("preds", 0), ("preds", 1), ("labels", 0)


def test_each_partition_reports_the_slowest_of_its_step():
    marks = _StepWatermarks()
    siblings = (P0, P1, L0)
    assert marks.report("s", P0, 1_000, siblings) == 0  # P1 and L0 have read nothing yet
    assert marks.report("s", P1, 400) == 0
    assert marks.report("s", L0, 9_000) == 400
    assert marks.report("s", P0, 300) == 300  # an estimate may go back (a partition restored from a checkpoint)
    assert marks.report("s", P0, 1_000) == 400
    assert marks.report("other", P0, 7) == 7  # steps are apart
    marks.done("s", P1)
    assert marks.report("s", L0, 9_500) == 1_000
    assert marks.report("s", P0, 1_200, siblings) == 1_200  # a finished sibling is not taken back in
    marks.done("s", P0)
    assert marks.report("s", L0, 9_600) == 9_600


def test_a_partition_not_heard_of_lately_holds_nothing_back():
    marks = _StepWatermarks(stale_seconds=0.2, unheard_seconds=0.2)
    marks.report("s", P0, 100, (P0, P1))
    time.sleep(0.3)
    assert marks.report("s", P0, 200) == 200


def test_a_sibling_never_heard_of_is_let_go_sooner():
    marks = _StepWatermarks(stale_seconds=30, unheard_seconds=0.2)
    assert marks.report("s", P0, 100, (P0, P1)) == 0
    time.sleep(0.3)  # P1 is read by another worker
    assert marks.report("s", P0, 200) == 200


def _reader(step: str):
    from ampel_monitor.config import KafkaConfig
    from transforms.kafka import _ReadPartitionDoFn

    return _ReadPartitionDoFn(KafkaConfig("127.0.0.1:1"), {}, 60_000, 120_000, None, step)


def _estimator():
    """A fresh partition's estimator, as the runner hands it to the DoFn (wrapped)."""
    from apache_beam.runners.sdf_utils import ThreadsafeWatermarkEstimator

    from transforms.kafka import _WatermarkProvider

    provider = _WatermarkProvider()
    return ThreadsafeWatermarkEstimator(provider.create_watermark_estimator(provider.initial_estimator_state(None, None)))


def test_partitions_read_side_by_side_move_the_watermark_on():
    """Two partitions whose calls overlap: each reads on while the other's call starts. A
    call puts its partition's own estimate among the step's, not the watermark it holds
    (the step's minimum when it last read): that fed the minimum back into itself, and
    the watermark stayed at the epoch while events flowed."""
    reader, siblings = _reader("side-by-side"), (P0, P1)
    a, b = _estimator(), _estimator()
    reader._resume(a, P0, siblings)
    reader._resume(b, P1, siblings)
    held = []
    for newest in range(1_000, 6_000, 1_000):
        reader._advance(a, P0, newest)  # a's call reads on, then a's next call starts
        reader._resume(a, P0, siblings)
        reader._advance(b, P1, newest)  # meanwhile b's call reads as far, then its next starts
        reader._resume(b, P1, siblings)
        held.append((a.current_watermark().micros // 1000, b.current_watermark().micros // 1000))
    assert held == [(0, 1_000), (1_000, 2_000), (2_000, 3_000), (3_000, 4_000), (4_000, 5_000)]
    assert a.get_estimator_state() == (5_000, 4_000)  # its own estimate, and the watermark it holds


def test_an_estimate_never_goes_back_within_a_partition():
    """Events out of order: a later batch's newest event is older than an earlier one's."""
    reader = _reader("out-of-order")
    a = _estimator()
    reader._resume(a, P0, (P0,))
    reader._advance(a, P0, 5_000)
    reader._advance(a, P0, 3_000)
    assert a.get_estimator_state() == (5_000, 5_000)
    reader._resume(a, P0, (P0,))  # the next call
    reader._advance(a, P0, 4_000)
    assert a.get_estimator_state() == (5_000, 5_000)
