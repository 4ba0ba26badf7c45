"""The panels and queries of the generated dashboards, the metric names they use, and their
queries made runnable the way Grafana runs them: template variables substituted, and
Elasticsearch targets turned into ``_search`` bodies."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import promql_parser

from ampel_monitor.series import SERIES
from dashboards import GENERATED
from transforms.counters import REGISTRY

#: Grafana's built-in variables, with the value the checks give them.
BUILTINS = {"__range": "900s", "__rate_interval": "1m"}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::(\w+))?\}|(\w+))")


def counters() -> set[str]:
    """The pipeline counters' sample names (``<name>_total``)."""
    return {f"{metric.name}_total" for metric in REGISTRY.collect() if metric.type == "counter"}


def emitted() -> set[str]:
    """Every metric name the pipeline gives Prometheus: the window series and the counters."""
    return {*SERIES, *counters()}


@dataclass(frozen=True)
class Panel:
    dashboard: str
    id: int
    title: str
    type: str
    datasource: str
    targets: tuple[Mapping[str, Any], ...]
    raw: Mapping[str, Any]

    def __str__(self) -> str:
        return f"{self.dashboard}:{self.title}"

    @property
    def es_kind(self) -> str | None:
        """The index kind of an Elasticsearch panel (``alerts``, ...), else None."""
        if not self.datasource.startswith("ampel-es-"):
            return None
        return self.datasource.removeprefix("ampel-es-").replace("-", "_")

    @property
    def metrics(self) -> set[str]:
        """The metric names of its PromQL queries."""
        return set().union(*(promql_metrics(t["expr"]) for t in self.targets if "expr" in t))


def dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboards by name (file name without ``.json``)."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(GENERATED.glob("*.json"))}


def panels() -> list[Panel]:
    """Every panel with queries, of every dashboard (rows left out)."""
    out = []
    for name, board in dashboards().items():
        for panel in _flatten(board["panels"]):
            if panel["type"] != "row":
                out.append(Panel(name, panel["id"], panel["title"], panel["type"], panel["datasource"]["uid"],
                                 tuple(panel.get("targets", ())), panel))
    return out


def _flatten(items: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for item in items:
        yield item
        yield from _flatten(item.get("panels", ()))


def _parseable(expr: str) -> str:
    """The expression with every variable replaced by something PromQL parses."""
    return _VARIABLE.sub(lambda m: BUILTINS.get(m.group(1) or m.group(3), "1"), expr)


def promql_metrics(expr: str) -> set[str]:
    """The metric names of the vector selectors of a PromQL expression (with variables)."""
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(_parseable(expr)), visit)
    return names


def selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """Each vector selector as (metric name, {label: (operator, value)}), variables kept."""

    def mark(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        return BUILTINS.get(name) or ("1" if name == "unit_cost" else f"@{name}@")

    marked = _VARIABLE.sub(mark, expr)
    out = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {m.name: (str(m.op), re.sub(r"@(\w+)@", r"$\1", m.value)) for m in node.matchers.matchers}
            out.append((node.name, matchers))
        return True

    promql_parser.walk(promql_parser.parse(marked), visit)
    return out


def variables_used(text: str) -> set[str]:
    return {m.group(1) or m.group(3) for m in _VARIABLE.finditer(text)}


def _regex_escape(value: str) -> str:
    return re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\1", value)


def interpolate_promql(expr: str, values: Mapping[str, Sequence[str]]) -> str:
    """``expr`` as Grafana sends it to Prometheus: a multi-value variable becomes the regex
    ``(a|b)`` of its (escaped) values, a single value itself; built-ins get ``BUILTINS``."""

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        chosen = values[name]
        if len(chosen) == 1:
            return chosen[0] if name == "unit_cost" else _regex_escape(chosen[0])
        return "(" + "|".join(_regex_escape(v) for v in chosen) + ")"

    return _VARIABLE.sub(value, expr)


def interpolate_lucene(query: str, values: Mapping[str, Sequence[str]]) -> str:
    """A Lucene query as Grafana sends it to Elasticsearch: ``("a" OR "b")`` for several values."""

    def value(match: re.Match) -> str:
        chosen = values[match.group(1) or match.group(3)]
        quoted = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in chosen]
        return quoted[0] if len(quoted) == 1 else "(" + " OR ".join(quoted) + ")"

    return _VARIABLE.sub(value, query)


def search_body(target: Mapping[str, Any], query: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    """The ``_search`` body of an Elasticsearch target, as Grafana builds it: the Lucene
    query and the time range as filters, raw documents or nested bucket aggregations."""
    time_field = target.get("timeField", "@timestamp")
    filters = [{"range": {time_field: {"gte": start_ms, "lte": end_ms, "format": "epoch_millis"}}},
               {"query_string": {"analyze_wildcard": True, "query": query}}]
    body: dict[str, Any] = {"query": {"bool": {"filter": filters}}}
    metrics = target["metrics"]
    if metrics[0]["type"] == "raw_data":
        size = int(metrics[0].get("settings", {}).get("size", 500))
        return {**body, "size": size, "sort": [{time_field: {"order": "desc"}}]}
    leaf: dict[str, Any] = {}
    for metric in metrics:
        kind = metric["type"]
        if kind == "count":
            continue
        agg = {"cardinality": {"field": metric["field"]}} if kind == "cardinality" else {kind: {"field": metric["field"]}}
        leaf[metric["id"]] = agg
    aggs = leaf
    for bucket in reversed(target.get("bucketAggs", [])):
        settings = bucket.get("settings", {})
        if bucket["type"] == "date_histogram":
            interval = settings.get("interval", "auto")
            fixed = f"{max(1, (end_ms - start_ms) // 1000 // 100)}s" if interval == "auto" else interval
            agg = {"date_histogram": {"field": bucket["field"], "fixed_interval": fixed, "min_doc_count": 0,
                                      "extended_bounds": {"min": start_ms, "max": end_ms}, "format": "epoch_millis"}}
        elif bucket["type"] == "terms":
            size = int(settings.get("size", "10")) or 500  # Grafana's "no limit"
            agg = {"terms": {"field": bucket["field"], "size": size, "min_doc_count": int(settings.get("min_doc_count", 1))}}
        else:
            raise ValueError(f"bucket aggregation {bucket['type']!r} is not translated")
        if aggs:
            agg["aggs"] = aggs
        aggs = {bucket["id"]: agg}
    return {**body, "size": 0, "aggs": aggs}


def leaf_buckets(aggregations: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The innermost buckets of a (nested) aggregation response."""
    out = []
    for agg in aggregations.values():
        if not isinstance(agg, Mapping) or "buckets" not in agg:
            continue
        for bucket in agg["buckets"]:
            inner = {k: v for k, v in bucket.items() if isinstance(v, Mapping) and "buckets" in v}
            out.extend(leaf_buckets(inner) if inner else [bucket])
    return out
