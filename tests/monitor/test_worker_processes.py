"""What a second worker process needs: its metric short ids apart from the first one's,
and its Prometheus counters served with this process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from apache_beam.portability.api import metrics_pb2
from apache_beam.runners.worker import sdk_worker
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipelines.worker_pool import prefix_short_ids
from transforms import counters


@pytest.fixture
def restore_short_ids():
    before = sdk_worker.SHORT_ID_CACHE
    yield
    sdk_worker.SHORT_ID_CACHE = before


def test_prefixed_short_ids_never_meet_a_plain_worker_s_and_map_back(restore_short_ids):
    plain = sdk_worker.ShortIdCache()
    infos = [metrics_pb2.MonitoringInfo(urn="beam:metric:element_count:v1", type="beam:metrics:sum_int64:v1",
                                        labels={"PCOLLECTION": f"p{i}"}) for i in range(20)]
    prefix_short_ids("w")
    prefixed = [sdk_worker.SHORT_ID_CACHE.get_short_id(info) for info in infos]
    assert prefixed == [f"w{i + 1:x}" for i in range(20)]
    assert not set(prefixed) & {plain.get_short_id(info) for info in infos}
    assert sdk_worker.SHORT_ID_CACHE.get_short_id(infos[3]) == "w4"  # the same info, the same id
    assert {k: v.labels["PCOLLECTION"] for k, v in sdk_worker.SHORT_ID_CACHE.get_infos(["wa", "w1"]).items()} == {
        "wa": "p9", "w1": "p0"}
    with pytest.raises(ValueError, match="hex"):
        prefix_short_ids("a")


def test_metrics_serves_the_counters_of_worker_processes_summed_with_this_one_s(tmp_path, monkeypatch):
    def served() -> dict:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(generate_latest(counters.served()).decode())
                for s in family.samples if s.name.endswith("_total")}

    monkeypatch.setattr(counters, "_WORKER_DIRS", [])
    counters.add_worker_counters(tmp_path)
    before = served()
    counters.count_labelled("model-w", 5)  # here
    code = ("from transforms.counters import count_labelled, count_dead_letter; "
            "count_labelled('model-w', 7); count_dead_letter('only_in_the_worker', 3)")
    for _ in range(2):  # two processes, one after the other
        subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    after = served()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("ampel_labelled_predictions_total", model="model-w") == 5 + 2 * 7
    assert delta("ampel_dead_letter_records_total", reason="only_in_the_worker") == 2 * 3
    # each series once, in its own family
    text = generate_latest(counters.served()).decode()
    assert text.count('ampel_labelled_predictions_total{model="model-w"}') == 1
    assert text.count("# TYPE ampel_dead_letter_records_total counter") == 1



_FORKED = """
import json, os, sys, time
from prometheus_client import generate_latest
from pipelines import worker_pool
from transforms import counters


def work(n):
    preloaded = "pipelines.monitor" in sys.modules  # imported before the fork
    counters.count_labelled("model-f", n)
    with open(os.path.join(sys.argv[1], f"fork-{os.getpid()}.json"), "w") as out:
        json.dump({"parent": os.getppid(), "preloaded": preloaded}, out)


counters.add_worker_counters(sys.argv[1])
counters.count_labelled("model-f", 5)  # a series in memory before the fork: the forks must not count into it
forker = worker_pool.start_forker()
pids = [forker.start(work, (7,), {"PROMETHEUS_MULTIPROC_DIR": sys.argv[1]}) for _ in range(2)]
pids.append(forker.start(work, ()))  # a missing argument: its traceback goes to stderr
for pid in pids:
    worker_pool.stop_process(pid, timeout=60)  # each ends by itself first, reaped by the forking process
print(json.dumps({"metrics": generate_latest(counters.served()).decode(), "forker": forker.pid, "forks": pids}))
"""


def test_forked_workers_start_with_the_modules_imported_and_count_into_files(tmp_path):
    result = subprocess.run([sys.executable, "-c", _FORKED, str(tmp_path)], capture_output=True, text=True,
                            timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    samples = {s.name: s.value for f in text_string_to_metric_families(out["metrics"])
               for s in f.samples if s.labels.get("model") == "model-f"}
    assert samples["ampel_labelled_predictions_total"] == 5 + 2 * 7  # in memory here, in files in the forks
    forks = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("fork-*.json"))]
    assert forks == [{"parent": out["forker"], "preloaded": True}] * 2
    assert len(set(out["forks"])) == 3 and out["forker"] not in out["forks"]
    assert "TypeError" in result.stderr and "work()" in result.stderr  # the failing fork's last word
