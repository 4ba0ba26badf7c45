"""Alerts to Alertmanager's v2 API (``POST /api/v2/alerts``), retried while it is down.

An alert is identified by its labels: ``alertname`` (``Ampel`` + the rule in
CamelCase, e.g. ``AmpelLatencyP95``), ``model``, ``version``, ``rule``, ``severity``
and the configured extra labels. ``deploy/prometheus/rules.yml`` gives its alerts the
same labels, so Alertmanager merges the two sources into one alert.

* A firing alert starts at its window's end (event time) and ends ``firing_timeout``
  after it was posted: the pipeline resolves it explicitly, the timeout only keeps a
  stopped pipeline from leaving it firing forever.
* A resolved alert ends at the end of the window that resolved it (never later than
  now), which Alertmanager turns into a resolution notice.

Connection errors, timeouts, 429 and 5xx are retried with backoff until the retry
deadline (then ``alertmanager_unavailable`` dead letters); other 4xx are
``alertmanager_rejected``.

Pure Python: no Apache Beam import.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from ampel_monitor.config import AlertmanagerSink

__all__ = ["AlertPoster", "PostResult", "alert_name", "payload"]


def alert_name(rule: str) -> str:
    """>>> alert_name("latency_p95"), alert_name("data_drift")
    ('AmpelLatencyP95', 'AmpelDataDrift')
    """
    return "Ampel" + "".join(part[:1].upper() + part[1:] for part in rule.split("_"))


def _time(rfc3339: str) -> datetime:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload(alert: Mapping[str, Any], firing_timeout: float, extra_labels: Mapping[str, str] = {},
            now: datetime | None = None) -> dict[str, Any]:
    """The v2 API object of one alert record (see ``ampel_monitor.alerts``)."""
    now = now or datetime.now(timezone.utc)
    end = _time(alert["window_end"])
    labels = {**extra_labels, "alertname": alert_name(alert["rule"]), "model": alert["model"],
              "version": alert["version"], "rule": alert["rule"], "severity": alert["severity"]}
    annotations = {
        "value": f"{alert['value']:.6g}",
        "threshold": f"{alert['threshold']:g}",
        "summary": f"{alert['rule']} {alert['state']} for {alert['model']} {alert['version']}: "
                   f"{alert['value']:.4g} {'>' if alert['state'] == 'firing' else '<='} {alert['threshold']:g}"
                   + (f" ({alert['detail']})" if alert.get("detail") else ""),
        "window_start": alert["window_start"],
        "window_end": alert["window_end"],
    }
    if alert["state"] == "firing":
        starts, ends = end, max(now, end) + timedelta(seconds=firing_timeout)
    else:
        starts, ends = _time(alert["window_start"]), min(end, now)
    return {"labels": labels, "annotations": annotations, "startsAt": _iso(starts), "endsAt": _iso(ends)}


@dataclass
class PostResult:
    """What one ``AlertPoster.post`` call did."""

    alerts: int = 0
    retries: int = 0
    dead_letters: list[dict[str, str]] = field(default_factory=list)


class AlertPoster:
    """Posts alert records to Alertmanager, in window order, one request per call."""

    def __init__(self, config: AlertmanagerSink, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.url = f"{config.url}/api/v2/alerts"
        self.session = session or requests.Session()
        self._sleep, self._clock = sleep, clock

    def post(self, alerts: Sequence[Mapping[str, Any]]) -> PostResult:
        result = PostResult()
        if not alerts:
            return result
        ordered = sorted(alerts, key=lambda a: a["window_end"])
        outcome, text = self._send(ordered, result)
        if outcome == "ok":
            result.alerts = len(ordered)
        else:
            reason = "alertmanager_rejected" if outcome == "permanent" else "alertmanager_unavailable"
            result.dead_letters = [
                {"reason": reason, "detail": text,
                 "source": f"alertmanager:{a['model']}/{a['version']}/{a['rule']}@{a['window_end']}",
                 "record": json.dumps(a, separators=(",", ":"), default=str)}
                for a in ordered
            ]
        return result

    def _send(self, alerts: Sequence[Mapping[str, Any]], result: PostResult) -> tuple[str, str]:
        def post() -> tuple[str, str]:
            # built on every try: a firing alert's end counts from when it is delivered
            body = [payload(a, self.config.firing_timeout, self.config.labels) for a in alerts]
            try:
                response = self.session.post(self.url, json=body, timeout=self.config.retry.timeout)
            except requests.RequestException as exc:
                return "transient", f"{type(exc).__name__}: {exc}"[:500]
            status = response.status_code
            outcome = "ok" if status < 300 else "transient" if status == 429 or status >= 500 else "permanent"
            return outcome, f"HTTP {status}: {response.text.strip()[:500]}"

        outcome, text, retries = self.config.retry.retry(post, self._sleep, self._clock)
        result.retries += retries
        return outcome, text
