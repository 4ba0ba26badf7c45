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
