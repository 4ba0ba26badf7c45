"""Remote write: encoding, response classification, batching and bisection of rejections.

The writer's logic is checked here against a recording session (no server); the real
Prometheus is exercised in tests/sinks/test_prometheus_it.py and the live stack tests.
"""

from __future__ import annotations

import random

import cramjam
import pytest
import requests

from ampel_monitor.config import PrometheusSink, RetryPolicy
from ampel_monitor.remote_write import RemoteWriter, _WriteRequest, classify, decode, encode
from ampel_monitor.series import SERIES, window_series
from tests.sinks.records import ab_record, quality_record, window_metrics


def test_encode_groups_samples_into_series_with_sorted_labels():
    windows = [window_metrics(end_minute=m) for m in (1, 2)]
    samples = [s for w in windows for s in window_series(w, "5m")]
    request = _WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(encode(samples))))
    per_window = len(window_series(windows[0], "5m"))
    assert len(request.timeseries) == per_window  # the same label sets in both windows
    for series in request.timeseries:
        names = [label.name for label in series.labels]
        assert names[0] == "__name__" and names == sorted(names)
        assert [s.timestamp for s in series.samples] == [window_metrics(end_minute=m)["_end_ms"] for m in (1, 2)]
    assert sorted(decode(encode(samples)), key=repr) == sorted(samples, key=repr)


def test_series_names_are_catalogued_and_follow_the_conventions():
    metrics = window_metrics(end_minute=1)
    names = {s.name for s in window_series(metrics, "5m")}
    assert names <= set(SERIES)
    for sample in window_series(metrics, "5m"):
        assert {k for k, _ in sample.labels} <= {"model", "version", "window", "feature"}
    by_name = {(s.name, dict(s.labels).get("feature")): s.value for s in window_series(metrics, "5m")}
    assert by_name[("ampel_latency_p95_seconds", None)] == pytest.approx(metrics["latency_ms"]["p95"] / 1000)
    assert by_name[("ampel_feature_psi", "x")] == metrics["features"]["x"]["psi"]
    assert by_name[("ampel_feature_drifted", "x")] == 1.0
    assert ("ampel_confidence_mean", None) not in by_name  # unknown in this window: omitted, not NaN


def test_quality_series_carry_the_pane_as_milliseconds_after_the_window_end():
    record = quality_record(end_minute=3, pane=7)
    samples = window_series(record, "5m", "quality")
    assert {s.name for s in samples} <= set(SERIES) and {s.timestamp_ms for s in samples} == {record["_end_ms"] + 7}
    by_name = {(s.name, tuple(sorted(dict(s.labels).items()))): s.value for s in samples}
    base = (("model", "alpha"), ("version", "v1"), ("window", "5m"))
    assert by_name[("ampel_accuracy_ratio", base)] == record["quality"]["accuracy"]
    assert by_name[("ampel_labelled_ratio", base)] == 0.5
    sex = tuple(sorted((*base, ("attribute", "sex"))))
    assert by_name[("ampel_bias_disparate_impact_ratio", sex)] == 0.6
    assert by_name[("ampel_bias_disparate_impact_pvalue", sex)] == 0.04
    f = tuple(sorted((*base, ("attribute", "sex"), ("subgroup", "f"))))
    assert (by_name[("ampel_subgroup_positive_ratio", f)], by_name[("ampel_subgroup_labelled_predictions", f)]) == (0.3, 30)
    m = tuple(sorted((*base, ("attribute", "sex"), ("subgroup", "m"))))
    assert ("ampel_subgroup_tpr_ratio", m) not in by_name  # None: omitted
    assert ("ampel_mae", base) not in by_name and ("ampel_bias_equal_opportunity_difference", sex) not in by_name


def test_ab_series_label_the_compared_version_and_its_baseline():
    speed = {s.name: (dict(s.labels), s.value) for s in window_series(ab_record(2), "5m", "ab")}
    assert set(speed) == {"ampel_ab_error_ratio_difference", "ampel_ab_error_ratio_pvalue",
                          "ampel_ab_latency_p95_difference_seconds"}
    labels, value = speed["ampel_ab_latency_p95_difference_seconds"]
    assert labels == {"model": "alpha", "version": "v2", "baseline": "v1", "window": "5m"} and value == 0.012
    accuracy = {s.name: s.value for s in window_series(ab_record(2, "quality", pane=3), "5m", "ab")}
    assert accuracy == {"ampel_ab_accuracy_difference": -0.05, "ampel_ab_accuracy_pvalue": 0.01}


@pytest.mark.parametrize(("status", "text", "expected"), [
    (200, "", "ok"), (204, "", "ok"),
    (400, "out of order sample", "permanent"), (400, "anything", "permanent"), (404, "", "permanent"),
    (500, "too old sample", "permanent"), (500, "out of bounds", "permanent"),
    (500, "disk full", "transient"), (503, "", "transient"), (429, "slow down", "transient"),
])
def test_classify(status, text, expected):
    assert classify(status, text) == expected


def test_backoff_grows_to_its_cap_with_jitter():
    delays = RetryPolicy(initial_backoff=1, max_backoff=8).delays(random.Random(1))
    waits = [next(delays) for _ in range(8)]
    caps = [1, 2, 4, 8, 8, 8, 8, 8]
    assert all(cap / 2 <= w <= cap for w, cap in zip(waits, caps))


class _Response:
    def __init__(self, status: int, text: str = "") -> None:
        self.status_code, self.text = status, text


class _Prometheus:
    """Rejects any request holding a sample at one of ``bad`` timestamps; fails the first ``down`` tries."""

    def __init__(self, bad: set[int] = frozenset(), down: int = 0) -> None:
        self.bad, self.down, self.requests, self.accepted = bad, down, [], []
        self.headers: dict = {}

    def post(self, url, data, timeout):
        self.requests.append(decode(data))
        if self.down:
            self.down -= 1
            raise requests.ConnectionError("refused")
        if any(s.timestamp_ms in self.bad for s in self.requests[-1]):
            return _Response(500, "too old sample")
        self.accepted.extend(self.requests[-1])
        return _Response(204)


def _writer(session, batch_size=10_000, deadline=60.0):
    clock = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    writer = RemoteWriter(PrometheusSink(url="http://prometheus/api/v1/write", batch_size=batch_size,
                                         retry=RetryPolicy(initial_backoff=1, max_backoff=4, deadline=deadline)),
                          "5m", session=session, sleep=sleep, clock=lambda: clock[0])
    return writer, waits


def test_a_rejected_window_is_isolated_and_dead_lettered_the_others_delivered():
    windows = [window_metrics(end_minute=m) for m in range(1, 9)]
    bad = {windows[2]["_end_ms"], windows[5]["_end_ms"]}
    server = _Prometheus(bad=bad)
    writer, waits = _writer(server)
    result = writer.write(windows)
    per_window = len(window_series(windows[0], "5m"))
    assert result.samples == 6 * per_window == len(server.accepted)
    assert {s.timestamp_ms for s in server.accepted} == {w["_end_ms"] for w in windows} - bad
    assert [d["reason"] for d in result.dead_letters] == ["prometheus_rejected"] * 2
    assert sorted(d["source"] for d in result.dead_letters) == sorted(
        f"prometheus:alpha/v1@{windows[i]['window_end']}" for i in (2, 5))
    assert "too old sample" in result.dead_letters[0]["detail"]
    assert waits == []  # permanent: never retried


def test_batches_hold_at_most_batch_size_series():
    windows = [window_metrics(end_minute=m) for m in range(1, 6)]
    per_window = len(window_series(windows[0], "5m"))
    server = _Prometheus()
    writer, _ = _writer(server, batch_size=2 * per_window)
    assert writer.write(windows).samples == 5 * per_window
    assert [len(r) for r in server.requests] == [2 * per_window, 2 * per_window, per_window]


def test_transient_failures_are_retried_with_growing_waits_then_delivered():
    server = _Prometheus(down=3)
    writer, waits = _writer(server)
    result = writer.write([window_metrics(end_minute=1)])
    assert result.retries == 3 and not result.dead_letters
    assert len(waits) == 3 and 0.5 <= waits[0] <= 1 and 1 <= waits[1] <= 2 and 2 <= waits[2] <= 4


def test_an_outage_longer_than_the_deadline_dead_letters_every_window():
    server = _Prometheus(down=10**6)
    writer, waits = _writer(server, deadline=30)
    windows = [window_metrics(end_minute=m) for m in (1, 2)]
    result = writer.write(windows)
    assert [d["reason"] for d in result.dead_letters] == ["prometheus_unavailable"] * 2
    assert sum(waits) <= 30 and result.retries == len(waits) >= 5
    assert "gave up after 30s" in result.dead_letters[0]["detail"]
