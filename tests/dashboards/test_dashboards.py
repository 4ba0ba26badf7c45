"""The generated dashboards: valid against Grafana's dashboard schema, reproduced by the code,
querying only metrics the pipeline emits, filtered by the template variables, on provisioned
data sources, with alert links that land on existing panels."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from ampel_monitor.config import DEFAULT_RULES
from ampel_monitor.elastic import KINDS, alias_name
from ampel_monitor.series import SERIES
from dashboards import DASHBOARDS, GENERATED, render
from dashboards.common import EXPLAINING_PANEL, EXECUTIVE_UID, ES_KINDS
from tests.dashboards.panels import (
    BUILTINS,
    counters,
    dashboards,
    emitted,
    panels,
    selectors,
    variables_used,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "dashboards" / "schema" / "dashboard.schema.json").read_text(encoding="utf-8"))
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
PANELS = panels()


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_dashboard_validates_against_grafanas_schema(name):
    board = json.loads((GENERATED / f"{name}.json").read_text(encoding="utf-8"))
    errors = [f"{e.json_path}: {e.message}" for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(board)]
    assert errors == []


@pytest.mark.parametrize("path, value", [
    (("nonsense",), 1),  # a field a dashboard does not have
    (("panels", 1, "gridPos", "h"), "8"),  # a string where a number belongs
    (("templating", "list", 0, "type"), "bogus"),  # an unknown variable type
    (("panels", 1, "type"), None),  # a panel without a type
])
def test_the_schema_rejects_a_broken_dashboard(path, value):
    board = copy.deepcopy(dashboards()["technical"])
    *parents, last = path
    node = board
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert list(jsonschema.Draft7Validator(SCHEMA).iter_errors(board))


def test_regenerating_reproduces_the_committed_json():
    assert render() == {path.name: path.read_text(encoding="utf-8") for path in GENERATED.glob("*.json")}
    result = subprocess.run([sys.executable, "-m", "dashboards", "--check"], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_the_check_names_a_stale_file(tmp_path, monkeypatch):
    import dashboards.__main__ as main

    for path in GENERATED.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "technical.json").write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(main, "GENERATED", tmp_path)
    assert main.main(["--check"]) == 1
    assert main.main([]) == 0
    assert main.main(["--check"]) == 0


@pytest.mark.parametrize("panel", [p for p in PANELS if p.metrics], ids=str)
def test_no_panel_references_a_metric_the_pipeline_does_not_emit(panel):
    assert panel.metrics - emitted() == set()


def test_the_doc_lists_exactly_the_metrics_the_dashboards_use():
    doc = (ROOT / "docs" / "dashboards.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Metrics used"):doc.index("## Checks")]
    assert set(re.findall(r"`(ampel_[a-z0-9_]+)`", section)) == set().union(*(p.metrics for p in PANELS))


def test_every_metric_used_is_emitted():
    used = set().union(*(p.metrics for p in PANELS))
    assert used - emitted() == set()
    assert {name for name in used if name.endswith("_total")} <= counters()


@pytest.mark.parametrize("panel", [p for p in PANELS if p.metrics], ids=str)
def test_every_query_follows_the_template_variables(panel):
    for target in panel.targets:
        for name, matchers in selectors(target["expr"]):
            if name in SERIES:
                assert matchers["model"] == ("MatchOp.Re", "$model"), (name, target["expr"])
                assert matchers["version"] == ("MatchOp.Re", "$version"), (name, target["expr"])
                assert matchers["window"] == ("MatchOp.Equal", "$window"), (name, target["expr"])
            elif name in ("ampel_events_total", "ampel_late_events_total", "ampel_windows_emitted_total",
                          "ampel_labelled_predictions_total", "ampel_unlabelled_predictions_expired_total"):
                assert matchers["model"] == ("MatchOp.Re", "$model"), (name, target["expr"])
    for target in panel.targets:
        if "query" in target:  # Elasticsearch
            assert target["query"] == "*" or {"model", "version"} <= variables_used(target["query"]), target["query"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_variables_model_version_window_and_only_defined_ones_are_used(name):
    board = dashboards()[name]
    defined = [v["name"] for v in board["templating"]["list"]]
    assert defined[:3] == ["model", "version", "window"]
    assert all(v["datasource"]["uid"] == "ampel-prometheus" for v in board["templating"]["list"][:3])
    queries = [t.get("expr") or t.get("query") or "" for p in PANELS if p.dashboard == name for t in p.targets]
    used = set().union(*(variables_used(q) for q in queries))
    assert used <= set(defined) | set(BUILTINS)
    if board["uid"] == EXECUTIVE_UID:
        assert "unit_cost" in defined and "unit_cost" in used


def test_the_cost_query_divides_the_unit_cost_by_the_predictions_served():
    cost = next(p for p in PANELS if p.title == "Cost per 1000 predictions")
    assert cost.targets[0]["expr"].startswith("1000 * $unit_cost / (3600 * sum by (model, version) "
                                              "(ampel_throughput_per_second{")


def test_panel_ids_are_unique_and_alert_links_land_on_the_explaining_panels():
    by_uid = {board["uid"]: board for board in dashboards().values()}
    for board in by_uid.values():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), board["uid"]
    # every alert rule the pipeline evaluates has a panel that explains it
    assert {rule.name for rule in DEFAULT_RULES} <= set(EXPLAINING_PANEL)
    explained = {(uid, panel) for uid, panel in EXPLAINING_PANEL.values()}
    for uid, panel_id in explained:
        target = next(p for p in by_uid[uid]["panels"] if p["id"] == panel_id)
        assert target["type"] != "row" and target.get("targets")
    timelines = [p.raw for p in PANELS if p.title == "Alerts timeline"]
    assert len(timelines) == 2
    for timeline in timelines:
        links = {o["matcher"]["options"]: o["properties"][0]["value"][0]["url"] for o in timeline["fieldConfig"]["overrides"]}
        for rule, (uid, panel_id) in EXPLAINING_PANEL.items():
            url = links[f".*\\b{rule}\\b.*"]
            assert url.startswith(f"/d/{uid}/") and f"viewPanel=panel-{panel_id}&" in url
            assert "var-model=${__field.labels.model}" in url and "${__url_time_range}" in url


def test_every_data_source_is_provisioned_with_the_index_it_queries():
    provisioned = {d["uid"]: d for d in yaml.safe_load((PROVISIONING / "datasources" / "ampel.yml").read_text())["datasources"]}
    used = {p.datasource for p in PANELS} | {t["datasource"]["uid"] for p in PANELS for t in p.targets}
    assert used <= set(provisioned)
    assert provisioned["ampel-prometheus"]["url"] == "http://127.0.0.1:19090"
    for kind in ES_KINDS:
        source = provisioned[f"ampel-es-{kind.replace('_', '-')}"]
        assert (source["type"], source["url"]) == ("elasticsearch", "http://127.0.0.1:19200")
        assert (source["jsonData"]["index"], source["jsonData"]["timeField"]) == (f"ampel-{kind}", "@timestamp")
        if kind in KINDS:  # the sink's alias of that kind
            assert source["jsonData"]["index"] == alias_name("ampel", kind)
    assert set(KINDS) - {"ab"} <= set(ES_KINDS)


def test_the_dashboard_provider_reads_the_generated_folder():
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "ampel.yml").read_text())["providers"]
    assert [p["options"]["path"] for p in providers] == ["${AMPEL_HOME}/dashboards/generated"]
    assert sorted(path.stem for path in GENERATED.glob("*.json")) == sorted(DASHBOARDS)
