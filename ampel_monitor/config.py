"""The monitor's configuration: one YAML file, validated at start-up into typed objects.

Every error names the field it is about (``models[1].task: ...``) and is raised before
any pipeline starts. Durations are seconds or strings like ``90s``, ``5m``, ``2h``.

Example::

    models:
      - id: credit-risk
        task: classification
        reference: profiles/credit-risk.json
    windows: {size: 5m, slide: 1m, allowed_lateness: 2m}
    alerts:
      latency_p95: {threshold: 0.5}
    drift:
      thresholds: {psi: 0.2, js: 0.1}
      min_count: 300
    sinks:
      out_dir: out
      prometheus: {url: "http://127.0.0.1:19090/api/v1/write"}
      alertmanager: {url: "http://127.0.0.1:19094"}
      elasticsearch: {hosts: ["http://127.0.0.1:19200"], decision_log: {sample: 0.1}}
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from drift.report import DriftPolicy

__all__ = [
    "AlertRule",
    "AlertmanagerSink",
    "Config",
    "DecisionLog",
    "ElasticsearchSink",
    "KafkaConfig",
    "KafkaTopics",
    "BELOW_RULES",
    "DEFAULT_RULES",
    "LabelsConfig",
    "ModelConfig",
    "PrometheusSink",
    "RetryPolicy",
    "SinksConfig",
    "WindowConfig",
    "load_config",
    "parse_config",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
SEVERITIES = ("critical", "warning", "info")
#: Windows with fewer values of a feature never count it as drifted (see ``DriftPolicy``).
DEFAULT_DRIFT_MIN_COUNT = 300
TASKS = ("classification", "regression")


def parse_duration(value: Any, where: str) -> float:
    """Seconds from a number or a string like ``5m``.

    Raises:
        ValueError: naming ``where``, if the value is not a positive duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a duration like 30s, 5m or 1h, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{where}: expected a duration like 30s, 5m or 1h, got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError(f"{where}: must not be negative, got {value!r}")
    return seconds


@dataclass(frozen=True)
class WindowConfig:
    """Sliding event-time windows, computed from slices of the slide length."""

    #: Window length, seconds.
    size: float = 300.0
    #: Distance between window starts, seconds; ``size`` must be a multiple of it.
    slide: float = 60.0
    #: How long after a window's end late events still update it, seconds.
    allowed_lateness: float = 120.0

    @property
    def size_ms(self) -> int:
        return int(round(self.size * 1000))

    @property
    def slide_ms(self) -> int:
        return int(round(self.slide * 1000))

    @property
    def lateness_ms(self) -> int:
        return int(round(self.allowed_lateness * 1000))


@dataclass(frozen=True)
class AlertRule:
    """One alert rule: a window metric against a threshold, at one severity."""

    #: Rule name (see ``ampel_monitor.alerts.RULE_VALUES`` for the metric it reads).
    name: str
    #: "critical", "warning" or "info".
    severity: str
    #: The rule fires while the metric is strictly above this (below, for ``BELOW_RULES``).
    threshold: float

    @property
    def below(self) -> bool:
        """Whether the rule fires below its threshold rather than above."""
        return self.name in BELOW_RULES


#: Rules in alert while their value is strictly below the threshold.
BELOW_RULES = frozenset({"disparate_impact"})


#: The default rules of the operating spec.
DEFAULT_RULES = (
    AlertRule("latency_p95", "critical", 1.0),  # seconds
    AlertRule("error_rate", "critical", 0.01),
    AlertRule("accuracy_drop", "critical", 0.10),
    AlertRule("accuracy_drop", "warning", 0.05),
    AlertRule("data_drift", "warning", 0.2),  # the largest feature PSI
    AlertRule("resource_utilisation", "warning", 0.8),
    AlertRule("feature_drift", "info", 0.1),  # the largest feature Jensen-Shannon distance
    AlertRule("importance_shift", "info", 0.15),  # top-5 rank change of feature importance
    AlertRule("disparate_impact", "warning", 0.8),  # below: the four-fifths rule
)


@dataclass(frozen=True)
class ModelConfig:
    """One monitored model."""

    #: The ``model_id`` of its events.
    id: str
    #: "classification" or "regression".
    task: str
    #: A reference profile (JSON from ``ampel-monitor profile``) or a reference data file.
    reference: str
    #: Columns of the reference data file, when it is one (ignored for a profile).
    prediction: str | None = "prediction"
    confidence: str | None = "confidence"
    label: str | None = "label"
    #: Binary classification: the positive class (precision, recall, F1, bias); None: multiclass.
    positive_label: str | None = None
    #: Event attributes whose subgroups get bias metrics.
    sensitive: tuple[str, ...] = ()
    #: The version others are compared with (A/B); None: no comparison.
    baseline_version: str | None = None


@dataclass(frozen=True)
class LabelsConfig:
    """Delayed ground truth: how labels are joined to predictions and when quality counts."""

    #: How long (event time) a prediction waits for its label, seconds.
    max_delay: float = 3600.0
    #: How long a label waits for its prediction, seconds.
    grace: float = 300.0
    #: Quality alerts need at least this many labelled predictions in a window ...
    min_labelled: int = 30
    #: ... and at least this share of the window's predictions labelled.
    min_fraction: float = 0.1
    #: Join shards per model (parallelism and state size per key).
    shards: int = 4

    @property
    def max_delay_ms(self) -> int:
        return int(round(self.max_delay * 1000))

    @property
    def grace_ms(self) -> int:
        return int(round(self.grace * 1000))


@dataclass(frozen=True)
class RetryPolicy:
    """How a sink retries transient failures: exponential backoff with jitter, then gives up.

    What is still undelivered after ``deadline`` seconds goes to the dead-letter
    path (reason ``<sink>_unavailable``), so a long outage never blocks the job forever
    and never loses a result silently.
    """

    #: First wait, seconds; doubled after each failure.
    initial_backoff: float = 0.5
    #: Longest wait between two tries, seconds.
    max_backoff: float = 10.0
    #: Give up after this long, seconds.
    deadline: float = 600.0
    #: Timeout of one request, seconds.
    timeout: float = 10.0

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Waits between tries: from ``initial_backoff``, doubled up to ``max_backoff``, each
        drawn from the upper half of its value (so many writers do not retry in step).

        >>> delays = RetryPolicy(initial_backoff=1, max_backoff=4).delays(random.Random(0))
        >>> [round(next(delays), 2) for _ in range(5)]
        [0.92, 1.76, 2.84, 2.52, 3.02]
        """
        rng = rng or random.Random()
        delay = self.initial_backoff
        while True:
            yield delay * (0.5 + 0.5 * rng.random())
            delay = min(delay * 2, self.max_backoff)

    def retry(self, send: Callable[[], tuple[str, str]], sleep: Callable[[float], None],
              clock: Callable[[], float]) -> tuple[str, str, int]:
        """Calls ``send`` (which returns ``(outcome, text)``, outcome ``ok``, ``permanent`` or
        ``transient``) again after each transient outcome, waiting ``delays``, until the next
        wait would pass the deadline; returns ``(outcome, text, retries)``, outcome
        ``unavailable`` when it gave up.
        """
        deadline = clock() + self.deadline
        delays = self.delays()
        retries = 0
        while True:
            outcome, text = send()
            if outcome != "transient":
                return outcome, text, retries
            delay = next(delays)
            if clock() + delay > deadline:
                return "unavailable", f"gave up after {self.deadline:g}s: {text}", retries
            retries += 1
            sleep(delay)


@dataclass(frozen=True)
class PrometheusSink:
    """Window metrics to Prometheus by remote write, each sample at its window end."""

    #: The remote-write endpoint, e.g. ``http://127.0.0.1:19090/api/v1/write``.
    url: str
    #: Most time series per request.
    batch_size: int = 2000
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Basic-auth user; the password comes from the environment variable ``password_env``.
    username: str | None = None
    password_env: str | None = None
    #: A bearer token, from this environment variable.
    bearer_token_env: str | None = None


@dataclass(frozen=True)
class AlertmanagerSink:
    """Alerts posted to Alertmanager's v2 API."""

    #: Alertmanager's base URL, e.g. ``http://127.0.0.1:19094``.
    url: str
    #: A firing alert the pipeline has not resolved expires after this long, seconds
    #: (so a stopped pipeline never leaves an alert firing forever).
    firing_timeout: float = 3600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Labels added to every alert (e.g. ``{env: prod}``).
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DecisionLog:
    """One document per prediction, for audit."""

    enabled: bool = False
    #: The share of predictions logged, chosen by a hash of the event id (so a replay
    #: logs the same ones).
    sample: float = 1.0


@dataclass(frozen=True)
class ElasticsearchSink:
    """Window metrics, alerts, the decision log and dead letters to Elasticsearch or OpenSearch."""

    #: Node URLs.
    hosts: tuple[str, ...]
    #: "elasticsearch" or "opensearch" (the official clients of each).
    flavor: str = "elasticsearch"
    #: Indices are ``<prefix>-<kind>-YYYY.MM.DD`` with the alias ``<prefix>-<kind>``.
    index_prefix: str = "ampel"
    #: Documents per ``_bulk`` request.
    batch_size: int = 1000
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Install the index templates of ``deploy/elasticsearch`` at start-up.
    install_templates: bool = True
    decision_log: DecisionLog = field(default_factory=DecisionLog)
    #: Basic-auth user; the password comes from the environment variable ``password_env``.
    username: str | None = None
    password_env: str | None = None
    #: An API key (``id:key`` or its base64), from this environment variable.
    api_key_env: str | None = None
    #: CA bundle for TLS.
    ca_certs: str | None = None


@dataclass(frozen=True)
class SinksConfig:
    """Where results go."""

    #: Directory of metrics.jsonl, alerts.jsonl and dead_letters.jsonl; None for none.
    out_dir: str | None = "out"
    #: Port of the pipeline's own Prometheus /metrics endpoint (127.0.0.1); None for none.
    metrics_port: int | None = None
    prometheus: PrometheusSink | None = None
    alertmanager: AlertmanagerSink | None = None
    elasticsearch: ElasticsearchSink | None = None


@dataclass(frozen=True)
class KafkaTopics:
    """Topic names."""

    predictions: str = "predictions"
    labels: str = "labels"
    resources: str = "resources"
    alerts: str = "alerts"
    dead_letters: str = "dead-letters"


#: Start positions of the Kafka source.
KAFKA_STARTS = ("earliest", "latest", "committed", "timestamp")
_SECRET_KEYS = ("sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret")


@dataclass(frozen=True)
class KafkaConfig:
    """The Kafka cluster, its topics, and how records are read.

    Client properties (``security.protocol``, ``sasl.mechanism``, ``sasl.username``,
    ``ssl.ca.location``, ...) pass through ``properties``. Secrets never live in the
    config: ``sasl.password`` is read from the environment variable named by
    ``sasl_password_env`` or the file ``sasl_password_file`` when the client starts.
    """

    bootstrap: str
    topics: KafkaTopics = field(default_factory=KafkaTopics)
    group_id: str = "ampel-monitor"
    #: Where a partition starts: earliest, latest, committed (else earliest) or timestamp.
    start: str = "committed"
    start_timestamp_ms: int | None = None
    #: "avro" or "json".
    format: str = "avro"
    #: Avro with the Confluent framing; ``schema_ids`` maps framing ids to writer schema files.
    confluent: bool = False
    schema_ids: Mapping[int, str] = field(default_factory=dict)
    #: The watermark trails the event time read by this much, seconds.
    watermark_skew: float = 5.0
    #: A partition with nothing new for this long advances its watermark to now - skew, seconds.
    idle_timeout: float = 10.0
    #: Most messages polled at once per partition.
    max_poll_records: int = 5000
    properties: Mapping[str, str] = field(default_factory=dict)
    sasl_password_env: str | None = None
    sasl_password_file: str | None = None

    def client_config(self) -> dict[str, str]:
        """librdkafka properties, secrets included (read now from the environment or file).

        Raises:
            ValueError: if the named secret is missing.
        """
        config = {"bootstrap.servers": self.bootstrap, **self.properties}
        if self.sasl_password_env:
            if self.sasl_password_env not in os.environ:
                raise ValueError(f"kafka.sasl_password_env: environment variable {self.sasl_password_env!r} is not set")
            config["sasl.password"] = os.environ[self.sasl_password_env]
        elif self.sasl_password_file:
            try:
                config["sasl.password"] = Path(self.sasl_password_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"kafka.sasl_password_file: cannot read {self.sasl_password_file!r}: {exc.strerror}") from None
        return config


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    models: tuple[ModelConfig, ...]
    windows: WindowConfig = field(default_factory=WindowConfig)
    rules: tuple[AlertRule, ...] = DEFAULT_RULES
    #: Windows with fewer events are reported but never alerted on.
    min_alert_events: int = 10
    #: The confidence below which a prediction counts as unsure.
    confidence_threshold: float = 0.5
    drift: DriftPolicy = field(default_factory=lambda: DriftPolicy(min_count=DEFAULT_DRIFT_MIN_COUNT))
    sinks: SinksConfig = field(default_factory=SinksConfig)
    #: The Kafka source and sinks, if any.
    kafka: KafkaConfig | None = None
    #: Delayed labels: with this section the Kafka labels topic is read and quality computed.
    labels: LabelsConfig | None = None

    def model(self, model_id: str) -> ModelConfig | None:
        return next((m for m in self.models if m.id == model_id), None)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ValueError(f"{where}.{key}: unknown field, expected one of {sorted(allowed)}")


def _number(value: Any, where: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{where}: must be within [{low}, {high}], got {value!r}")
    return float(value)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _models(value: Any, base: Path) -> tuple[ModelConfig, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("models: expected a non-empty list of models")
    models = []
    allowed = {f.name for f in fields(ModelConfig)}
    for i, item in enumerate(value):
        where = f"models[{i}]"
        item = _mapping(item, where)
        _check_keys(item, allowed, where)
        for required in ("id", "task", "reference"):
            if required not in item:
                raise ValueError(f"{where}.{required}: missing")
        task = _string(item["task"], f"{where}.task")
        if task not in TASKS:
            raise ValueError(f"{where}.task: expected one of {list(TASKS)}, got {task!r}")
        reference = Path(_string(item["reference"], f"{where}.reference"))
        reference = reference if reference.is_absolute() else base / reference
        if not reference.is_file():
            raise ValueError(f"{where}.reference: no such file {str(reference)!r}")
        columns = {k: (None if item[k] is None else _string(item[k], f"{where}.{k}"))
                   for k in ("prediction", "confidence", "label", "positive_label", "baseline_version") if k in item}
        if "sensitive" in item:
            sensitive = item["sensitive"]
            if not isinstance(sensitive, list):
                raise ValueError(f"{where}.sensitive: expected a list of attribute names, got {sensitive!r}")
            columns["sensitive"] = tuple(_string(v, f"{where}.sensitive[{j}]") for j, v in enumerate(sensitive))
        models.append(ModelConfig(_string(item["id"], f"{where}.id"), task, str(reference), **columns))
    ids = [m.id for m in models]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise ValueError(f"models: model id {duplicate!r} appears twice")
    return tuple(models)


def _windows(value: Any) -> WindowConfig:
    data = _mapping(value, "windows")
    _check_keys(data, {"size", "slide", "allowed_lateness"}, "windows")
    defaults = WindowConfig()
    size = parse_duration(data.get("size", defaults.size), "windows.size")
    slide = parse_duration(data.get("slide", defaults.slide), "windows.slide")
    lateness = parse_duration(data.get("allowed_lateness", defaults.allowed_lateness), "windows.allowed_lateness")
    if slide <= 0 or size <= 0:
        raise ValueError("windows.size and windows.slide: must be positive")
    if round(size * 1000) % round(slide * 1000):
        raise ValueError(f"windows.size: must be a multiple of windows.slide ({slide:g}s), got {size:g}s")
    return WindowConfig(size, slide, lateness)


def _rules(value: Any) -> tuple[AlertRule, ...]:
    data = _mapping(value, "alerts")
    known = {r.name for r in DEFAULT_RULES}
    rules = list(DEFAULT_RULES)
    for name, settings in data.items():
        where = f"alerts.{name}"
        if name not in known:
            raise ValueError(f"{where}: unknown rule, expected one of {sorted(known)}")
        settings = _mapping(settings, where)
        if settings.get("enabled", True) is False:
            rules = [r for r in rules if r.name != name]
            continue
        _check_keys(settings, {"threshold", "severity", "enabled", *SEVERITIES}, where)
        # either one threshold (for the rule's severities) or one per severity
        for i, rule in enumerate(rules):
            if rule.name != name:
                continue
            threshold = settings.get(rule.severity, settings.get("threshold", rule.threshold))
            severity = settings.get("severity", rule.severity)
            if severity not in SEVERITIES:
                raise ValueError(f"{where}.severity: expected one of {list(SEVERITIES)}, got {severity!r}")
            rules[i] = replace(rule, severity=severity, threshold=_number(threshold, f"{where}.threshold"))
    return tuple(rules)


def _drift(value: Any) -> DriftPolicy:
    data = _mapping(value, "drift")
    _check_keys(data, {"thresholds", "per_feature", "min_count"}, "drift")
    kwargs: dict[str, Any] = {"min_count": DEFAULT_DRIFT_MIN_COUNT}
    if "min_count" in data:
        kwargs["min_count"] = int(_number(data["min_count"], "drift.min_count", 0))
    if "thresholds" in data:
        kwargs["thresholds"] = dict(_mapping(data["thresholds"], "drift.thresholds"))
    if "per_feature" in data:
        per_feature = _mapping(data["per_feature"], "drift.per_feature")
        kwargs["per_feature"] = {k: dict(_mapping(v, f"drift.per_feature.{k}")) for k, v in per_feature.items()}
    try:
        return DriftPolicy(**kwargs)
    except ValueError as exc:
        raise ValueError(f"drift.{exc}") from None


def _secret_env(name: Any, where: str) -> str:
    name = _string(name, where)
    if name not in os.environ:
        raise ValueError(f"{where}: environment variable {name!r} is not set")
    return name


def _retry(value: Any, where: str) -> RetryPolicy:
    data = _mapping(value, where)
    _check_keys(data, {f.name for f in fields(RetryPolicy)}, where)
    kwargs = {k: parse_duration(v, f"{where}.{k}") for k, v in data.items()}
    for key, seconds in kwargs.items():
        if seconds <= 0:
            raise ValueError(f"{where}.{key}: must be positive")
    return RetryPolicy(**kwargs)


def _url(value: Any, where: str) -> str:
    url = _string(value, where)
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"{where}: expected an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def _sink_common(data: Mapping[str, Any], where: str, kwargs: dict[str, Any]) -> None:
    """Fields every HTTP sink shares: retry, credentials from the environment."""
    if "retry" in data:
        kwargs["retry"] = _retry(data["retry"], f"{where}.retry")
    if "batch_size" in data:
        kwargs["batch_size"] = int(_number(data["batch_size"], f"{where}.batch_size", 1))
    for key in ("username", "ca_certs"):
        if key in data:
            kwargs[key] = _string(data[key], f"{where}.{key}")
    for key in ("password_env", "bearer_token_env", "api_key_env"):
        if key in data:
            kwargs[key] = _secret_env(data[key], f"{where}.{key}")
    if "password_env" in kwargs and "username" not in kwargs:
        raise ValueError(f"{where}.username: required with {where}.password_env")


def _prometheus(value: Any) -> PrometheusSink | None:
    if value is None:
        return None
    where = "sinks.prometheus"
    data = _mapping(value, where)
    _check_keys(data, {f.name for f in fields(PrometheusSink)}, where)
    if "url" not in data:
        raise ValueError(f"{where}.url: missing")
    kwargs: dict[str, Any] = {"url": _url(data["url"], f"{where}.url")}
    _sink_common(data, where, kwargs)
    return PrometheusSink(**kwargs)


def _alertmanager(value: Any) -> AlertmanagerSink | None:
    if value is None:
        return None
    where = "sinks.alertmanager"
    data = _mapping(value, where)
    _check_keys(data, {f.name for f in fields(AlertmanagerSink)}, where)
    if "url" not in data:
        raise ValueError(f"{where}.url: missing")
    kwargs: dict[str, Any] = {"url": _url(data["url"], f"{where}.url")}
    _sink_common(data, where, kwargs)
    if "firing_timeout" in data:
        kwargs["firing_timeout"] = parse_duration(data["firing_timeout"], f"{where}.firing_timeout")
    if "labels" in data:
        labels = _mapping(data["labels"], f"{where}.labels")
        for name in labels:
            if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", str(name)):
                raise ValueError(f"{where}.labels.{name}: not a valid label name")
        kwargs["labels"] = {str(k): _string(v, f"{where}.labels.{k}") for k, v in labels.items()}
    return AlertmanagerSink(**kwargs)


def _elasticsearch(value: Any) -> ElasticsearchSink | None:
    if value is None:
        return None
    where = "sinks.elasticsearch"
    data = _mapping(value, where)
    _check_keys(data, {f.name for f in fields(ElasticsearchSink)}, where)
    if "hosts" not in data:
        raise ValueError(f"{where}.hosts: missing")
    hosts = data["hosts"]
    hosts = [hosts] if isinstance(hosts, str) else hosts
    if not isinstance(hosts, list) or not hosts:
        raise ValueError(f"{where}.hosts: expected a URL or a non-empty list of URLs")
    kwargs: dict[str, Any] = {"hosts": tuple(_url(h, f"{where}.hosts[{i}]") for i, h in enumerate(hosts))}
    _sink_common(data, where, kwargs)
    if "flavor" in data:
        if data["flavor"] not in ("elasticsearch", "opensearch"):
            raise ValueError(f"{where}.flavor: expected 'elasticsearch' or 'opensearch', got {data['flavor']!r}")
        kwargs["flavor"] = data["flavor"]
    if "index_prefix" in data:
        prefix = _string(data["index_prefix"], f"{where}.index_prefix")
        if not re.match(r"^[a-z0-9][a-z0-9_.-]*$", prefix):
            raise ValueError(f"{where}.index_prefix: lower-case letters, digits, '_', '-', '.' only, got {prefix!r}")
        kwargs["index_prefix"] = prefix
    if "install_templates" in data:
        if not isinstance(data["install_templates"], bool):
            raise ValueError(f"{where}.install_templates: expected true or false")
        kwargs["install_templates"] = data["install_templates"]
    if "decision_log" in data:
        log = _mapping(data["decision_log"], f"{where}.decision_log")
        _check_keys(log, {"enabled", "sample"}, f"{where}.decision_log")
        enabled = log.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValueError(f"{where}.decision_log.enabled: expected true or false")
        sample = _number(log.get("sample", 1.0), f"{where}.decision_log.sample", 0, 1)
        kwargs["decision_log"] = DecisionLog(enabled, sample)
    return ElasticsearchSink(**kwargs)


def _sinks(value: Any) -> SinksConfig:
    data = _mapping(value, "sinks")
    _check_keys(data, {f.name for f in fields(SinksConfig)}, "sinks")
    out_dir = data.get("out_dir", SinksConfig.out_dir)
    port = data.get("metrics_port")
    if port is not None:
        port = int(_number(port, "sinks.metrics_port", 0, 65535))
    return SinksConfig(
        None if out_dir is None else _string(out_dir, "sinks.out_dir"),
        port,
        prometheus=_prometheus(data.get("prometheus")),
        alertmanager=_alertmanager(data.get("alertmanager")),
        elasticsearch=_elasticsearch(data.get("elasticsearch")),
    )


def _labels(value: Any) -> LabelsConfig | None:
    if value is None:
        return None
    data = _mapping(value, "labels")
    _check_keys(data, {f.name for f in fields(LabelsConfig)}, "labels")
    kwargs: dict[str, Any] = {}
    for key in ("max_delay", "grace"):
        if key in data:
            kwargs[key] = parse_duration(data[key], f"labels.{key}")
    for key in ("min_labelled", "shards"):
        if key in data:
            kwargs[key] = int(_number(data[key], f"labels.{key}", 1))
    if "min_fraction" in data:
        kwargs["min_fraction"] = _number(data["min_fraction"], "labels.min_fraction", 0, 1)
    return LabelsConfig(**kwargs)


def _kafka(value: Any) -> KafkaConfig | None:
    if value is None:
        return None
    data = _mapping(value, "kafka")
    allowed = {f.name for f in fields(KafkaConfig)}
    _check_keys(data, allowed, "kafka")
    if "bootstrap" not in data:
        raise ValueError("kafka.bootstrap: missing")
    kwargs: dict[str, Any] = {"bootstrap": _string(data["bootstrap"], "kafka.bootstrap")}
    if "topics" in data:
        topics = _mapping(data["topics"], "kafka.topics")
        _check_keys(topics, {f.name for f in fields(KafkaTopics)}, "kafka.topics")
        kwargs["topics"] = KafkaTopics(**{k: _string(v, f"kafka.topics.{k}") for k, v in topics.items()})
    for key in ("group_id", "sasl_password_env", "sasl_password_file"):
        if key in data:
            kwargs[key] = _string(data[key], f"kafka.{key}")
    if "start" in data:
        start = str(data["start"])
        if start not in KAFKA_STARTS:
            raise ValueError(f"kafka.start: expected one of {list(KAFKA_STARTS)}, got {start!r}")
        kwargs["start"] = start
    if "start_timestamp_ms" in data:
        kwargs["start_timestamp_ms"] = int(_number(data["start_timestamp_ms"], "kafka.start_timestamp_ms", 0))
    if kwargs.get("start") == "timestamp" and "start_timestamp_ms" not in kwargs:
        raise ValueError("kafka.start_timestamp_ms: required when kafka.start is 'timestamp'")
    if "format" in data:
        if data["format"] not in ("avro", "json"):
            raise ValueError(f"kafka.format: expected 'avro' or 'json', got {data['format']!r}")
        kwargs["format"] = data["format"]
    if "confluent" in data:
        if not isinstance(data["confluent"], bool):
            raise ValueError(f"kafka.confluent: expected true or false, got {data['confluent']!r}")
        kwargs["confluent"] = data["confluent"]
    if "schema_ids" in data:
        kwargs["schema_ids"] = {int(_number(k, "kafka.schema_ids")): _string(v, f"kafka.schema_ids.{k}")
                                for k, v in _mapping(data["schema_ids"], "kafka.schema_ids").items()}
    for key in ("watermark_skew", "idle_timeout"):
        if key in data:
            kwargs[key] = parse_duration(data[key], f"kafka.{key}")
    if "max_poll_records" in data:
        kwargs["max_poll_records"] = int(_number(data["max_poll_records"], "kafka.max_poll_records", 1))
    if "properties" in data:
        properties = {str(k): str(v) for k, v in _mapping(data["properties"], "kafka.properties").items()}
        for secret in _SECRET_KEYS:
            if secret in properties:
                raise ValueError(
                    f"kafka.properties.{secret}: secrets do not belong in the config; "
                    "use kafka.sasl_password_env or kafka.sasl_password_file"
                )
        kwargs["properties"] = properties
    return KafkaConfig(**kwargs)


def parse_config(data: Any, base: Path = Path(".")) -> Config:
    """Validates a parsed YAML document into a ``Config``.

    Args:
        data: the document.
        base: the directory relative paths are resolved against.

    Raises:
        ValueError: naming the field, for any invalid or unknown field.
    """
    data = _mapping(data, "config")
    allowed = {"models", "windows", "alerts", "min_alert_events", "confidence_threshold", "drift", "sinks", "kafka", "labels"}
    _check_keys(data, allowed, "config")
    if "models" not in data:
        raise ValueError("models: missing")
    return Config(
        models=_models(data["models"], base),
        windows=_windows(data.get("windows")),
        rules=_rules(data.get("alerts")),
        min_alert_events=int(_number(data.get("min_alert_events", 10), "min_alert_events", 0)),
        confidence_threshold=_number(data.get("confidence_threshold", 0.5), "confidence_threshold", 0, 1),
        drift=_drift(data.get("drift")),
        sinks=_sinks(data.get("sinks")),
        kafka=_kafka(data.get("kafka")),
        labels=_labels(data.get("labels")),
    )


def load_config(path: str | Path) -> Config:
    """Reads and validates a YAML config file; relative paths are relative to it.

    Raises:
        ValueError: naming the file and field, for any problem.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read config: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    try:
        return parse_config(data, path.resolve().parent)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
