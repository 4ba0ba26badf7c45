"""Alerts to Alertmanager: the v2 payload, and delivery to a real Alertmanager (also while it is down)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest

from ampel_monitor.alertmanager import AlertPoster, alert_name, payload
from ampel_monitor.config import AlertmanagerSink, RetryPolicy
from tests.services import wait_for
from tests.sinks.records import alert

NOW = datetime(2027, 1, 1, tzinfo=timezone.utc)


def test_firing_payload_carries_the_label_contract_and_expires_after_the_timeout():
    body = payload(alert(), firing_timeout=3600, extra_labels={"env": "prod"}, now=NOW)
    assert body["labels"] == {"alertname": "AmpelLatencyP95", "model": "alpha", "version": "v1",
                              "rule": "latency_p95", "severity": "critical", "env": "prod"}
    assert body["annotations"]["value"] == "1.8" and body["annotations"]["threshold"] == "1"
    assert body["annotations"]["summary"] == "latency_p95 firing for alpha v1: 1.8 > 1 (p95 latency in seconds)"
    assert body["startsAt"] == alert()["window_end"].replace("Z", ".000Z")
    assert body["endsAt"] == "2027-01-01T01:00:00.000Z"


def test_resolved_payload_ends_at_the_resolving_window_end_never_in_the_future():
    resolved = alert(state="resolved", value=0.2, end_minute=9)
    body = payload(resolved, firing_timeout=3600, now=NOW)
    assert body["endsAt"] == resolved["window_end"].replace("Z", ".000Z")
    assert body["startsAt"] == resolved["window_start"].replace("Z", ".000Z")
    future = alert(state="resolved", base_ms=int(NOW.timestamp() * 1000) + 3_600_000)
    assert payload(future, 3600, now=NOW)["endsAt"] == "2027-01-01T00:00:00.000Z"


@pytest.mark.parametrize(("rule", "name"), [("latency_p95", "AmpelLatencyP95"), ("error_rate", "AmpelErrorRate"),
                                            ("resource_utilisation", "AmpelResourceUtilisation")])
def test_alert_names(rule, name):
    assert alert_name(rule) == name


def _recent(**kwargs):
    return alert(base_ms=(int(time.time() * 1000) // 60_000 - 30) * 60_000, **kwargs)


def _active(observability, rule):
    return [a for a in observability.am_alerts() if a["labels"].get("rule") == rule]


@pytest.mark.it
def test_firing_then_resolved_in_a_real_alertmanager(observability):
    poster = AlertPoster(AlertmanagerSink(url=observability.alertmanager))
    assert poster.post([_recent(rule="error_rate", value=0.05, threshold=0.01)]).alerts == 1
    (active,) = _active(observability, "error_rate")
    assert active["status"]["state"] == "active" and active["receivers"] == [{"name": "pager"}]
    assert active["annotations"]["value"] == "0.05"
    result = poster.post([_recent(rule="error_rate", state="resolved", value=0.0, end_minute=8)])
    assert result.alerts == 1 and not result.dead_letters
    assert _active(observability, "error_rate") == []


@pytest.mark.it
def test_an_alert_posted_while_alertmanager_is_down_arrives_once_it_is_back(observability):
    observability.stop_alertmanager()
    poster = AlertPoster(AlertmanagerSink(url=observability.alertmanager,
                                          retry=RetryPolicy(initial_backoff=0.2, max_backoff=1, deadline=120)))
    results = []
    thread = threading.Thread(target=lambda: results.append(poster.post([_recent(rule="data_drift", severity="warning",
                                                                                 value=0.4, threshold=0.2)])))
    thread.start()
    time.sleep(4)
    assert thread.is_alive(), "the poster must still be retrying"
    observability.start()
    thread.join(timeout=60)
    (result,) = results
    assert result.alerts == 1 and result.retries >= 3 and not result.dead_letters
    (active,) = wait_for(lambda: _active(observability, "data_drift"), 10, what="the alert in Alertmanager")
    assert active["labels"]["severity"] == "warning" and active["receivers"] == [{"name": "chat"}]


@pytest.mark.it
def test_an_invalid_alert_is_dead_lettered_not_retried(observability):
    # a label name Alertmanager refuses (the config validation would have stopped it)
    poster = AlertPoster(AlertmanagerSink(url=observability.alertmanager, labels={"bad-name": "x"}))
    result = poster.post([_recent(rule="error_rate")])
    assert result.retries == 0 and result.alerts == 0
    assert [d["reason"] for d in result.dead_letters] == ["alertmanager_rejected"]
    assert result.dead_letters[0]["detail"].startswith("HTTP 400")
