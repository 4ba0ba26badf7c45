"""The report page: one self-contained HTML file, plotly.js inlined once, every figure as JSON."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from plotly.offline import get_plotlyjs

from ampel_monitor.report.outputs import OUTPUT_FILES, load_outputs, parse_time
from ampel_monitor.report.views import Report, build_report

__all__ = ["Written", "render_html", "write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2733;background:#fff}
header{position:sticky;top:0;z-index:10;background:#1d2733;color:#fff;padding:8px 24px;display:flex;gap:24px;align-items:baseline}
header a{color:#cfe3ff;text-decoration:none}header h1{font-size:18px;margin:0}
main{padding:8px 24px 48px}h2{border-bottom:2px solid #1d2733;padding-top:56px;margin-top:0}h3{margin:20px 0 4px}
.chart{width:100%;margin:4px 0 12px}.note,.hint{color:#5b6775;font-style:italic}
table.summary{border-collapse:collapse;font-size:13px}table.summary td,table.summary th{border:1px solid #d5dae0;padding:4px 8px;text-align:right}
table.summary td:first-child,table.summary td:last-child{text-align:left}td.ok{background:#e6f4ea}td.bad{background:#fce8e6}
td.sev-critical{color:#d62728;font-weight:bold}td.sev-warning{color:#c05a00}td.sev-info{color:#1f77b4}
.sources{font-size:13px;color:#5b6775}
"""

_SCRIPT = """
(function () {
  var figures = JSON.parse(document.getElementById("ampel-figures").textContent);
  var config = {displaylogo: false, responsive: true};
  Promise.all(figures.map(function (f) {
    return Plotly.newPlot(f.id, f.figure.data, f.figure.layout, config);
  })).then(function () { window.ampelRendered = figures.length; },
           function (error) { window.ampelRendered = -1; throw error; });
})();
"""


def _json_for_script(text: str) -> str:
    """JSON safe inside a script element: ``<``, ``>`` and ``&`` only occur inside strings."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(report: Report, title: str = "ampel-monitor report") -> str:
    """The page: inline CSS, plotly.js once, the figures as one JSON document."""
    source = report.source
    ends = [parse_time(r["window_end"]) for r in source.metrics]
    span = f"{min(ends):%Y-%m-%d %H:%M} to {max(ends):%Y-%m-%d %H:%M} UTC" if ends else "no windows"
    files = "".join(
        f"<li>{html.escape(name)}: {html.escape(source.notes[kind]) if kind in source.notes else 'read'}</li>"
        for kind, name in OUTPUT_FILES.items())
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><link rel='icon' href='data:,'>",
        f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style><script>{get_plotlyjs()}</script></head><body>",
        f"<header><h1>{html.escape(title)}</h1>",
        *(f"<a href='#{v.id}'>{html.escape(v.title)}</a>" for v in report.views),
        f"<span class='sources'>{html.escape(str(source.directory))}, windows ending {span}</span></header><main>",
    ]
    figures = []
    for view in report.views:
        parts.append(f"<section id='{view.id}'><h2>{html.escape(view.title)}</h2>")
        for section in view.sections:
            parts.append(f"<h3>{html.escape(section.title)}</h3>{section.html}")
            for chart in section.charts:
                if chart.figure is None:
                    parts.append(f"<p class='note' id='{chart.id}-note'>{html.escape(chart.title)}: "
                                 f"{html.escape(chart.note or 'no data')}</p>")
                    continue
                parts.append(f"<div class='chart' id='{chart.id}' style='height:{chart.height}px'></div>")
                figures.append(f'{{"id":{json.dumps(chart.id)},"figure":{chart.figure.to_json(validate=False)}}}')
        parts.append("</section>")
    parts.append(f"<h3>Files read</h3><ul class='sources'>{files}</ul></main>")
    parts.append(f"<script type='application/json' id='ampel-figures'>{_json_for_script('[' + ','.join(figures) + ']')}"
                 f"</script><script>{_SCRIPT}</script></body></html>")
    return "".join(parts)


@dataclass(frozen=True)
class Written:
    """What ``write_report`` wrote."""

    path: Path
    charts: int
    notes: int
    bytes: int


def write_report(metrics_dir: str | Path, out: str | Path, title: str = "ampel-monitor report") -> Written:
    """Reads a run's output directory and writes the report page to ``out``."""
    report = build_report(load_outputs(metrics_dir))
    page = render_html(report, title)
    path = Path(out)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    charts = report.charts()
    drawn = sum(c.figure is not None for c in charts)
    return Written(path, drawn, len(charts) - drawn, path.stat().st_size)
