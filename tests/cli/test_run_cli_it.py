"""``ampel-monitor run`` end to end, and the pipeline's own counters on /metrics."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ampel_monitor.cli import main
from tests.pipeline.streams import make_events, write_setup

pytestmark = pytest.mark.it


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_run_writes_outputs_and_serves_counters(tmp_path, capsys):
    events = make_events(seed=31, minutes=5, per_minute=120, spike=(1, 3))
    config = write_setup(tmp_path, events, {"size": "2m", "slide": "1m"})
    with (tmp_path / "events.jsonl").open("a") as handle:
        handle.write("not json\n" + json.dumps({"model_id": "nobody"}) + "\n")
    status = main(["run", "--config", str(config), "--input", str(tmp_path / "events.jsonl"),
                   "--out", str(tmp_path / "out"), "--metrics-port", "0", "--direct_num_workers=1"])
    assert status == 0
    captured = capsys.readouterr()
    port = int(re.search(r"127\.0\.0\.1:(\d+)/metrics", captured.err).group(1))
    assert "windows:" in captured.out and "alerts fired: 1 critical" in captured.out
    metrics = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    samples = scrape(port)
    per_model = {m: sum(e["model_id"] == m for e in events) for m in ("alpha", "beta")}
    # counters are process-wide: compare what this run added, at least
    for model, n in per_model.items():
        assert samples[("ampel_events_total", (("model", model),))] >= n
    assert samples[("ampel_dead_letter_records_total", (("reason", "malformed"),))] >= 1
    assert samples[("ampel_dead_letter_records_total", (("reason", "unknown_model"),))] >= 1
    assert samples[("ampel_windows_emitted_total", (("model", "alpha"),))] >= sum(m["model"] == "alpha" for m in metrics)
    alerts = [json.loads(line) for line in (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()]
    assert [(a["rule"], a["state"]) for a in alerts] == [("latency_p95", "firing"), ("latency_p95", "resolved")]


def test_counters_count_exactly_what_one_run_saw(tmp_path):
    from ampel_monitor.config import load_config
    from pipelines.monitor import run
    from transforms.counters import REGISTRY

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    events = make_events(seed=32, minutes=3, per_minute=90)
    config = load_config(write_setup(tmp_path, events, {"size": "1m", "slide": "1m"}))
    before = (value("ampel_events_total", model="alpha"), value("ampel_windows_emitted_total", model="beta"))
    summary = run(config, [str(tmp_path / "events.jsonl")], out_dir=str(tmp_path / "out"))
    assert value("ampel_events_total", model="alpha") - before[0] == sum(e["model_id"] == "alpha" for e in events)
    assert value("ampel_windows_emitted_total", model="beta") - before[1] == sum(m["model"] == "beta" for m in summary.metrics)
