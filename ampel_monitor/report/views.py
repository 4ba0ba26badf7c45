"""The report's three views as plotly figures: executive, technical, data science."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ampel_monitor.report.outputs import RunOutputs, as_number, axis_time, dig, dig_number, keys, latest_panes, parse_time

__all__ = ["DRIFT_THRESHOLDS", "PERCENTILES", "TARGETS", "Chart", "Report", "Section", "View", "alert_intervals",
           "build_report", "executive_summary", "firing_now"]

#: The operating targets of the executive view.
TARGETS = {"availability": 0.999, "latency_p95_ms": 100.0, "throughput_rps": 1000.0, "error_rate": 0.001}
#: The default drift thresholds of ``drift.base`` (not imported: it loads scipy): the heatmaps' colour
#: scales reach twice them at least.
DRIFT_THRESHOLDS = {"psi": 0.2, "js": 0.1}
PERCENTILES = ("p50", "p90", "p95", "p99", "max")
SEVERITY_COLOURS = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}
_SEVERITY_ORDER = ("critical", "warning", "info")
_DISPARITY = ("demographic_parity_difference", "equal_opportunity_difference", "disparate_impact_ratio")
_TEMPLATE = go.layout.Template(layout={
    "font": {"family": "system-ui, sans-serif", "size": 12}, "paper_bgcolor": "white", "plot_bgcolor": "#f7f8fa",
    "margin": {"l": 60, "r": 20, "t": 50, "b": 40}, "hovermode": "x unified",
    "xaxis": {"gridcolor": "#e3e6eb", "automargin": True}, "yaxis": {"gridcolor": "#e3e6eb", "automargin": True},
})


@dataclass(frozen=True)
class Chart:
    """One chart of the page, or the note that stands in for it when there is no data."""

    id: str
    title: str
    figure: go.Figure | None = None
    note: str | None = None
    height: int = 340


@dataclass(frozen=True)
class Section:
    title: str
    charts: list[Chart]
    #: HTML shown above the charts (the executive summary table).
    html: str = ""


@dataclass(frozen=True)
class View:
    id: str
    title: str
    sections: list[Section]


@dataclass(frozen=True)
class Report:
    """The three views of a run's outputs."""

    source: RunOutputs
    views: list[View]

    def charts(self) -> list[Chart]:
        return [c for v in self.views for s in v.sections for c in s.charts]

    def chart(self, chart_id: str) -> Chart:
        for chart in self.charts():
            if chart.id == chart_id:
                return chart
        raise KeyError(chart_id)


def _slug(*parts: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def _series(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """Records grouped by (model, version), sorted by model and version, each in window order."""
    out: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        out.setdefault((record["model"], record.get("version", "")), []).append(record)
    return dict(sorted(out.items()))


def _name(model: str, version: str) -> str:
    return html.escape(f"{model}/{version}" if version else model, quote=False)


def _figure(title: str, ytitle: str = "", height: int = 340, **layout: Any) -> go.Figure:
    figure = go.Figure(layout={"template": _TEMPLATE, "height": height, "title": {"text": html.escape(title, quote=False)},
                               "yaxis": {"title": {"text": ytitle}}, **layout})
    return figure


def _line(records: Sequence[Mapping[str, Any]], value: Callable[[Mapping[str, Any]], float | None], name: str,
          mode: str = "lines", **style: Any) -> go.Scatter:
    return go.Scatter(x=[axis_time(r["window_end"]) for r in records], y=[value(r) for r in records],
                      name=name, mode=mode, connectgaps=False, **style)


def _per_series(chart_id: str, title: str, records: list[Mapping[str, Any]], value: Callable[[Mapping[str, Any]], float | None],
                ytitle: str, empty: str, target: float | None = None, target_name: str = "",
                tickformat: str | None = None, from_zero: bool = True) -> Chart:
    """One line per model/version of ``value`` over the windows; a note when no window has it."""
    figure = _figure(title, ytitle)
    for (model, version), rows in _series(records).items():
        if any(value(r) is not None for r in rows):
            figure.add_trace(_line(rows, value, _name(model, version)))
    if not figure.data:
        return Chart(chart_id, title, note=empty)
    if target is not None:
        figure.add_hline(y=target, line={"dash": "dash", "color": "#d62728", "width": 1},
                         annotation_text=target_name, annotation_position="top left")
    figure.update_yaxes(tickformat=tickformat, rangemode="tozero" if from_zero else "normal")
    return Chart(chart_id, title, figure)


# --- alerts ----------------------------------------------------------------------------------

def _alert_key(alert: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (alert["model"], str(alert.get("version") or ""), alert["rule"], str(alert.get("severity") or "info"))


def alert_intervals(alerts: Iterable[Mapping[str, Any]]) -> list[tuple[tuple[str, str, str, str], str, str | None]]:
    """Each firing period as (model, version, rule, severity), firing window end, resolving window
    end (None when still firing), in firing order; ``alerts`` in window order.

    >>> a = [{"model": "m", "version": "v1", "rule": "error_rate", "severity": "critical", "state": s,
    ...       "window_end": t} for s, t in (("firing", "2026-01-01T00:05:00Z"), ("resolved", "2026-01-01T00:09:00Z"))]
    >>> alert_intervals(a)
    [(('m', 'v1', 'error_rate', 'critical'), '2026-01-01T00:05:00Z', '2026-01-01T00:09:00Z')]
    """
    open_: dict[tuple[str, str, str, str], str] = {}
    out: list[tuple[tuple[str, str, str, str], str, str | None]] = []
    for alert in alerts:
        key = _alert_key(alert)
        if alert["state"] == "firing" and key not in open_:
            open_[key] = alert["window_end"]
        elif alert["state"] == "resolved" and key in open_:
            out.append((key, open_.pop(key), alert["window_end"]))
    out.extend((key, start, None) for key, start in open_.items())
    return sorted(out, key=lambda item: (parse_time(item[1]), item[0]))


def _alerts_timeline(outputs: RunOutputs) -> Chart:
    title = "Alerts timeline (firing to resolved, by window end)"
    if not outputs.alerts:
        return Chart("tech-alerts-timeline", title, note=outputs.notes.get("alerts") or "no alert fired")
    ends = [r["window_end"] for r in (*outputs.metrics, *outputs.alerts)]
    last = max(ends, key=parse_time)
    intervals = alert_intervals(outputs.alerts)
    rows = sorted({f"{_name(k[0], k[1])} {k[2]}" for k, _, _ in intervals}, reverse=True)
    figure = _figure(title, height=max(220, 80 + 28 * len(rows)),
                     yaxis={"categoryorder": "array", "categoryarray": rows, "type": "category"}, hovermode="closest")
    others = sorted({k[3] for k, _, _ in intervals} - set(_SEVERITY_ORDER))
    for severity in (*_SEVERITY_ORDER, *others):
        xs: list[str | None] = []
        ys: list[str | None] = []
        for key, start, stop in intervals:
            if key[3] == severity:
                xs += [axis_time(start), axis_time(stop or last), None]
                ys += [f"{_name(key[0], key[1])} {key[2]}"] * 2 + [None]
        if xs:
            figure.add_trace(go.Scatter(x=xs, y=ys, name=severity, mode="lines+markers",
                                        line={"width": 8, "color": SEVERITY_COLOURS.get(severity, "#7f7f7f")}))
    return Chart("tech-alerts-timeline", title, figure, height=figure.layout.height)


def _firing_per_model(outputs: RunOutputs) -> Chart:
    title = "Alerts firing per model"
    if not outputs.alerts:
        return Chart("exec-alerts", title, note=outputs.notes.get("alerts") or "no alert fired")
    figure = _figure(title, "alerts firing")
    for model in sorted({a["model"] for a in outputs.alerts}):
        firing: set[tuple[str, str, str, str]] = set()
        xs, ys = [], []
        for alert in (a for a in outputs.alerts if a["model"] == model):
            (firing.add if alert["state"] == "firing" else firing.discard)(_alert_key(alert))
            xs.append(axis_time(alert["window_end"]))
            ys.append(len(firing))
        figure.add_trace(go.Scatter(x=xs, y=ys, name=html.escape(model, quote=False), mode="lines+markers",
                                    line={"shape": "hv"}))
    return Chart("exec-alerts", title, figure)


def firing_now(alerts: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str, str], Mapping[str, Any]]:
    """The alerts still firing after the last transition, by (model, version, rule, severity)."""
    state: dict[tuple[str, str, str, str], Mapping[str, Any]] = {}
    for alert in alerts:
        if alert["state"] == "firing":
            state[_alert_key(alert)] = alert
        else:
            state.pop(_alert_key(alert), None)
    return state


# --- executive -------------------------------------------------------------------------------

def _errors(record: Mapping[str, Any]) -> float:
    errors = as_number(record.get("errors"))
    if errors is not None:
        return errors
    return (as_number(record.get("error_rate")) or 0.0) * (as_number(record.get("count")) or 0.0)


def executive_summary(outputs: RunOutputs) -> list[dict[str, Any]]:
    """Per model/version: availability and error rate over all windows (errors / predictions
    summed over the windows), p95 latency and throughput in the last window and at worst,
    and the alerts firing now."""
    firing = firing_now(outputs.alerts)
    rows = []
    for (model, version), records in _series(outputs.metrics).items():
        count = sum(as_number(r.get("count")) or 0.0 for r in records)
        errors = sum(_errors(r) for r in records)
        p95 = [v for v in (dig_number(r, "latency_ms", "p95") for r in records) if v is not None]
        rps = [v for v in (as_number(r.get("throughput_rps")) for r in records) if v is not None]
        alerts = sorted((k[2], k[3]) for k in firing if k[0] == model and k[1] == version)
        rows.append({
            "model": model, "version": version, "windows": len(records),
            "error_rate": errors / count if count else None,
            "availability": 1 - errors / count if count else None,
            "p95_last_ms": dig_number(records[-1], "latency_ms", "p95"), "p95_worst_ms": max(p95) if p95 else None,
            "throughput_last_rps": as_number(records[-1].get("throughput_rps")), "throughput_peak_rps": max(rps) if rps else None,
            "alerts": alerts,
            "status": next((s for s in _SEVERITY_ORDER if any(a[1] == s for a in alerts)), "ok"),
        })
    return rows


def _fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "%":
        return f"{value:.3%}"
    return f"{value:,.1f}"


def _summary_html(outputs: RunOutputs) -> str:
    rows = executive_summary(outputs)
    if not rows:
        return f"<p class='note'>{html.escape(outputs.notes.get('metrics') or 'no window metrics')}</p>"
    in_alert = sorted({r["model"] for r in rows if r["alerts"]})
    models = sorted({r["model"] for r in rows})
    t = TARGETS

    def cell(value: float | None, kind: str, good: bool | None) -> str:
        cls = "" if good is None or value is None else (" class='ok'" if good else " class='bad'")
        return f"<td{cls}>{_fmt(value, kind)}</td>"

    body = []
    for r in rows:
        alerts = ", ".join(f"{rule} ({sev})" for rule, sev in r["alerts"]) or "none"
        body.append(
            f"<tr><td>{_name(r['model'], r['version'])}</td>"
            + cell(r["availability"], "%", r["availability"] is not None and r["availability"] >= t["availability"])
            + cell(r["error_rate"], "%", r["error_rate"] is not None and r["error_rate"] < t["error_rate"])
            + cell(r["p95_last_ms"], "ms", r["p95_last_ms"] is not None and r["p95_last_ms"] < t["latency_p95_ms"])
            + cell(r["p95_worst_ms"], "ms", r["p95_worst_ms"] is not None and r["p95_worst_ms"] < t["latency_p95_ms"])
            + cell(r["throughput_last_rps"], "rps", None) + cell(r["throughput_peak_rps"], "rps", None)
            + f"<td class='sev-{r['status']}'>{html.escape(alerts)}</td></tr>")
    return (
        f"<p class='kpi'>Models in alert: <b>{len(in_alert)} of {len(models)}</b>"
        f"{': ' + html.escape(', '.join(in_alert)) if in_alert else ''}</p>"
        "<table class='summary'><thead><tr><th>model/version</th>"
        f"<th>availability (target ≥ {t['availability']:.1%})</th><th>error rate (budget &lt; {t['error_rate']:.1%})</th>"
        f"<th>p95 latency, last window, ms (target &lt; {t['latency_p95_ms']:g})</th><th>p95 latency, worst, ms</th>"
        f"<th>throughput, last window, req/s</th><th>throughput, peak, req/s (supported: {t['throughput_rps']:g})</th>"
        "<th>alerts firing now</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>"
        "<p class='hint'>Availability and error rate: errors / predictions summed over all windows.</p>"
    )


def _executive(outputs: RunOutputs) -> View:
    m, none = outputs.metrics, outputs.notes.get("metrics") or "no window metrics"
    charts = [
        _per_series("exec-availability", "Availability (1 - error rate)", m,
                    lambda r: None if as_number(r.get("error_rate")) is None else 1 - r["error_rate"], "availability", none,
                    TARGETS["availability"], "target 99.9 %", ".2%", from_zero=False),
        _per_series("exec-latency-p95", "p95 latency", m, lambda r: dig_number(r, "latency_ms", "p95"), "ms", none,
                    TARGETS["latency_p95_ms"], "target 100 ms"),
        _per_series("exec-throughput", "Throughput", m, lambda r: as_number(r.get("throughput_rps")), "req/s", none),
        _per_series("exec-error-rate", "Error rate", m, lambda r: as_number(r.get("error_rate")), "error rate", none,
                    TARGETS["error_rate"], "budget 0.1 %", ".2%"),
        _firing_per_model(outputs),
    ]
    return View("executive", "Executive", [Section("Operating targets", charts, _summary_html(outputs))])


# --- technical -------------------------------------------------------------------------------

def _technical(outputs: RunOutputs) -> View:
    m, none = outputs.metrics, outputs.notes.get("metrics") or "no window metrics"
    latency = []
    for (model, version), rows in _series(m).items():
        title = f"Latency percentiles: {model}/{version}"
        figure = _figure(title, "ms")
        for p in PERCENTILES:
            figure.add_trace(_line(rows, lambda r, p=p: dig_number(r, "latency_ms", p), p))
        latency.append(Chart(_slug("tech-latency", model, version), title, figure))
    if not latency:
        latency.append(Chart("tech-latency", "Latency percentiles", note=none))
    traffic = [
        _per_series("tech-throughput", "Throughput by model and version", m,
                    lambda r: as_number(r.get("throughput_rps")), "req/s", none),
        _per_series("tech-error-rate", "Error rate by model and version", m,
                    lambda r: as_number(r.get("error_rate")), "error rate", none, tickformat=".2%"),
    ]
    resources = latest_panes(({**r, "version": ""} for r in m), lambda r: dig_number(r, "resources", "samples"))
    figure = _figure("Resource utilisation (mean over the window's samples)", "utilisation", yaxis={"tickformat": ".0%"})
    for (model, _), rows in _series(resources).items():
        for kind in ("cpu", "memory", "gpu"):
            if any(dig_number(r, "resources", f"{kind}_mean") is not None for r in rows):
                figure.add_trace(_line(rows, lambda r, k=kind: dig_number(r, "resources", f"{k}_mean"),
                                       f"{html.escape(model, quote=False)} {kind}"))
    resource_chart = Chart("tech-resources", "Resource utilisation", figure) if figure.data else \
        Chart("tech-resources", "Resource utilisation", note=none if not m else "no resource samples in the windows")
    letters: dict[str, int] = {}
    for letter in outputs.dead_letters:
        reason = str(letter.get("reason") or "unknown")
        letters[reason] = letters.get(reason, 0) + 1
    if letters:
        reasons = sorted(letters, key=lambda k: (-letters[k], k))
        figure = _figure(f"Dead letters by reason ({sum(letters.values()):,})", "records", hovermode="closest")
        figure.add_trace(go.Bar(x=[html.escape(r, quote=False) for r in reasons], y=[letters[r] for r in reasons],
                                name="dead letters"))
        dead = Chart("tech-dead-letters", "Dead letters by reason", figure)
    else:
        dead = Chart("tech-dead-letters", "Dead letters by reason", note=outputs.notes.get("dead_letters") or "none")
    late = (f"<p class='hint'>{outputs.superseded_panes} window pane(s) were replaced by a fuller late pane "
            "of the same window; the charts show the fullest.</p>") if outputs.superseded_panes else ""
    return View("technical", "Technical", [
        Section("Latency", latency, late), Section("Traffic and errors", traffic),
        Section("Resources and dead letters", [resource_chart, dead]),
        Section("Alerts", [_alerts_timeline(outputs)]),
    ])


# --- data science ----------------------------------------------------------------------------

def _heatmap(chart_id: str, title: str, rows: list[Mapping[str, Any]], stat: str, scale: str, threshold: float) -> Chart | None:
    """Feature x window of ``stat``; the colour scale runs from 0 to twice the default drift
    threshold at least, so that windows without drift stay pale."""
    features: list[str] = []
    for r in rows:
        for name in keys(r, "features"):
            if name not in features:
                features.append(name)
    if not features:
        return None
    z = [[dig_number(r, "features", f, stat) for r in rows] for f in features]
    top = max((v for line in z for v in line if v is not None), default=0.0)
    figure = _figure(title, height=max(240, 120 + 26 * len(features)), hovermode="closest",
                     yaxis={"type": "category", "autorange": "reversed"})
    figure.add_trace(go.Heatmap(x=[axis_time(r["window_end"]) for r in rows], y=[html.escape(f, quote=False) for f in features],
                                z=z, colorscale=scale, zmin=0, zmax=max(top, 2 * threshold), colorbar={"title": {"text": stat.upper()}},
                                hovertemplate="%{y}<br>%{x}<br>" + stat.upper() + " %{z:.4f}<extra></extra>"))
    return Chart(chart_id, title, figure, height=figure.layout.height)


def _quality_chart(model: str, version: str, rows: list[Mapping[str, Any]]) -> Chart:
    title = f"Quality: {model}/{version}"
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.update_layout(template=_TEMPLATE, height=340, title={"text": html.escape(title, quote=False)})
    regression = any(dig(r, "quality", "task") == "regression" for r in rows)
    names = ("mae", "rmse") if regression else ("accuracy", "f1")
    for metric in names:
        figure.add_trace(_line(rows, lambda r, k=metric: dig_number(r, "quality", k), metric.upper() if regression else metric),
                         secondary_y=False)
    figure.add_trace(_line(rows, lambda r: dig_number(r, "quality", "labelled_fraction"), "labelled fraction",
                           line={"dash": "dot", "color": "#7f7f7f"}), secondary_y=True)
    figure.update_yaxes(title_text="error" if regression else "score", secondary_y=False)
    figure.update_yaxes(title_text="labelled fraction", tickformat=".0%", range=[0, 1.02], secondary_y=True)
    return Chart(_slug("ds-quality", model, version), title, figure)


def _bias_charts(model: str, version: str, rows: list[Mapping[str, Any]]) -> list[Chart]:
    attributes: list[str] = []
    for r in rows:
        for name in keys(r, "quality", "bias"):
            if name not in attributes:
                attributes.append(name)
    charts = []
    for attribute in attributes:
        title = f"Bias by {attribute}: {model}/{version}"
        figure = _figure(title, "disparity")
        for measure in _DISPARITY:
            value = (lambda r, k=measure: dig_number(r, "quality", "bias", attribute, k))
            if any(value(r) is not None for r in rows):
                figure.add_trace(_line(rows, value, measure.replace("_", " ")))
        if any(t.name == "disparate impact ratio" for t in figure.data):
            figure.add_hline(y=0.8, line={"dash": "dash", "color": "#d62728", "width": 1},
                             annotation_text="four-fifths rule (impact ratio)", annotation_position="top left")
        if not figure.data:  # no disparity measures (not a binary classifier): the per-subgroup quality
            metric = "mae" if any(dig(r, "quality", "task") == "regression" for r in rows) else "accuracy"
            groups = sorted({g for r in rows for g in keys(r, "quality", "bias", attribute, "subgroups")})
            for group in groups:
                figure.add_trace(_line(rows, lambda r, g=group: dig_number(r, "quality", "bias", attribute, "subgroups", g, metric),
                                       f"{html.escape(group, quote=False)} {metric}"))
            figure.update_yaxes(title_text=metric)
        if figure.data:
            charts.append(Chart(_slug("ds-bias", model, version, attribute), title, figure))
    return charts


def _ab_charts(outputs: RunOutputs) -> list[Chart]:
    measures = (("metrics", "error_rate_difference", "error rate difference", ".2%"),
                ("metrics", "latency_p95_difference_ms", "p95 latency difference, ms", None),
                ("quality", "accuracy_difference", "accuracy difference", ".2%"))
    charts = []
    for model in sorted({r["model"] for r in outputs.ab}):
        records = [r for r in outputs.ab if r["model"] == model]
        versions = sorted({v for r in records for v in keys(r, "versions")})
        present = [m for m in measures if any(dig_number(r, "versions", v, m[1]) is not None
                                              for r in records if r.get("kind") == m[0] for v in versions)]
        if not present:
            continue
        baseline = next((str(r.get("baseline")) for r in records if r.get("baseline")), "the baseline")
        title = f"A/B: {model}, versions minus {baseline}"
        figure = make_subplots(rows=len(present), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                               subplot_titles=[m[2] for m in present])
        figure.update_layout(template=_TEMPLATE, height=120 + 170 * len(present), title={"text": html.escape(title, quote=False)},
                             margin={"t": 80})
        for row, (kind, key, _, fmt) in enumerate(present, 1):
            for version in versions:
                rows = [r for r in records if r.get("kind") == kind and dig_number(r, "versions", version, key) is not None]
                if rows:
                    figure.add_trace(_line(rows, lambda r, v=version, k=key: dig_number(r, "versions", v, k),
                                           f"{html.escape(version, quote=False)} {key}", mode="lines+markers"), row=row, col=1)
            figure.add_hline(y=0, line={"color": "#7f7f7f", "width": 1}, row=row, col=1)
            if fmt:
                figure.update_yaxes(tickformat=fmt, row=row, col=1)
        charts.append(Chart(_slug("ds-ab", model), title, figure, height=figure.layout.height))
    return charts


def _data_science(outputs: RunOutputs) -> View:
    m, none = outputs.metrics, outputs.notes.get("metrics") or "no window metrics"
    series = _series(m)
    drift: list[Chart] = []
    for (model, version), rows in series.items():
        for stat, label, scale in (("psi", "PSI", "YlOrRd"), ("js", "Jensen-Shannon", "Purples")):
            chart = _heatmap(_slug("ds", stat, model, version), f"{label} per feature: {model}/{version}", rows, stat, scale,
                             DRIFT_THRESHOLDS[stat])
            if chart is not None:
                drift.append(chart)
    if not drift:
        drift.append(Chart("ds-drift", "Drift per feature", note=none if not m else "no feature drift in the windows"))
    overall = [
        _per_series("ds-share-drifted", "Share of drifted features", m, lambda r: as_number(r.get("share_drifted")),
                    "share", none, tickformat=".0%"),
        _per_series("ds-prediction-drift", "Prediction drift (PSI of the predictions)", m,
                    lambda r: dig_number(r, "prediction_drift", "psi"), "PSI", "no prediction distribution in the profiles",
                    0.2, "PSI 0.2"),
        _per_series("ds-confidence-drift", "Confidence drift (PSI of the confidences)", m,
                    lambda r: dig_number(r, "confidence", "drift", "psi"), "PSI", "no confidences", 0.2, "PSI 0.2"),
        _per_series("ds-confidence", "Mean confidence", m, lambda r: dig_number(r, "confidence", "mean"), "confidence",
                    "no confidences", from_zero=False),
    ]
    quality: list[Chart] = []
    bias: list[Chart] = []
    for (model, version), rows in _series(outputs.quality).items():
        quality.append(_quality_chart(model, version, rows))
        bias.extend(_bias_charts(model, version, rows))
    q_note = outputs.notes.get("quality") or "no quality panes"
    if not quality:
        quality.append(Chart("ds-quality", "Model quality", note=f"{q_note} (a run without labels has none)"))
    if not bias:
        bias.append(Chart("ds-bias", "Bias", note=q_note if not outputs.quality else "no sensitive attributes configured"))
    importance: list[Chart] = []
    for (model, version), rows in series.items():
        features = sorted({f for r in rows for f in keys(r, "importance")})
        if not features:
            continue
        title = f"Feature importance (mean |attribution|): {model}/{version}"
        figure = _figure(title, "mean |attribution|")
        for feature in features:
            figure.add_trace(_line(rows, lambda r, f=feature: dig_number(r, "importance", f, "mean_abs"),
                                   html.escape(feature, quote=False)))
        importance.append(Chart(_slug("ds-importance", model, version), title, figure))
    if not importance:
        importance.append(Chart("ds-importance", "Feature importance", note="no attributions in the events"))
    ab = _ab_charts(outputs) or [Chart("ds-ab", "A/B comparison",
                                       note=outputs.notes.get("ab") or "no A/B comparisons (no baseline_version)")]
    return View("data-science", "Data science", [
        Section("Drift per feature", drift), Section("Overall drift", overall), Section("Quality", quality),
        Section("Bias", bias), Section("Feature importance", importance), Section("A/B by version", ab),
    ])


def _unique_ids(views: list[View]) -> list[View]:
    """Suffixes chart ids that two model/version names made equal (``a-b``/``c`` and ``a``/``b-c``)."""
    seen: set[str] = set()
    out = []
    for view in views:
        sections = []
        for section in view.sections:
            charts = []
            for chart in section.charts:
                chart_id, n = chart.id, 1
                while chart_id in seen:
                    n += 1
                    chart_id = f"{chart.id}-{n}"
                seen.add(chart_id)
                charts.append(replace(chart, id=chart_id))
            sections.append(replace(section, charts=charts))
        out.append(replace(view, sections=sections))
    return out


def build_report(outputs: RunOutputs) -> Report:
    """The executive, technical and data-science views of a run's outputs."""
    return Report(outputs, _unique_ids([_executive(outputs), _technical(outputs), _data_science(outputs)]))

