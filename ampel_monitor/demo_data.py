"""A seeded, realistic monitoring scenario: three models, their traffic and four incidents.

``generate`` writes everything a demo run of the monitor needs into one directory:

* ``reference/<model>.parquet``: 20,000 rows of each model's normal behaviour
  (its features, ``prediction``, ``confidence`` for classifiers, ``label``; for
  credit-risk also ``attributions.<feature>``, each feature's term of its linear score,
  which its events carry as ``attributions`` too);
* ``events.jsonl`` (or ``events.avro``): the ``PredictionEvent`` stream, sorted by
  event time, ``rate_per_s * hours * 3600`` events (rounded) split 40/35/25 % over
  ``credit-risk``, ``fraud-detector`` and ``demand-forecast``;
* ``labels.jsonl``: the ``LabelEvent`` (ground truth) of 60 % of the predictions, each
  1-30 minutes after it, in label-time order;
* ``resources.jsonl``: a ``ResourceSample`` every 15 s from each of two hosts per model;
* ``config.yaml``: a config for ``ampel_monitor.config.load_config``.

Normal behaviour is stationary: feature distributions equal the reference's, serving
latencies are lognormal (medians 40-70 ms, p95 below 200 ms), about 0.2 % of
predictions fail, cpu stays within [0.3, 0.6]. A few features are missing (null) in
about 1 % of events, in the reference at the same rate. On top of that, four
incidents, starting and ending on whole minutes (``[start_ms, end_ms)``):

* ``drift`` (credit-risk, from 55 % of the stream to its end): income shifted up by
  0.8 reference standard deviations and the region mix changed; the PSI of both is
  above 0.3 in every 5-minute window inside the drift, while every feature of every
  model stays below 0.02 (noise) outside it at the default rate;
* ``latency_spike`` (fraud-detector, 10 minutes centred on 30 %): 90 % of requests
  take 1.5-3 s;
* ``resource_pressure`` (demand-forecast, 10 minutes centred on 40 %): cpu 0.91-0.99
  on both hosts, latency up 60 % (p95 still below 1 s);
* ``error_burst`` (demand-forecast, 10 minutes centred on 75 %): 12 % of predictions
  fail with ``error_code`` ``FEATURE_STORE_UNAVAILABLE``.

Streams shorter than an hour get shorter incidents (a sixth of the stream, at least
one minute). Everything is a deterministic function of the seed: the same arguments
give byte-identical files. Columns are drawn with numpy per model; the default
scenario (3 hours at 30 events/s, 324,000 events) takes a few seconds.

Pure numpy, pyarrow and fastavro: no Apache Beam import.

Usage: ``python -m ampel_monitor.demo_data OUT_DIR [--seed 7] [--hours 3] [--rate 30]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ampel_monitor.avro_columns import ABSENT, DOUBLE, NULL, STRING
from ampel_monitor.avro_writer import Labels, Predictions, Strings
from ampel_monitor.events import parse_timestamp
from schemas import load_schema

__all__ = ["INCIDENT_KINDS", "LABELLED_SHARE", "MODELS", "TRAFFIC_SHARE", "Incident", "Scenario", "generate", "main"]

#: The models of the scenario, in order.
MODELS = ("credit-risk", "fraud-detector", "demand-forecast")
#: Each model's share of the traffic.
TRAFFIC_SHARE = {"credit-risk": 0.40, "fraud-detector": 0.35, "demand-forecast": 0.25}
#: The kinds of incident.
INCIDENT_KINDS = ("drift", "latency_spike", "error_burst", "resource_pressure")

REFERENCE_ROWS = 20_000
RESOURCE_PERIOD_MS = 15_000
HOSTS_PER_MODEL = 2
FORMATS = ("jsonl", "avro")
_MINUTE_MS = 60_000
_NORMAL_ERROR_RATE = 0.002
#: The share of predictions whose label arrives (1-30 minutes later).
LABELLED_SHARE = 0.6
_NORMAL_ERROR_CODES = ("TIMEOUT", "INTERNAL", "INVALID_INPUT")
_BURST_ERROR_RATE = 0.12
_BURST_ERROR_CODE = "FEATURE_STORE_UNAVAILABLE"
_SPIKE_SLOW_SHARE = 0.9
_PRESSURE_LATENCY_FACTOR = 1.6
_INCOME_SHIFT_SD = 0.8
# credit-risk income: log(income) = 10.75 + 0.012 * (age - 41) + 0.42 * N(0, 1), age ~ N(41, 12)
_LOG_INCOME_VAR = (0.012 * 12) ** 2 + 0.42**2
#: The standard deviation of credit-risk's normal income (lognormal; age clipping ignored).
_INCOME_SD = math.exp(10.75 + _LOG_INCOME_VAR / 2) * math.sqrt(math.expm1(_LOG_INCOME_VAR))

_REGIONS = ("north", "south", "east", "west", "central")
_REGION_P = (0.30, 0.25, 0.20, 0.15, 0.10)
_REGION_P_DRIFTED = (0.10, 0.20, 0.20, 0.28, 0.22)
_CHANNELS = ("web", "mobile", "branch", "partner")
_CHANNEL_P = (0.45, 0.35, 0.12, 0.08)
_MERCHANTS = ("grocery", "restaurants", "fuel", "online", "electronics", "travel", "other")
_MERCHANT_P = (0.28, 0.18, 0.12, 0.20, 0.08, 0.05, 0.09)
_MERCHANT_RISK = (0.0, 0.1, 0.2, 0.6, 0.9, 0.7, 0.3)
_COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "GB", "US", "other")
_COUNTRY_P = (0.34, 0.16, 0.12, 0.10, 0.09, 0.08, 0.06, 0.05)
_STORE_TYPES = ("urban", "suburban", "rural", "outlet")
_STORE_P = (0.40, 0.35, 0.15, 0.10)
_STORE_LIFT = (1.10, 1.00, 0.80, 1.25)
_AGE_BANDS = ("18-29", "30-44", "45-59", "60+")
_PROMO_DEPTHS = (0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50)
# Card transactions by local hour: quiet nights, busy lunch and evening.
_HOUR_P = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3.5, 4, 4.5, 5, 6, 5.5, 5, 5, 5.5, 6, 6.5, 6, 5, 4, 3, 2])
_HOUR_P = _HOUR_P / _HOUR_P.sum()


@dataclass(frozen=True)
class Incident:
    """One injected incident: what, which model, and when."""

    #: "drift", "latency_spike", "error_burst" or "resource_pressure".
    kind: str
    #: The affected model.
    model: str
    #: The affected version; None for all versions of the model.
    version: str | None
    #: Start, epoch milliseconds (a whole minute), inclusive.
    start_ms: int
    #: End, epoch milliseconds (a whole minute), exclusive; a drift lasts to the stream's end.
    end_ms: int
    #: What happens, e.g. "income shifted +0.8 sd, region mix changed".
    detail: str


@dataclass(frozen=True)
class Scenario:
    """What ``generate`` wrote."""

    #: Start of the stream, epoch milliseconds, inclusive.
    start_ms: int
    #: End of the stream, epoch milliseconds, exclusive.
    end_ms: int
    #: The model ids.
    models: tuple[str, ...]
    #: The injected incidents, by start time.
    incidents: tuple[Incident, ...]
    #: The files: "events", "labels", "resources", "config", and "reference:<model>" per model.
    files: Mapping[str, Path]
    #: Number of prediction events per model.
    counts: Mapping[str, int]


@dataclass(frozen=True)
class _Model:
    """How one model behaves."""

    name: str
    task: str
    #: (version, share of the model's traffic).
    versions: tuple[tuple[str, float], ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    #: Per feature, the share of events that lack it.
    missing: Mapping[str, float]
    latency_median_ms: float
    latency_sigma: float
    has_gpu: bool
    #: ``features(rng, n, drifted)`` draws the feature columns; ``drifted`` marks rows inside a drift.
    features: Callable[[np.random.Generator, int, np.ndarray], dict[str, np.ndarray]]
    #: ``outputs(rng, features, version_index)`` returns predictions, confidences (or None), labels.
    outputs: Callable[[np.random.Generator, Mapping[str, np.ndarray], np.ndarray], tuple[np.ndarray, np.ndarray | None, np.ndarray]]
    #: The positive class of a binary classifier.
    positive_label: str | None = None
    #: ``attributions(features)``: per feature, each event's attribution (None: events carry none).
    attributions: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]] | None = None


def _choice(rng: np.random.Generator, values: Sequence[str], p: Sequence[float], n: int) -> np.ndarray:
    return np.asarray(values, dtype=object)[rng.choice(len(values), n, p=p)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _credit_features(rng: np.random.Generator, n: int, drifted: np.ndarray) -> dict[str, np.ndarray]:
    age = rng.normal(41, 12, n).clip(18, 90).round()
    income = rng.lognormal(10.75 + 0.012 * (age - 41), 0.42)
    income[drifted] += _INCOME_SHIFT_SD * _INCOME_SD
    # one uniform per row, mapped through the normal or the drifted region mix
    u = rng.random(n)
    region_codes = np.where(
        drifted,
        np.searchsorted(np.cumsum(_REGION_P_DRIFTED), u, side="right"),
        np.searchsorted(np.cumsum(_REGION_P), u, side="right"),
    )
    return {
        "age": age,
        "income": income.round(2),
        "credit_score": rng.normal(680, 60, n).clip(300, 850).round(),
        "debt_ratio": rng.beta(2.0, 5.0, n).round(4),
        "tenure_months": rng.gamma(2.0, 18.0, n).round(),
        "region": np.asarray(_REGIONS, dtype=object)[np.minimum(region_codes, len(_REGIONS) - 1)],
        "channel": _choice(rng, _CHANNELS, _CHANNEL_P, n),
    }


def _credit_outputs(
    rng: np.random.Generator, f: Mapping[str, np.ndarray], version: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = version.size
    signal = (
        0.024 * (f["credit_score"] - 680)
        + 1.8 * (np.log(f["income"]) - 10.75)
        - 6.0 * (f["debt_ratio"] - 0.29)
        + 0.016 * (f["tenure_months"] - 36)
    )
    truth = _sigmoid(signal + rng.normal(0, 0.6, n) + 0.3)
    # v2 is a retrained challenger: slightly different weights, same inputs.
    model = np.where(version == 0, signal + 0.3, 1.05 * signal + 0.25) + rng.normal(0, 0.25, n)
    proba = _sigmoid(model)
    prediction = np.where(proba > 0.5, "approve", "deny").astype(object)
    label = np.where(rng.random(n) < truth, "approve", "deny").astype(object)
    return prediction, np.maximum(proba, 1 - proba).round(4), label


def _credit_attributions(f: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each feature's term of v1's linear score: exact attributions of a linear model."""
    return {
        "credit_score": 0.024 * (f["credit_score"] - 680),
        "income": 1.8 * (np.log(f["income"]) - 10.75),
        "debt_ratio": -6.0 * (f["debt_ratio"] - 0.29),
        "tenure_months": 0.016 * (f["tenure_months"] - 36),
    }


def _fraud_features(rng: np.random.Generator, n: int, drifted: np.ndarray) -> dict[str, np.ndarray]:
    category = rng.choice(len(_MERCHANTS), n, p=_MERCHANT_P)
    risk_shift = np.asarray(_MERCHANT_RISK)[category]
    return {
        "amount": (rng.lognormal(3.6, 1.0, n) * (1 + risk_shift)).round(2),
        "merchant_risk": rng.beta(2.0 + 2.0 * risk_shift, 6.0, n).round(4),
        "hour_of_day": rng.choice(24, n, p=_HOUR_P).astype(np.float64),
        "velocity_1h": rng.poisson(1.4, n).astype(np.float64),
        "merchant_category": np.asarray(_MERCHANTS, dtype=object)[category],
        "country": _choice(rng, _COUNTRIES, _COUNTRY_P, n),
    }


def _fraud_outputs(
    rng: np.random.Generator, f: Mapping[str, np.ndarray], version: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = version.size
    night = (f["hour_of_day"] < 5).astype(np.float64)
    foreign = np.isin(f["country"], ("US", "other")).astype(np.float64)
    signal = (
        -13.0
        + 11.0 * f["merchant_risk"]
        + 1.0 * np.log1p(f["amount"] / 40)
        + 1.4 * f["velocity_1h"]
        + 1.8 * night
        + 1.8 * foreign
    )
    truth = _sigmoid(signal + rng.normal(0, 0.4, n))
    proba = _sigmoid(signal + rng.normal(0, 0.3, n))
    prediction = np.where(proba > 0.5, "fraud", "legit").astype(object)
    label = np.where(rng.random(n) < truth, "fraud", "legit").astype(object)
    return prediction, np.maximum(proba, 1 - proba).round(4), label


def _demand_features(rng: np.random.Generator, n: int, drifted: np.ndarray) -> dict[str, np.ndarray]:
    promo = np.where(rng.random(n) < 0.3, rng.choice(_PROMO_DEPTHS, n), 0.0)
    return {
        "temperature": rng.normal(14, 7, n).round(1),
        "price": rng.lognormal(np.log(4.5), 0.3, n).round(2),
        "promo_depth": promo,
        "lag_7d": rng.gamma(4.0, 30.0, n).round(),
        "store_type": _choice(rng, _STORE_TYPES, _STORE_P, n),
    }


def _demand_outputs(
    rng: np.random.Generator, f: Mapping[str, np.ndarray], version: np.ndarray
) -> tuple[np.ndarray, None, np.ndarray]:
    n = version.size
    lift = np.ones(n)
    for store_type, store_lift in zip(_STORE_TYPES, _STORE_LIFT):
        lift[f["store_type"] == store_type] = store_lift
    expected = (
        (0.75 * f["lag_7d"] + 25)
        * lift
        * (1 + 1.6 * f["promo_depth"])
        * (4.5 / f["price"]) ** 0.8
        * (1 + 0.01 * (f["temperature"] - 14))
    )
    actual = np.maximum(expected * rng.lognormal(0, 0.18, n), 0).round()
    forecast = np.maximum(expected * rng.lognormal(0, 0.08, n), 0).round(2)
    return forecast, None, actual


_SPECS = (
    _Model(
        name="credit-risk",
        task="classification",
        versions=(("v1", 0.8), ("v2", 0.2)),
        numeric=("age", "income", "credit_score", "debt_ratio", "tenure_months"),
        categorical=("region", "channel"),
        missing={"income": 0.015, "tenure_months": 0.01, "channel": 0.005},
        latency_median_ms=55.0,
        latency_sigma=0.35,
        has_gpu=False,
        features=_credit_features,
        outputs=_credit_outputs,
        positive_label="approve",
        attributions=_credit_attributions,
    ),
    _Model(
        name="fraud-detector",
        task="classification",
        versions=(("v3", 1.0),),
        numeric=("amount", "merchant_risk", "hour_of_day", "velocity_1h"),
        categorical=("merchant_category", "country"),
        missing={"merchant_risk": 0.01, "country": 0.005},
        latency_median_ms=42.0,
        latency_sigma=0.40,
        has_gpu=True,
        features=_fraud_features,
        outputs=_fraud_outputs,
        positive_label="fraud",
    ),
    _Model(
        name="demand-forecast",
        task="regression",
        versions=(("v5", 1.0),),
        numeric=("temperature", "price", "promo_depth", "lag_7d"),
        categorical=("store_type",),
        missing={"temperature": 0.01, "lag_7d": 0.01},
        latency_median_ms=65.0,
        latency_sigma=0.45,
        has_gpu=False,
        features=_demand_features,
        outputs=_demand_outputs,
    ),
)


#: Every string of the events but their ids, encoded once; ``_CODE`` maps each (and None) to its code.
_VOCABULARY = Strings.of(dict.fromkeys([
    *MODELS, *(version for model in _SPECS for version, _ in model.versions), *_NORMAL_ERROR_CODES, _BURST_ERROR_CODE,
    *(name for model in _SPECS for name in (*model.numeric, *model.categorical)), "age_band", *_AGE_BANDS,
    *_REGIONS, *_CHANNELS, *_MERCHANTS, *_COUNTRIES, *_STORE_TYPES, "approve", "deny", "fraud", "legit",
]))
_CODE = {None: -1, **_VOCABULARY.code()}
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _blank_missing(rng: np.random.Generator, model: _Model, features: dict[str, np.ndarray]) -> None:
    """Blanks each feature in its share of rows: NaN for numbers, None for categories."""
    n = next(iter(features.values())).size
    for name in (*model.numeric, *model.categorical):
        rate = model.missing.get(name, 0.0)
        mask = rng.random(n) < rate
        if name in model.numeric:
            features[name] = np.where(mask, np.nan, features[name])
        else:
            column = features[name].copy()
            column[mask] = None
            features[name] = column


def _reference_table(rng: np.random.Generator, model: _Model) -> pa.Table:
    n = REFERENCE_ROWS
    features = model.features(rng, n, np.zeros(n, dtype=bool))
    prediction, confidence, label = model.outputs(rng, features, np.zeros(n, dtype=np.intp))
    attributions = model.attributions(features) if model.attributions is not None else {}
    _blank_missing(rng, model, features)
    columns: dict[str, pa.Array] = {f"attributions.{name}": pa.array(values.round(4)) for name, values in attributions.items()}
    for name in model.numeric:
        columns[name] = pa.array(features[name], type=pa.float64(), from_pandas=True)
    for name in model.categorical:
        columns[name] = pa.array(features[name].tolist(), type=pa.string())
    numeric_out = model.task == "regression"
    columns["prediction"] = pa.array(prediction if numeric_out else prediction.tolist(), type=pa.float64() if numeric_out else pa.string())
    if confidence is not None:
        columns["confidence"] = pa.array(confidence, type=pa.float64())
    columns["label"] = pa.array(label if numeric_out else label.tolist(), type=pa.float64() if numeric_out else pa.string())
    return pa.table(columns)


def _minute(ms: float) -> int:
    return int(round(ms / _MINUTE_MS)) * _MINUTE_MS


def _incidents(start_ms: int, end_ms: int) -> dict[str, Incident]:
    """Places the four incidents on whole minutes inside ``[start_ms, end_ms)``."""
    span = end_ms - start_ms
    length = max(1, min(10, span // _MINUTE_MS // 6)) * _MINUTE_MS
    first = -(-start_ms // _MINUTE_MS) * _MINUTE_MS
    last = (end_ms - length) // _MINUTE_MS * _MINUTE_MS

    def window(centre: float) -> tuple[int, int]:
        begin = min(max(_minute(start_ms + centre * span - length / 2), first), last)
        return begin, begin + length

    drift_start = min(max(_minute(start_ms + 0.55 * span), first), last)
    spike, pressure, burst = window(0.30), window(0.40), window(0.75)
    shift = _INCOME_SHIFT_SD * _INCOME_SD
    return {
        "drift": Incident(
            "drift", "credit-risk", None, drift_start, end_ms,
            f"income shifted +{_INCOME_SHIFT_SD} sd (+{shift:,.0f}), region mix changed "
            f"(north {_REGION_P[0]:.0%} -> {_REGION_P_DRIFTED[0]:.0%}, west {_REGION_P[3]:.0%} -> {_REGION_P_DRIFTED[3]:.0%})",
        ),
        "latency_spike": Incident(
            "latency_spike", "fraud-detector", None, *spike,
            f"{_SPIKE_SLOW_SHARE:.0%} of requests take 1.5-3 s (slow feature lookups)",
        ),
        "resource_pressure": Incident(
            "resource_pressure", "demand-forecast", None, *pressure,
            f"cpu 0.91-0.99 on every host, latency +{_PRESSURE_LATENCY_FACTOR - 1:.0%}",
        ),
        "error_burst": Incident(
            "error_burst", "demand-forecast", None, *burst,
            f"{_BURST_ERROR_RATE:.0%} of predictions fail with {_BURST_ERROR_CODE}",
        ),
    }


def _inside(timestamps: np.ndarray, incident: Incident | None) -> np.ndarray:
    if incident is None:
        return np.zeros(timestamps.size, dtype=bool)
    return (timestamps >= incident.start_ms) & (timestamps < incident.end_ms)


def _split(total: int) -> dict[str, int]:
    """Splits ``total`` events over the models by their shares, largest remainders first."""
    exact = np.array([TRAFFIC_SHARE[m] for m in MODELS]) * total
    counts = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - int(counts.sum())]:
        counts[i] += 1
    return {m: int(c) for m, c in zip(MODELS, counts)}


def _codes(column: np.ndarray) -> np.ndarray:
    """The codes in ``_VOCABULARY`` of a column of strings, -1 for None."""
    return np.fromiter(map(_CODE.__getitem__, column.tolist()), dtype=np.int64, count=column.size)


def _model_columns(
    rng: np.random.Generator, model: _Model, n: int, start_ms: int, end_ms: int, incidents: Mapping[str, Incident],
    attributions: bool = True,
) -> tuple[Predictions, Labels]:
    """Draws ``n`` events of one model and their ground truth (unsorted across models, without event ids)."""
    by_kind = {i.kind: i for i in incidents.values() if i.model == model.name}
    timestamps = np.sort(rng.integers(start_ms, end_ms, n))
    version = rng.choice(len(model.versions), n, p=[share for _, share in model.versions])
    features = model.features(rng, n, _inside(timestamps, by_kind.get("drift")))
    prediction, confidence, labels = model.outputs(rng, features, version)
    terms = model.attributions(features) if attributions and model.attributions is not None else {}
    _blank_missing(rng, model, features)

    latency = rng.lognormal(np.log(model.latency_median_ms), model.latency_sigma, n)
    latency *= np.where(version > 0, 1.15, 1.0)  # challengers run on smaller replicas
    latency *= np.where(rng.random(n) < 0.005, rng.uniform(2, 4, n), 1.0)  # occasional GC pauses
    slow = _inside(timestamps, by_kind.get("latency_spike")) & (rng.random(n) < _SPIKE_SLOW_SHARE)
    latency = np.where(slow, rng.lognormal(np.log(2100), 0.18, n).clip(1500, 3000), latency)
    latency *= np.where(_inside(timestamps, by_kind.get("resource_pressure")), _PRESSURE_LATENCY_FACTOR, 1.0)

    burst = _inside(timestamps, by_kind.get("error_burst"))
    u = rng.random(n)
    error = (u < _NORMAL_ERROR_RATE) | (burst & (u < _BURST_ERROR_RATE))
    codes = np.asarray(_NORMAL_ERROR_CODES, dtype=object)[rng.choice(len(_NORMAL_ERROR_CODES), n, p=(0.5, 0.3, 0.2))]
    codes = np.where(burst & error, _BURST_ERROR_CODE, codes)
    error_code = np.full(n, -1)
    error_code[error] = _codes(codes[error])

    names = (*model.numeric, *model.categorical)
    numbers = np.stack([features[name] if name in model.numeric else np.full(n, np.nan) for name in names], axis=1)
    strings = np.stack([_codes(features[name]) if name in model.categorical else np.full(n, -1) for name in names], axis=1)
    kinds = np.where(strings >= 0, STRING, np.where(np.isnan(numbers), NULL, DOUBLE)).astype(np.int8)
    none = np.full(n, np.nan)
    if model.task == "regression":
        prediction_kind, prediction_code = np.where(error | np.isnan(prediction), NULL, DOUBLE), np.full(n, -1)
    else:
        prediction_kind, prediction_code = np.where(error, NULL, STRING), np.where(error, -1, _codes(prediction))
        prediction = none
    if model.name == "credit-risk":
        band = np.searchsorted(np.array([30, 45, 60]), features["age"], side="right")
        attribute_names, attribute_code = np.array([_CODE["age_band"]]), np.array([_CODE[b] for b in _AGE_BANDS])[band, None]
    else:
        attribute_names, attribute_code = np.zeros(0, dtype=np.int64), np.zeros((n, 0), dtype=np.int64)
    model_id = np.full(n, _CODE[model.name])
    events = Predictions(
        strings=_VOCABULARY, event_id=np.full(n, -1), model_id=model_id,
        model_version=np.array([_CODE[v] for v, _ in model.versions])[version], timestamp=timestamps,
        latency_ms=latency.round(2), status=error.astype(np.int8), error_code=error_code,
        feature_names=_codes(np.asarray(names, dtype=object)), feature_kind=kinds, feature=numbers, feature_code=strings,
        prediction_kind=prediction_kind.astype(np.int8), prediction=np.where(error, np.nan, prediction),
        prediction_code=prediction_code, confidence=none if confidence is None else np.where(error, np.nan, confidence),
        attribute_names=attribute_names, attribute_code=attribute_code,
        attribution_names=_codes(np.asarray(list(terms), dtype=object)), attributed=np.full(n, bool(terms)),
        attribution=np.stack([values.round(4) for values in terms.values()], axis=1) if terms else np.zeros((n, 0)),
    )
    numeric = labels.dtype.kind == "f"
    truth = Labels(_VOCABULARY, events.event_id, model_id, np.full(n, DOUBLE if numeric else STRING, dtype=np.int8),
                   labels if numeric else none, np.full(n, -1) if numeric else _codes(labels), timestamps)
    return events, truth


#: What the records of one model leave blank in the columns of another's map keys.
_BLANK = {"feature_kind": ABSENT, "feature": np.nan, "feature_code": -1, "attribute_code": -1, "attribution": np.nan}


def _stack(parts: Sequence[Predictions] | Sequence[Labels]) -> Any:
    """The records of ``parts`` one after another, each part's map keys in columns of their own."""
    columns: dict[str, Any] = {"strings": parts[0].strings}
    for name in (f.name for f in fields(parts[0]) if f.name != "strings"):
        arrays = [getattr(part, name) for part in parts]
        if arrays[0].ndim == 1:
            columns[name] = np.concatenate(arrays)
            continue
        shape = sum(a.shape[0] for a in arrays), sum(a.shape[1] for a in arrays)
        stacked = np.full(shape, _BLANK[name], dtype=arrays[0].dtype)
        row = column = 0
        for a in arrays:
            stacked[row:row + a.shape[0], column:column + a.shape[1]] = a
            row, column = row + a.shape[0], column + a.shape[1]
        columns[name] = stacked
    return type(parts[0])(**columns)


def _event_ids(rng: np.random.Generator, n: int) -> Strings:
    """UUID4-shaped ids, unique by construction.

    The last 48 bits are the sequence number through a random bijection of 48-bit
    numbers (``i * odd + offset`` modulo 2**48); the other 74 free bits are random.
    """
    high = rng.integers(0, 2**62, n, dtype=np.int64).astype(np.uint64)
    mid = rng.integers(0, 2**14, n, dtype=np.int64).astype(np.uint64)
    odd, offset = int(rng.integers(0, 2**47)) * 2 + 1, int(rng.integers(0, 2**48))
    sequence = np.arange(n, dtype=np.uint64) * np.uint64(odd) + np.uint64(offset)  # modulo 2**64, then 2**48

    def hex_digits(values: np.ndarray, digits: int, bits: int = 0) -> np.ndarray:
        """The lowest ``digits`` hex digits of ``values >> bits``, one column each."""
        shifts = np.uint64(bits) + np.arange(4 * (digits - 1), -1, -4, dtype=np.uint64)
        return _HEX[(values[:, None] >> shifts) & np.uint64(0xF)]

    dash, four = np.full((n, 1), ord("-"), dtype=np.uint8), np.full((n, 1), ord("4"), dtype=np.uint8)
    rows = np.hstack([hex_digits(high, 8, 30), dash, hex_digits(high, 4, 14), dash, four, hex_digits(high, 3, 2), dash,
                      hex_digits(mid | np.uint64(0x8000), 4), dash, hex_digits(sequence, 12)])
    return Strings(rows.ravel(), np.arange(n + 1) * 36)


def _columns(
    rng: np.random.Generator, counts: Mapping[str, int], start_ms: int, end_ms: int, incidents: Mapping[str, Incident],
    attributions: bool = True,
) -> tuple[Predictions, Labels]:
    """All prediction events as columns, sorted by event time (ties by model order), and each
    one's ground truth (stamped with its event's time).

    ``attributions`` False leaves every event's attributions out (null).
    """
    streams = rng.spawn(len(_SPECS))
    parts = [_model_columns(s, m, counts[m.name], start_ms, end_ms, incidents, attributions) for s, m in zip(streams, _SPECS)]
    events, truth = _stack([events for events, _ in parts]), _stack([truth for _, truth in parts])
    order = np.argsort(events.timestamp, kind="stable")
    strings = _VOCABULARY + _event_ids(rng, order.size)
    ids = len(_VOCABULARY) + np.arange(order.size)
    return (replace(events.take(order), strings=strings, event_id=ids),
            replace(truth.take(order), strings=strings, event_id=ids))


def _resources(rng: np.random.Generator, start_ms: int, end_ms: int, incidents: Mapping[str, Incident]) -> list[dict]:
    """A sample every 15 s from each host, sorted by time then host."""
    pressure = [i for i in incidents.values() if i.kind == "resource_pressure"]
    records: list[tuple[int, str, dict]] = []
    for model in _SPECS:
        for h in range(HOSTS_PER_MODEL):
            host = f"{model.name}-{h}"
            offset = int(rng.integers(0, RESOURCE_PERIOD_MS // 1000)) * 1000
            ts = np.arange(start_ms + offset, end_ms, RESOURCE_PERIOD_MS, dtype=np.int64)
            k = ts.size
            minutes = (ts - start_ms) / _MINUTE_MS
            phase = rng.uniform(0, 2 * np.pi)
            cpu = rng.uniform(0.40, 0.48) + 0.06 * np.sin(2 * np.pi * minutes / 47 + phase) + rng.normal(0, 0.025, k)
            cpu = cpu.clip(0.30, 0.60)
            # memory creeps up (a slow leak) and drops back at every restart, every 200 minutes
            memory = (rng.uniform(0.52, 0.62) + (0.0004 * minutes) % 0.08 + rng.normal(0, 0.01, k)).clip(0.40, 0.75)
            for incident in pressure:
                if incident.model == model.name:
                    inside = _inside(ts, incident)
                    cpu = np.where(inside, rng.uniform(0.91, 0.99, k), cpu)
                    memory = np.where(inside, (memory + 0.08).clip(0, 0.78), memory)
            gpu: list = [None] * k
            if model.has_gpu:
                gpu_load = rng.uniform(0.42, 0.5) + 0.08 * np.sin(2 * np.pi * minutes / 31 + phase) + rng.normal(0, 0.03, k)
                gpu = gpu_load.clip(0.15, 0.75).round(4).tolist()
            for t, c, m, g in zip(ts.tolist(), cpu.round(4).tolist(), memory.round(4).tolist(), gpu):
                records.append((t, host, {"host": host, "model_id": model.name, "timestamp": t, "cpu": c, "memory": m, "gpu": g}))
    records.sort(key=lambda item: (item[0], item[1]))
    return [record for _, _, record in records]


def _labels(rng: np.random.Generator, truth: Labels) -> list[dict]:
    """The ground truth of ``LABELLED_SHARE`` of the predictions, 1-30 minutes after each."""
    chosen = np.flatnonzero(rng.random(len(truth)) < LABELLED_SHARE)
    labels = truth.take(chosen)
    labels = replace(labels, timestamp=labels.timestamp + rng.integers(60_000, 30 * 60_000, chosen.size))
    return labels.take(np.argsort(labels.timestamp, kind="stable")).records()


def _write_jsonl(path: Path, records: list[dict]) -> None:
    dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(dumps(r) + "\n" for r in records)


def _rfc3339(epoch_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _config_text(seed: int, incidents: Sequence[Incident]) -> str:
    lines = [f"# ampel-monitor demo scenario (ampel_monitor.demo_data, seed {seed}). Injected incidents:"]
    lines += [
        f"#   {_rfc3339(i.start_ms)} - {_rfc3339(i.end_ms)} {i.kind} on {i.model}: {i.detail}" for i in incidents
    ]
    lines.append("models:")
    for model in _SPECS:
        lines += [f"  - id: {model.name}", f"    task: {model.task}", f"    reference: reference/{model.name}.parquet"]
        if model.task == "regression":
            lines.append("    confidence: null")
        if model.positive_label:
            lines.append(f"    positive_label: {model.positive_label}")
        if len(model.versions) > 1:
            lines.append(f"    baseline_version: {model.versions[0][0]}")
    lines += [
        "windows: {size: 5m, slide: 1m, allowed_lateness: 2m}",
        "# quality alerts once a window has 1000 labels: with fewer, a 5 % accuracy drop is within the noise",
        "labels: {max_delay: 1h, min_labelled: 1000}",
        "sinks: {out_dir: out}",
    ]
    return "\n".join(lines) + "\n"


def generate(
    out_dir: Path,
    seed: int = 7,
    hours: float = 3.0,
    rate_per_s: float = 30.0,
    start: str = "2026-01-01T00:00:00Z",
    fmt: str = "jsonl",
) -> Scenario:
    """Writes a seeded monitoring scenario (see the module docstring) into ``out_dir``.

    Args:
        out_dir: the directory to write into; created if absent, files overwritten.
        seed: the seed of ``numpy.random.default_rng``; the same arguments give the
            same bytes.
        hours: the length of the stream, at least 10 minutes.
        rate_per_s: events per second over all models.
        start: the start of the stream, RFC 3339 with an offset (or epoch milliseconds).
        fmt: "jsonl" for ``events.jsonl``, "avro" for an Avro container ``events.avro``.

    Returns:
        The scenario: its time span, models, incidents, files and event counts.

    Raises:
        ValueError: if an argument is out of range.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     scenario = generate(Path(tmp), hours=0.5, rate_per_s=2)
        >>> [(i.kind, i.model) for i in scenario.incidents]  # doctest: +NORMALIZE_WHITESPACE
        [('latency_spike', 'fraud-detector'), ('resource_pressure', 'demand-forecast'),
         ('drift', 'credit-risk'), ('error_burst', 'demand-forecast')]
        >>> dict(scenario.counts)
        {'credit-risk': 1440, 'fraud-detector': 1260, 'demand-forecast': 900}
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {list(FORMATS)}, got {fmt!r}")
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not hours * 60 >= 10:
        raise ValueError(f"hours must be at least 1/6 (10 minutes), got {hours!r}")
    if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, (int, float)) or not 0 < rate_per_s < 1e5:
        raise ValueError(f"rate_per_s must be positive (and below 100,000), got {rate_per_s!r}")
    start_ms = parse_timestamp(start)
    end_ms = start_ms + int(round(hours * 3600 * 1000))
    out_dir = Path(out_dir)
    (out_dir / "reference").mkdir(parents=True, exist_ok=True)

    root = np.random.default_rng(seed)
    reference_rng, events_rng, resources_rng = root.spawn(3)
    files: dict[str, Path] = {}
    for model, rng in zip(_SPECS, reference_rng.spawn(len(_SPECS))):
        path = out_dir / "reference" / f"{model.name}.parquet"
        pq.write_table(_reference_table(rng, model), path)
        files[f"reference:{model.name}"] = path

    incidents = _incidents(start_ms, end_ms)
    counts = _split(int(round(rate_per_s * hours * 3600)))
    columns, truth = _columns(events_rng, counts, start_ms, end_ms, incidents)
    files["labels"] = out_dir / "labels.jsonl"
    _write_jsonl(files["labels"], _labels(root.spawn(1)[0], truth))
    events = columns.records()
    if fmt == "avro":
        files["events"] = out_dir / "events.avro"
        with files["events"].open("wb") as handle:
            fastavro.writer(handle, load_schema("PredictionEvent"), events, sync_marker=root.bytes(16))
    else:
        files["events"] = out_dir / "events.jsonl"
        _write_jsonl(files["events"], events)
    del events

    files["resources"] = out_dir / "resources.jsonl"
    _write_jsonl(files["resources"], _resources(resources_rng, start_ms, end_ms, incidents))

    ordered = tuple(sorted(incidents.values(), key=lambda i: (i.start_ms, INCIDENT_KINDS.index(i.kind))))
    files["config"] = out_dir / "config.yaml"
    files["config"].write_text(_config_text(seed, ordered), encoding="utf-8")
    return Scenario(
        start_ms=start_ms,
        end_ms=end_ms,
        models=MODELS,
        incidents=ordered,
        files=types.MappingProxyType(files),
        counts=types.MappingProxyType(counts),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: writes a scenario and prints what it holds."""
    parser = argparse.ArgumentParser(prog="python -m ampel_monitor.demo_data", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=30.0, help="events per second over all models (30)")
    parser.add_argument("--start", default="2026-01-01T00:00:00Z")
    parser.add_argument("--format", choices=FORMATS, default="jsonl")
    args = parser.parse_args(argv)
    scenario = generate(args.out_dir, args.seed, args.hours, args.rate, args.start, args.format)
    print(f"{sum(scenario.counts.values())} events {dict(scenario.counts)} -> {scenario.files['events']}")
    for incident in scenario.incidents:
        print(f"{_rfc3339(incident.start_ms)} - {_rfc3339(incident.end_ms)}  {incident.kind:17} "
              f"{incident.model:15}  {incident.detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
