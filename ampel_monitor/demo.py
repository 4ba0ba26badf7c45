"""``ampel-monitor demo``: the whole monitor on a seeded scenario, on the embedded runner.

Generates three models' traffic and delayed labels with known incidents (``ampel_monitor.demo_data``),
profiles each model's reference data, runs the monitoring pipeline over the stream
with progress on stderr, writes the HTML report of its outputs (``report.html``), and
prints what it found: windows, alerts by severity, and where the drift was.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from ampel_monitor.config import BELOW_RULES, load_config
from ampel_monitor.demo_data import Scenario, generate
from ampel_monitor.report import write_report
from pipelines.monitor import RunSummary, load_profile, run
from transforms.counters import REGISTRY

__all__ = ["REPORT_FILE", "run_demo", "summarize"]

#: The HTML report's file in the demo's output directory.
REPORT_FILE = "report.html"


def _total(name: str) -> float:
    return sum(
        sample.value for family in REGISTRY.collect() for sample in family.samples if sample.name == name
    )


class _Progress:
    """Prints the pipeline's own counters to a stream every ``period`` seconds while it runs."""

    def __init__(self, expected: int, stream: TextIO) -> None:
        self._expected, self._stream = expected, stream
        self._tty = stream.isatty()
        self._period = 1.0 if self._tty else 5.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._base = (_total("ampel_events_total"), _total("ampel_windows_emitted_total"))

    def _line(self) -> str:
        events = _total("ampel_events_total") - self._base[0]
        windows = _total("ampel_windows_emitted_total") - self._base[1]
        share = events / self._expected if self._expected else 1.0
        return f"{chr(13) if self._tty else ''}  events decoded {events:,.0f} / {self._expected:,} ({share:.0%}), windows emitted {windows:,.0f}"

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            self._stream.write(self._line() + ("" if self._tty else "\n"))
            self._stream.flush()

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._stream.write(self._line() + "\n")


def summarize(summary: RunSummary, scenario: Scenario | None = None) -> str:
    """A readable account of a run: windows, alerts by severity, drift found."""
    lines = [f"windows: {summary.windows} emitted ({summary.late_windows} late panes)"]
    models = sorted({m["model"] for m in summary.metrics})
    for model in models:
        windows = [m for m in summary.metrics if m["model"] == model and not m["late"]]
        versions = sorted({m["version"] for m in windows})
        lines.append(f"  {model}: {len(windows)} windows, versions {', '.join(versions)}")
    firing = [a for a in summary.alerts if a["state"] == "firing"]
    by_severity = Counter(a["severity"] for a in firing)
    lines.append(
        "alerts fired: "
        + ", ".join(f"{by_severity.get(s, 0)} {s}" for s in ("critical", "warning", "info"))
        + f" ({sum(a['state'] == 'resolved' for a in summary.alerts)} resolved)"
    )
    for alert in sorted(firing, key=lambda a: (a["window_end"], a["model"], a["rule"])):
        resolved = next(
            (r["window_end"] for r in summary.alerts
             if r["state"] == "resolved" and (r["model"], r["version"], r["rule"], r["severity"])
             == (alert["model"], alert["version"], alert["rule"], alert["severity"])
             and r["window_end"] > alert["window_end"]),
            "still firing",
        )
        lines.append(
            f"  {alert['severity']:8} {alert['model']}/{alert['version']} {alert['rule']} = {alert['value']:.3g} "
            f"({'<' if alert['rule'] in BELOW_RULES else '>'} {alert['threshold']:g}) "
            f"from window ending {alert['window_end']} until {resolved}"
        )
    drift: dict[tuple[str, str], str] = {}
    for m in sorted(summary.metrics, key=lambda m: m["window_end"]):
        for feature in m["drifted_features"]:
            drift.setdefault((f"{m['model']}/{m['version']}", feature), m["window_end"])
    lines.append("drift found:" if drift else "drift found: none")
    for (where, feature), first in sorted(drift.items(), key=lambda kv: kv[1]):
        lines.append(f"  {where} {feature}: first in the window ending {first}")
    if summary.quality:
        lines.append("quality (windows with labels):")
        final: dict[tuple[str, str, str], dict] = {}
        for q in summary.quality:  # the fullest pane of each window
            key = (q["model"], q["version"], q["window_end"])
            if key not in final or q["quality"]["labelled"] >= final[key]["labelled"]:
                final[key] = q["quality"]
        for model, version in sorted({(m, v) for m, v, _ in final}):
            windows = [q for (m, v, _), q in final.items() if (m, v) == (model, version)]
            name, values = ("accuracy", [q["accuracy"] for q in windows]) if windows[0]["task"] == "classification" \
                else ("MAE", [q["mae"] for q in windows])
            values = [v for v in values if v is not None]
            labelled = sum(q["labelled"] for q in windows) / max(1, sum(q["predictions"] for q in windows))
            lines.append(f"  {model}/{version}: {name} {min(values):.3g}-{max(values):.3g} over {len(windows)} windows, "
                         f"{labelled:.0%} labelled")
    if summary.dead_letters:
        lines.append("dead letters: " + ", ".join(f"{n} {reason}" for reason, n in sorted(summary.dead_letters.items())))
    if scenario is not None:
        lines.append("injected incidents:")
        for incident in scenario.incidents:
            lines.append(f"  {incident.kind} {incident.model}: {incident.detail}")
    lines.append(f"outputs: {summary.out_dir}/metrics.jsonl, quality.jsonl, ab.jsonl, alerts.jsonl, dead_letters.jsonl")
    return "\n".join(lines)


def run_demo(
    out_dir: str | Path = "out/demo",
    seed: int = 7,
    hours: float = 3.0,
    rate_per_s: float = 30.0,
    beam_args: Sequence[str] = (),
    stream: TextIO = sys.stderr,
) -> tuple[Scenario, RunSummary]:
    """Generates the scenario, profiles the references, runs the pipeline; returns both."""
    out = Path(out_dir)
    stream.write(f"generating {hours:g} h of traffic at {rate_per_s:g} events/s (seed {seed}) into {out / 'data'}\n")
    scenario = generate(out / "data", seed=seed, hours=hours, rate_per_s=rate_per_s)
    config = load_config(scenario.files["config"])
    profiles = out / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    models = []
    for model in config.models:
        profile = load_profile(model.reference, model.prediction, model.confidence, model.label)
        path = profiles / f"{model.id}.json"
        profile.save(path)
        stream.write(f"profiled {model.id}: {len(profile.features)} features, {profile.rows:,} reference rows -> {path}\n")
        models.append(replace(model, reference=str(path)))
    config = replace(config, models=tuple(models))
    expected = sum(1 for _ in open(scenario.files["events"], "rb"))
    stream.write(f"running the pipeline over {expected:,} events on the local runner\n")
    started = time.perf_counter()
    with _Progress(expected, stream):
        summary = run(config, [str(scenario.files["events"])], [str(scenario.files["resources"])], str(out), beam_args,
                      labels=[str(scenario.files["labels"])])
    stream.write(f"done in {time.perf_counter() - started:.1f} s\n")
    written = write_report(summary.out_dir, summary.out_dir / REPORT_FILE)
    stream.write(f"report: {written.charts} charts -> {written.path}\n")
    return scenario, summary
