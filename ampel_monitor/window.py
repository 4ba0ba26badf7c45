"""Window state of one model: every sketch of every version in one mergeable accumulator.

One ``ModelAccumulator`` holds, per model version: event and error counts, a latency
and a confidence quantile sketch, the share of unsure confidences, the confidence,
prediction and feature distributions on the bins of the model's reference profile,
the sums of absolute feature attributions;
and, for the model's hosts, resource utilisation sums and maxima. A slice is one
accumulator; a window is the merge of its slices. State is O(bins), never O(events).

Pure numpy: no Apache Beam import.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ampel_monitor.events import EventBatch, ResourceBatch
from ampel_monitor.quality import attribution_importance, rank_change
from drift.profile import ReferenceProfile
from drift.report import DriftPolicy, FeatureState, features_drift
from sketches.ddsketch import DDSketch
from sketches.fixed_histogram import FixedHistogram

__all__ = ["ModelAccumulator", "ModelSpec", "ResourceState", "SliceSpec", "VersionState", "rfc3339"]

LATENCY_QUANTILES = (0.5, 0.9, 0.95, 0.99)
CONFIDENCE_QUANTILES = (0.1, 0.5, 0.9)
#: The length of the top-feature lists compared by the importance rank change.
IMPORTANCE_TOP_K = 5


def rfc3339(epoch_ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC, e.g. ``2026-01-01T00:05:00Z``."""
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, tz=datetime.timezone.utc)
    text = moment.isoformat(timespec="milliseconds" if epoch_ms % 1000 else "seconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """What the window state of one model needs to know."""

    model: str
    profile: ReferenceProfile
    policy: DriftPolicy = field(default_factory=DriftPolicy)
    confidence_threshold: float = 0.5


class SliceSpec:
    """What folding a model's batches into its state needs: the empty sketches (bins
    only, no reference counts) and the confidence threshold. It pickles to about a
    third of its ``ModelSpec``, which matters where a runner pickles the combiner.
    """

    __slots__ = ("empty", "confidence_threshold")

    def __init__(self, spec: ModelSpec) -> None:
        self.empty = _with_bounds(VersionState(spec))
        self.confidence_threshold = spec.confidence_threshold

    def new_state(self) -> VersionState:
        return _empty_like(self.empty)

    def __reduce__(self) -> tuple[Any, ...]:
        return _slice_spec, (self.empty, self.confidence_threshold)


def _slice_spec(empty: VersionState, confidence_threshold: float) -> SliceSpec:
    spec = SliceSpec.__new__(SliceSpec)
    spec.empty, spec.confidence_threshold = _with_bounds(empty), confidence_threshold
    return spec


def _with_bounds(empty: VersionState) -> VersionState:
    """Builds the bin bounds of the histograms once; the states made from them share them."""
    for state in (empty.confidence_hist, empty.prediction, *empty.features.values()):
        if isinstance(state, FixedHistogram):
            state.lower_bounds()
    return empty


class ResourceState:
    """Sums and maxima of resource utilisation samples."""

    __slots__ = ("samples", "sums", "maxima", "gpu_samples")

    def __init__(self) -> None:
        self.samples = 0
        self.gpu_samples = 0
        self.sums = np.zeros(3)  # cpu, memory, gpu
        self.maxima = np.full(3, -np.inf)

    def add(self, batch: ResourceBatch) -> None:
        if not batch.cpu.size:
            return
        gpu = batch.gpu[~np.isnan(batch.gpu)]
        self.samples += batch.cpu.size
        self.gpu_samples += gpu.size
        self.sums += (batch.cpu.sum(), batch.memory.sum(), gpu.sum())
        self.maxima = np.maximum(self.maxima, (batch.cpu.max(), batch.memory.max(), gpu.max() if gpu.size else -np.inf))

    def merge(self, other: ResourceState) -> None:
        self.samples += other.samples
        self.gpu_samples += other.gpu_samples
        self.sums += other.sums
        self.maxima = np.maximum(self.maxima, other.maxima)

    def to_dict(self) -> dict[str, Any] | None:
        if not self.samples:
            return None
        out: dict[str, Any] = {"samples": self.samples}
        for i, name in enumerate(("cpu", "memory", "gpu")):
            n = self.gpu_samples if name == "gpu" else self.samples
            out[f"{name}_mean"] = float(self.sums[i] / n) if n else None
            out[f"{name}_max"] = float(self.maxima[i]) if n else None
        return out


class VersionState:
    """Every sketch of one model version."""

    __slots__ = ("count", "errors", "latency", "confidence", "unsure", "confidence_hist", "prediction", "features",
                 "attributed", "attributions")

    def __init__(self, spec: ModelSpec) -> None:
        profile = spec.profile
        self.count = 0
        self.errors = 0
        self.latency = DDSketch()
        self.confidence = DDSketch()
        self.unsure = 0
        self.confidence_hist = profile.confidence.new_state() if profile.confidence else None
        self.prediction: FeatureState | None = profile.prediction.new_state() if profile.prediction else None
        self.features: dict[str, FeatureState] = {name: f.new_state() for name, f in profile.features.items()}
        self.attributed = 0  # events that carry attributions
        self.attributions = np.zeros(len(profile.features))  # sums of |attribution|, in profile feature order

    def add(self, batch: EventBatch, confidence_threshold: float) -> None:
        self.count += len(batch)
        self.errors += int(batch.error.sum())
        self.latency.add_many(batch.latency_ms)
        confidence = batch.confidence[~np.isnan(batch.confidence)]
        if confidence.size:
            self.confidence.add_many(confidence)
            self.unsure += int(np.count_nonzero(confidence < confidence_threshold))
            if self.confidence_hist is not None:
                self.confidence_hist.add_many(confidence)
        codes = batch.codes
        if self.prediction is not None:
            if None in codes:
                self.prediction.add_encoded(*codes[None])  # type: ignore[union-attr]
            else:
                self.prediction.add_many(batch.prediction)
        for name, state in self.features.items():
            if name in codes:
                state.add_encoded(*codes[name])  # type: ignore[union-attr]
            else:
                state.add_many(batch.features[name])
        if batch.attributions:
            columns = [batch.attributions[name] for name in self.features]
            self.attributed += int(np.count_nonzero(~np.isnan(columns[0])))
            self.attributions += [np.nansum(column) for column in columns]

    def merge(self, other: VersionState) -> None:
        self.count += other.count
        self.errors += other.errors
        self.latency.merge(other.latency)
        self.confidence.merge(other.confidence)
        self.unsure += other.unsure
        if self.confidence_hist is not None and other.confidence_hist is not None:
            self.confidence_hist.merge(other.confidence_hist)
        if self.prediction is not None and other.prediction is not None:
            self.prediction.merge(other.prediction)  # type: ignore[arg-type]
        for name, state in self.features.items():
            state.merge(other.features[name])  # type: ignore[arg-type]
        self.attributed += other.attributed
        self.attributions += other.attributions

    def importance(self, spec: ModelSpec) -> tuple[dict[str, dict[str, Any]] | None, float | None]:
        """Feature importance (mean |attribution| and rank per feature) and its rank change
        against the profile's importance (``rank_change`` of the top 5); None when unknown."""
        if not self.attributed:
            return None, None
        importance = attribution_importance(dict(zip(self.features, self.attributions.tolist())), self.attributed)
        reference = spec.profile.importance
        if not reference:
            return importance, None
        ranks = attribution_importance(dict(reference), 1)
        return importance, rank_change({n: e["rank"] for n, e in importance.items()},
                                       {n: e["rank"] for n, e in ranks.items()}, IMPORTANCE_TOP_K)


class ModelAccumulator:
    """The mergeable state of one model over one slice or window."""

    __slots__ = ("versions", "resources")

    def __init__(self) -> None:
        self.versions: dict[str, VersionState] = {}
        self.resources = ResourceState()

    def add_batch(self, batch: EventBatch | ResourceBatch, spec: SliceSpec) -> ModelAccumulator:
        if isinstance(batch, ResourceBatch):
            self.resources.add(batch)
            return self
        state = self.versions.get(batch.version)
        if state is None:
            state = self.versions[batch.version] = spec.new_state()
        state.add(batch, spec.confidence_threshold)
        return self

    def merge(self, other: ModelAccumulator) -> ModelAccumulator:
        """Adds ``other`` into this accumulator (``other`` is unchanged)."""
        for version, state in other.versions.items():
            mine = self.versions.get(version)
            if mine is None:
                mine = self.versions[version] = _empty_like(state)
            mine.merge(state)
        self.resources.merge(other.resources)
        return self

    def metrics(self, spec: ModelSpec, start_ms: int, end_ms: int, late: bool) -> list[dict[str, Any]]:
        """The ``WindowMetrics`` record of every version seen in the window."""
        seconds = (end_ms - start_ms) / 1000
        resources = self.resources.to_dict()
        out = []
        for version in sorted(self.versions):
            state = self.versions[version]
            latency = state.latency.quantiles(LATENCY_QUANTILES)
            # the features, the prediction and the confidence compared in one call
            profiles, states = [spec.profile.features[n] for n in state.features], list(state.features.values())
            extra = {}
            if state.prediction is not None and spec.profile.prediction is not None:
                extra["prediction"] = len(profiles)
                profiles.append(spec.profile.prediction)
                states.append(state.prediction)
            if state.confidence.count and state.confidence_hist is not None and spec.profile.confidence is not None:
                extra["confidence"] = len(profiles)
                profiles.append(spec.profile.confidence)
                states.append(state.confidence_hist)
            compared = features_drift(profiles, states, spec.policy)
            drifts = dict(zip(state.features, compared))
            prediction = compared[extra["prediction"]].to_dict() if "prediction" in extra else None
            confidence = None
            if state.confidence.count:
                c10, c50, c90 = state.confidence.quantiles(CONFIDENCE_QUANTILES)
                confidence = {
                    "count": int(state.confidence.count),
                    "mean": state.confidence.mean,
                    "p10": c10,
                    "p50": c50,
                    "p90": c90,
                    "below_threshold": state.unsure / state.confidence.count,
                }
                if "confidence" in extra:
                    confidence["drift"] = compared[extra["confidence"]].to_dict()
            drifted = [name for name, d in drifts.items() if d.drifted]
            importance, importance_change = state.importance(spec)
            out.append(
                {
                    "model": spec.model,
                    "version": version,
                    "window_start": rfc3339(start_ms),
                    "window_end": rfc3339(end_ms),
                    "count": state.count,
                    "errors": state.errors,
                    "throughput_rps": state.count / seconds,
                    "error_rate": state.errors / state.count if state.count else 0.0,
                    "latency_ms": dict(zip(("p50", "p90", "p95", "p99"), latency), max=state.latency.max),
                    "confidence": confidence,
                    "features": {name: d.to_dict() for name, d in drifts.items()},
                    "drifted_features": drifted,
                    "share_drifted": len(drifted) / len(drifts) if drifts else 0.0,
                    "prediction_drift": prediction,
                    "resources": resources,
                    "attributed": state.attributed,
                    "importance": importance,
                    "importance_rank_change": importance_change,
                    "late": late,
                }
            )
        return out


def _empty_like(state: VersionState) -> VersionState:
    clone = VersionState.__new__(VersionState)
    clone.count = clone.errors = clone.unsure = 0
    clone.latency = DDSketch(state.latency.relative_accuracy, state.latency.max_bins)
    clone.confidence = DDSketch(state.confidence.relative_accuracy, state.confidence.max_bins)
    clone.confidence_hist = state.confidence_hist.empty_like() if state.confidence_hist is not None else None
    clone.prediction = state.prediction.empty_like() if state.prediction is not None else None
    clone.features = {name: s.empty_like() for name, s in state.features.items()}
    clone.attributed = 0
    clone.attributions = np.zeros_like(state.attributions)
    return clone

