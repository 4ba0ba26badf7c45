"""The Elasticsearch/OpenSearch writer: ids, index names and sampling without a node; the
rest against a real Elasticsearch node and a real OpenSearch node."""

from __future__ import annotations

import hashlib
import json
import math
import socket
import uuid
from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import elasticsearch
import pytest

from ampel_monitor.config import ElasticsearchSink, RetryPolicy
from ampel_monitor.elastic import (
    KINDS,
    BulkWriter,
    alias_name,
    document_id,
    index_name,
    index_template,
    sample,
)
from ampel_monitor.window import rfc3339
from tests.services import PORT_OFFSET, Elasticsearch
from tests.sinks.records import ab_record as _ab_record
from tests.sinks.records import quality_record as _quality_record

DAY_MS = 86_400_000
#: 2026-01-01T00:00:00Z
JAN1_MS = 1_767_225_600_000


def metrics(end_ms: int = JAN1_MS + 600_000, count: int = 100, model: str = "alpha", **extra: Any) -> dict[str, Any]:
    return {
        "model": model, "version": "v1", "window_start": rfc3339(end_ms - 300_000), "window_end": rfc3339(end_ms),
        "count": count, "errors": 1, "throughput_rps": count / 300, "error_rate": 1 / count,
        "latency_ms": {"p50": 31.5, "p90": 60.2, "p95": 80.9, "p99": 150.0, "max": 410.0},
        "features": {
            "x": {"kind": "numeric", "count": count, "psi": 0.31, "js": 0.12, "ks_statistic": 0.2,
                  "ks_pvalue": 0.001, "missing_share": 0.0, "drifted": True},
            "city": {"kind": "categorical", "count": count, "psi": 0.01, "js": 0.02, "chi2_statistic": 1.5,
                     "chi2_pvalue": 0.68, "missing_share": None, "drifted": False},
        },
        "drifted_features": ["x"], "share_drifted": 0.5, "late": False, **extra,
    }


def alert(state: str = "firing", end_ms: int = JAN1_MS + 600_000) -> dict[str, Any]:
    return {"model": "alpha", "version": "v1", "window_start": rfc3339(end_ms - 300_000),
            "window_end": rfc3339(end_ms), "rule": "latency_p95", "severity": "critical", "value": 1.8,
            "threshold": 1, "state": state, "detail": "p95 latency in seconds"}


def quality_record(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in _quality_record(*args, **kwargs).items() if k != "_end_ms"}


def ab_record(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in _ab_record(*args, **kwargs).items() if k != "_end_ms"}


def decision(event_id: str, timestamp_ms: int = JAN1_MS + 1234, features: dict | None = None) -> dict[str, Any]:
    return {"event_id": event_id, "model": "alpha", "version": "v1", "timestamp": timestamp_ms, "latency_ms": 12.5,
            "status": "ok", "error_code": None, "features": features or {"age": 41, "city": "Lyon", "income": None},
            "prediction": "approve", "confidence": 0.93}


def dead_letter(n: int) -> dict[str, str]:
    return {"reason": "bad_type", "detail": "latency_ms is not a number", "source": f"predictions/0@{n}",
            "record": json.dumps({"event_id": f"e{n}", "latency_ms": "fast"})}


def config(url: str, prefix: str, **kwargs: Any) -> ElasticsearchSink:
    return ElasticsearchSink(hosts=(url,), index_prefix=prefix, **kwargs)


def unique_prefix() -> str:
    return f"it-{uuid.uuid4().hex[:10]}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeTime:
    """A monotonic clock that only the fake sleep advances."""

    def __init__(self) -> None:
        self.now, self.waits = 1000.0, []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


# ---------------------------------------------------------------- without a node


def test_ids_are_the_sha1_of_the_key_and_ignore_everything_else():
    key = json.dumps(["alpha", "e-1"], separators=(",", ":"))
    assert document_id("decisions", decision("e-1")) == hashlib.sha1(key.encode()).hexdigest()
    assert document_id("decisions", decision("e-1")) == document_id("decisions", decision("e-1", timestamp_ms=5))
    assert document_id("decisions", decision("e-1")) != document_id("decisions", decision("e-2"))
    # a later pane of the same window has the same id; times are compared as instants
    on_time, late = metrics(count=100), metrics(count=130, late=True)
    same_instant = {**on_time, "window_end": rfc3339(JAN1_MS + 600_000).replace("Z", ".000+00:00")}
    assert document_id("metrics", on_time) == document_id("metrics", late) == document_id("metrics", same_instant)
    assert document_id("metrics", on_time) != document_id("metrics", metrics(end_ms=JAN1_MS + 660_000))
    # firing and resolved are two documents
    assert document_id("alerts", alert("firing")) != document_id("alerts", alert("resolved"))
    assert document_id("alerts", alert()) == document_id("alerts", {**alert(), "value": 2.0})
    assert document_id("dead_letters", dead_letter(1)) != document_id("dead_letters", dead_letter(2))
    assert len(document_id("dead_letters", dead_letter(1))) == 40
    with pytest.raises(KeyError):
        document_id("alerts", {"model": "alpha"})
    with pytest.raises(ValueError, match="kind should be one of"):
        document_id("metric", on_time)


def test_daily_index_names_follow_the_utc_day_and_the_alias_the_kind():
    assert index_name("ampel", "metrics", JAN1_MS) == "ampel-metrics-2026.01.01"
    assert index_name("ampel", "metrics", JAN1_MS - 1) == "ampel-metrics-2025.12.31"
    assert index_name("p1", "dead_letters", JAN1_MS + DAY_MS - 1) == "p1-dead_letters-2026.01.01"
    assert [alias_name("ampel", k) for k in KINDS] == [
        "ampel-metrics", "ampel-quality", "ampel-ab", "ampel-alerts", "ampel-decisions", "ampel-dead_letters"]


def test_templates_take_the_prefix_and_match_the_conventions():
    for kind in KINDS:
        body = index_template(kind, "team-a")
        assert body["index_patterns"] == [f"team-a-{kind}-*"]
        assert body["template"]["aliases"] == {f"team-a-{kind}": {}}
        assert body["template"]["settings"] == {"number_of_shards": 1, "number_of_replicas": 0}
        properties = body["template"]["mappings"]["properties"]
        assert properties["@timestamp"] == {"type": "date"}
    decisions = index_template("decisions", "ampel")["template"]["mappings"]["properties"]
    assert decisions["features"] == {"type": "object", "enabled": False}


def test_sampling_keeps_the_share_within_a_binomial_bound_and_is_deterministic():
    ids = [f"event-{i}" for i in range(100_000)]
    for share in (0.01, 0.1, 0.5):
        kept = sum(sample(i, share) for i in ids)
        sigma = math.sqrt(len(ids) * share * (1 - share))
        assert abs(kept - share * len(ids)) < 5 * sigma, (share, kept)
    # the same answer every time, and a larger share keeps a superset
    assert [sample(i, 0.1) for i in ids[:1000]] == [sample(i, 0.1) for i in ids[:1000]]
    assert all(sample(i, 0.2) for i in ids[:5000] if sample(i, 0.1))
    assert all(sample(i, 1.0) for i in ids[:1000]) and not any(sample(i, 0.0) for i in ids[:1000])
    with pytest.raises(ValueError, match=r"share should be within \[0, 1\], got 1.5"):
        sample("e", 1.5)


def test_records_that_cannot_be_documents_are_dead_lettered_without_a_request():
    writer = BulkWriter(config(f"http://127.0.0.1:{closed_port()}", "p"), sleep=pytest.fail)
    bad = [("metrics", {"model": "alpha"}), ("metrics", metrics(throughput_rps=math.nan)),
           ("decisions", decision("e", timestamp_ms="yesterday")), ("alerts", None)]
    dead = writer.write(bad)
    assert [d["reason"] for d in dead] == ["elasticsearch_rejected"] * 4
    assert "KeyError: 'window_end'" in dead[0]["detail"]
    assert "Out of range float values" in dead[1]["detail"]
    assert [d["source"] for d in dead] == ["elasticsearch:metrics", "elasticsearch:metrics",
                                           "elasticsearch:decisions", "elasticsearch:alerts"]
    assert writer.stats.rejected == 4 and writer.stats.written == 0
    with pytest.raises(ValueError, match="kind should be one of"):
        writer.write([("metric", metrics())])


def test_a_missing_secret_is_a_config_error(monkeypatch):
    monkeypatch.delenv("AMPEL_TEST_ES_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="AMPEL_TEST_ES_PASSWORD"):
        BulkWriter(config("http://127.0.0.1:9", "p", username="u", password_env="AMPEL_TEST_ES_PASSWORD"))
    monkeypatch.setenv("AMPEL_TEST_ES_PASSWORD", "s3cret")
    BulkWriter(config("http://127.0.0.1:9", "p", username="u", password_env="AMPEL_TEST_ES_PASSWORD"))


class ScriptedClient:
    """Answers each ``_bulk`` with the next list of item statuses (or raises the next exception)."""

    def __init__(self, *answers: Any) -> None:
        self.answers, self.requests = list(answers), []

    def bulk(self, operations: str) -> SimpleNamespace:
        lines = operations.splitlines()
        ids = [json.loads(action)["index"]["_id"] for action in lines[::2]]
        self.requests.append(ids)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        errors = {429: "es_rejected_execution_exception", 400: "document_parsing_exception",
                  409: "version_conflict_engine_exception", 503: "unavailable_shards_exception"}
        items = [{"index": {"_id": i, "status": s, **({"error": {"type": errors[s], "reason": "r"}} if s >= 300 else {})}}
                 for i, s in zip(ids, answer)]
        return SimpleNamespace(body={"errors": True, "items": items})


def test_per_item_failures_are_classified_and_only_transient_ones_retried():
    fake = FakeTime()
    writer = BulkWriter(config("http://127.0.0.1:9", "p", retry=RetryPolicy(initial_backoff=0.2)),
                        sleep=fake.sleep, clock=fake.clock)
    writer._client = ScriptedClient([429, 201, 400, 503, 409], elasticsearch.ConnectionError("refused"), [200, 201])
    records = [("metrics", metrics(model=m)) for m in "abcde"]
    dead = writer.write(records)
    ids = [document_id("metrics", r) for _, r in records]
    assert writer._client.requests == [ids, [ids[0], ids[3]], [ids[0], ids[3]]]
    assert [d["reason"] for d in dead] == ["elasticsearch_rejected"]
    assert dead[0]["detail"] == "400 document_parsing_exception: r"
    assert dead[0]["source"] == f"elasticsearch:p-metrics-2026.01.01/{ids[2]}"
    assert json.loads(dead[0]["record"])["@timestamp"] == "2026-01-01T00:10:00Z"
    assert (writer.stats.written, writer.stats.superseded, writer.stats.retries) == (3, 1, 2)
    assert 0.1 <= fake.waits[0] <= 0.2 <= fake.waits[1] <= 0.4


def test_a_closed_port_dead_letters_everything_after_growing_backoffs():
    fake = FakeTime()
    retry = RetryPolicy(initial_backoff=0.1, max_backoff=100.0, deadline=5.0, timeout=1.0)
    writer = BulkWriter(config(f"http://127.0.0.1:{closed_port()}", "p", retry=retry, batch_size=2),
                        sleep=fake.sleep, clock=fake.clock)
    records = [("metrics", metrics(model=m)) for m in "abc"] + [("alerts", alert()), ("decisions", decision("e"))]
    dead = writer.write(records)
    assert [d["reason"] for d in dead] == ["elasticsearch_unavailable"] * 5
    assert all("ConnectionError" in d["detail"] for d in dead)
    assert sorted(json.loads(d["record"])["model"] for d in dead) == ["a", "alpha", "alpha", "b", "c"]
    # the first batch waited until the deadline, each wait at least as long as the one before
    # (but the last, cut to the deadline); later batches are tried once
    assert len(fake.waits) >= 4 and sum(fake.waits) == pytest.approx(retry.deadline)
    assert all(b >= a for a, b in zip(fake.waits, fake.waits[1:-1]))
    assert fake.waits[0] <= 0.1 and fake.waits[-2] > 4 * fake.waits[0]
    assert writer.stats.unavailable == 5 and writer.stats.retries == len(fake.waits)


# ---------------------------------------------------------------- with a real Elasticsearch node


def count(node: Elasticsearch, index: str) -> int:
    node.request("POST", f"/{index}/_refresh")
    return node.request("GET", f"/{index}/_count")["count"]


@pytest.fixture
def writer(elasticsearch: Elasticsearch) -> Iterator[BulkWriter]:
    writer = BulkWriter(config(elasticsearch.url, unique_prefix(), batch_size=3))
    writer.install_templates()
    yield writer
    writer.close()


@pytest.mark.it
def test_templates_give_each_day_an_index_with_its_alias_and_mapping(elasticsearch, writer):
    prefix = writer.config.index_prefix
    templates = elasticsearch.request("GET", f"/_index_template/{prefix}-*")["index_templates"]
    assert sorted(t["name"] for t in templates) == sorted(f"{prefix}-{k}" for k in KINDS)
    records = [("metrics", metrics(end_ms=JAN1_MS - 60_000)), ("metrics", metrics(end_ms=JAN1_MS + 60_000)),
               ("alerts", alert()), ("decisions", decision("e-1")), ("dead_letters", dead_letter(1))]
    assert writer.write(records) == []
    assert writer.stats.written == 5
    aliases = elasticsearch.request("GET", f"/{prefix}-*/_alias")
    day = index_name(prefix, "dead_letters", int(writer._now() * 1000))
    assert {index: list(a["aliases"]) for index, a in aliases.items()} == {
        f"{prefix}-metrics-2025.12.31": [f"{prefix}-metrics"],
        f"{prefix}-metrics-2026.01.01": [f"{prefix}-metrics"],
        f"{prefix}-alerts-2026.01.01": [f"{prefix}-alerts"],
        f"{prefix}-decisions-2026.01.01": [f"{prefix}-decisions"],
        day: [f"{prefix}-dead_letters"],
    }
    mapping = elasticsearch.request("GET", f"/{prefix}-metrics/_mapping")
    properties = next(iter(mapping.values()))["mappings"]["properties"]
    x = properties["features"]["properties"]["x"]["properties"]
    assert (x["psi"]["type"], x["count"]["type"], x["kind"]["type"], x["drifted"]["type"]) == (
        "double", "double", "keyword", "boolean")
    assert properties["latency_ms"]["properties"]["p95"]["type"] == "double"
    assert properties["window_end"]["type"] == "date" and properties["count"]["type"] == "long"
    # decision features stay in _source only
    (hit,) = elasticsearch.search(f"{prefix}-decisions")
    assert hit["_source"]["features"] == {"age": 41, "city": "Lyon", "income": None}
    assert hit["_source"]["@timestamp"] == "2026-01-01T00:00:01.234Z"
    assert elasticsearch.search(f"{prefix}-decisions", query={"term": {"features.city": "Lyon"}}) == []
    assert len(elasticsearch.search(f"{prefix}-decisions", query={"range": {"timestamp": {"gte": JAN1_MS}}})) == 1


@pytest.mark.it
def test_writing_the_same_records_twice_leaves_each_document_once(elasticsearch, writer):
    prefix = writer.config.index_prefix
    records = ([("metrics", metrics(end_ms=JAN1_MS + i * 60_000)) for i in range(4)]
               + [("alerts", alert(state)) for state in ("firing", "resolved")]
               + [("decisions", decision(f"e-{i}")) for i in range(5)]
               + [("dead_letters", dead_letter(i)) for i in range(3)]
               + [("quality", quality_record(end_minute=i, base_ms=JAN1_MS)) for i in range(2)]
               + [("ab", ab_record(end_minute=1, kind=kind, base_ms=JAN1_MS)) for kind in ("metrics", "quality")])
    assert writer.write(records) == [] and writer.stats.written == 18
    assert writer.write(records) == [] and writer.stats.written == 18
    assert {k: count(elasticsearch, alias_name(prefix, k)) for k in KINDS} == {
        "metrics": 4, "quality": 2, "ab": 2, "alerts": 2, "decisions": 5, "dead_letters": 3}


@pytest.mark.it
def test_a_late_pane_replaces_the_on_time_pane_and_an_older_pane_never_wins(elasticsearch, writer):
    prefix = writer.config.index_prefix
    on_time, late = metrics(count=100), metrics(count=130, late=True)
    assert writer.write([("metrics", on_time)]) == []
    assert writer.write([("metrics", late)]) == [] and writer.stats.written == 1
    assert writer.write([("metrics", on_time)]) == []
    assert (writer.stats.written, writer.stats.superseded) == (0, 1)
    # out of order within one batch too
    other = metrics(end_ms=JAN1_MS + 120_000, count=150, late=True)
    assert writer.write([("metrics", other), ("metrics", {**other, "count": 140, "late": False})]) == []
    assert (writer.stats.written, writer.stats.superseded) == (1, 1)
    assert count(elasticsearch, f"{prefix}-metrics") == 2
    for record, expected in ((late, (130, True, 130)), (other, (150, True, 150))):
        doc = elasticsearch.request("GET", f"/{prefix}-metrics-2026.01.01/_doc/{document_id('metrics', record)}")
        assert (doc["_source"]["count"], doc["_source"]["late"], doc["_version"]) == expected


@pytest.mark.it
def test_quality_panes_are_versioned_by_their_labelled_count_and_ab_by_their_pane(elasticsearch, writer):
    prefix = writer.config.index_prefix
    first, second = quality_record(3, labelled=40, base_ms=JAN1_MS), quality_record(3, labelled=70, pane=2, base_ms=JAN1_MS)
    assert document_id("quality", first) == document_id("quality", second)
    assert writer.write([("quality", second), ("quality", first)]) == []
    assert (writer.stats.written, writer.stats.superseded) == (1, 1)
    doc = elasticsearch.request("GET", f"/{prefix}-quality-2026.01.01/_doc/{document_id('quality', first)}")
    assert (doc["_source"]["quality"]["labelled"], doc["_version"]) == (70, 70)
    assert doc["_source"]["quality"]["bias"]["sex"]["subgroups"]["f"]["positive_rate"] == 0.3
    newer = ab_record(3, pane=4, base_ms=JAN1_MS)
    assert writer.write([("ab", newer), ("ab", ab_record(3, pane=1, base_ms=JAN1_MS))]) == []
    doc = elasticsearch.request("GET", f"/{prefix}-ab-2026.01.01/_doc/{document_id('ab', newer)}")
    assert (doc["_source"]["pane"], doc["_source"]["versions"]["v2"]["latency_p95_difference_ms"]) == (4, 12.0)


@pytest.mark.it
def test_a_document_against_the_mapping_is_dead_lettered_and_the_rest_written(elasticsearch, writer):
    prefix = writer.config.index_prefix
    bad = metrics(model="beta", throughput_rps="fast")
    records = [("metrics", metrics(model="alpha")), ("metrics", bad), ("metrics", metrics(model="gamma")),
               ("alerts", {**alert(), "value": "high"})]
    dead = writer.write(records)
    assert [d["reason"] for d in dead] == ["elasticsearch_rejected"] * 2
    assert dead[0]["detail"].startswith("400 document_parsing_exception:") and "throughput_rps" in dead[0]["detail"]
    assert dead[0]["source"] == f"elasticsearch:{prefix}-metrics-2026.01.01/{document_id('metrics', bad)}"
    assert json.loads(dead[0]["record"]) == {**bad, "@timestamp": bad["window_end"]}
    assert (writer.stats.written, writer.stats.rejected, writer.stats.retries) == (2, 2, 0)
    assert sorted(h["_source"]["model"] for h in elasticsearch.search(f"{prefix}-metrics")) == ["alpha", "gamma"]
    # the dead letters themselves can be written
    assert writer.write([("dead_letters", d) for d in dead]) == []
    assert count(elasticsearch, f"{prefix}-dead_letters") == 2


# ---------------------------------------------------------------- with a real OpenSearch node


@pytest.fixture(scope="module")
def opensearch() -> Iterator[Elasticsearch]:
    node = Elasticsearch(dist="opensearch", port=29201 + PORT_OFFSET, transport_port=29301 + PORT_OFFSET)
    node.stop(wipe=True)  # a node left over from an interrupted run
    node.start()
    yield node
    node.stop(wipe=True)


@pytest.mark.it
def test_opensearch_flavor_writes_and_reads_back_metrics(opensearch):
    prefix = unique_prefix()
    writer = BulkWriter(config(opensearch.url, prefix, flavor="opensearch"))
    assert writer.install_templates() == [f"{prefix}-{k}" for k in KINDS]
    on_time, late = metrics(count=100), metrics(count=130, late=True)
    bad = metrics(end_ms=JAN1_MS + 120_000, throughput_rps="fast")
    dead = writer.write([("metrics", late), ("metrics", on_time), ("metrics", bad), ("decisions", decision("e-1"))])
    assert [d["reason"] for d in dead] == ["elasticsearch_rejected"]
    assert dead[0]["detail"].startswith("400 mapper_parsing_exception:")
    assert (writer.stats.written, writer.stats.superseded) == (2, 1)
    assert writer.write([("metrics", late)]) == [] and writer.stats.written == 1
    (hit,) = opensearch.search(f"{prefix}-metrics")
    assert hit["_index"] == f"{prefix}-metrics-2026.01.01" and hit["_id"] == document_id("metrics", late)
    assert hit["_source"] == {**late, "@timestamp": late["window_end"]}
    assert opensearch.request("GET", f"/{hit['_index']}/_doc/{hit['_id']}")["_version"] == 130
    mapping = opensearch.request("GET", f"/{prefix}-metrics/_mapping")
    properties = next(iter(mapping.values()))["mappings"]["properties"]
    assert properties["features"]["properties"]["x"]["properties"]["psi"]["type"] == "double"
    assert opensearch.search(f"{prefix}-decisions")[0]["_source"]["features"]["city"] == "Lyon"
    assert opensearch.search(f"{prefix}-decisions", query={"term": {"features.city": "Lyon"}}) == []
    writer.close()

    unreachable = replace(writer.config, hosts=(f"http://127.0.0.1:{closed_port()}",),
                          retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.02, deadline=0.05))
    dead = BulkWriter(unreachable).write([("metrics", late)])
    assert [d["reason"] for d in dead] == ["elasticsearch_unavailable"] and "ConnectionError" in dead[0]["detail"]
