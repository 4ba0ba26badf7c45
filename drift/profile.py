"""Reference profiles: everything drift needs from the reference data, without the data.

A profile holds per numeric feature its decile edges and its reference counts on the
KS bins (``drift.binning``), per categorical feature its top categories and their
counts (the rest in an overflow bucket), the same for the model's predictions and
confidences, and the reference quality (accuracy, or MAE and RMSE) when labels are
present. It is saved as versioned JSON; floats round-trip exactly.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from drift.binning import coarse_map, decile_edges, ks_edges
from drift.columns import Column, EncodedColumn, is_numeric
from sketches.categorical import CategoryCounter
from sketches.fixed_histogram import FixedHistogram

__all__ = [
    "CategoricalProfile",
    "FeatureProfile",
    "NumericProfile",
    "ReferenceProfile",
    "build_feature_profile",
]

FORMAT = "ampel-profile"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """The reference distribution of one numeric feature."""

    #: Feature name.
    name: str
    #: The 9 decile edges of the 10 drift bins.
    edges: np.ndarray
    #: The distinct KS edges (a superset of ``edges``).
    ks_edges: np.ndarray
    #: Reference counts on the point-and-interval bins of ``ks_edges``.
    ks_counts: np.ndarray
    #: Reference count of missing values.
    missing: float = 0.0
    kind = "numeric"

    def __post_init__(self) -> None:
        hist = FixedHistogram(self.ks_edges, exact_edges=True)
        if self.ks_counts.shape != hist.counts.shape:
            raise ValueError(f"feature {self.name!r}: expected {hist.num_bins} KS counts, got {self.ks_counts.size}")
        if not np.all(np.isin(self.edges, self.ks_edges)):
            raise ValueError(f"feature {self.name!r}: every decile edge must be a KS edge")
        object.__setattr__(self, "_template", hist)
        object.__setattr__(self, "_coarse", coarse_map(self.ks_edges, self.edges))
        counts = self.coarse(self.ks_counts)
        counts.flags.writeable = False
        object.__setattr__(self, "_counts", counts)

    def __reduce__(self) -> tuple[Any, ...]:  # the derived members are rebuilt, not pickled
        return type(self), (self.name, self.edges, self.ks_edges, self.ks_counts, self.missing)

    @property
    def count(self) -> float:
        """Reference count of non-missing values."""
        return float(self.ks_counts.sum())

    @property
    def counts(self) -> np.ndarray:
        """Reference counts on the 10 drift bins (read-only)."""
        return self._counts  # type: ignore[attr-defined]

    @property
    def coarse_index(self) -> np.ndarray:
        """The drift bin of each KS bin."""
        return self._coarse  # type: ignore[attr-defined]

    def coarse(self, ks_counts: np.ndarray) -> np.ndarray:
        """Sums counts on the KS bins into the 10 drift bins."""
        return np.bincount(self._coarse, weights=ks_counts, minlength=self.edges.size + 1)  # type: ignore[attr-defined]

    def new_state(self) -> FixedHistogram:
        """Returns an empty histogram of current values on this feature's KS bins."""
        return self._template.empty_like()  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "edges": self.edges.tolist(),
            "ks_edges": self.ks_edges.tolist(),
            "ks_counts": self.ks_counts.tolist(),
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> NumericProfile:
        return cls(
            name,
            np.array(data["edges"], dtype=np.float64),
            np.array(data["ks_edges"], dtype=np.float64),
            np.array(data["ks_counts"], dtype=np.float64),
            float(data.get("missing", 0.0)),
        )


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """The reference distribution of one categorical feature."""

    #: Feature name.
    name: str
    #: The categories counted on their own; all others share the overflow bucket.
    categories: tuple[str, ...]
    #: Reference count per category, then the overflow count.
    counts: np.ndarray
    #: Reference count of missing values.
    missing: float = 0.0
    kind = "categorical"

    def __post_init__(self) -> None:
        counter = CategoryCounter(self.categories)
        if self.counts.shape != counter.counts.shape:
            raise ValueError(
                f"feature {self.name!r}: expected {counter.counts.size} counts "
                f"(categories and overflow), got {self.counts.size}"
            )
        object.__setattr__(self, "_template", counter)

    def __reduce__(self) -> tuple[Any, ...]:  # the template is rebuilt, not pickled
        return type(self), (self.name, self.categories, self.counts, self.missing)

    @property
    def count(self) -> float:
        """Reference count of non-missing values."""
        return float(self.counts.sum())

    def new_state(self) -> CategoryCounter:
        """Returns an empty counter of current values over this feature's categories."""
        return self._template.empty_like()  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "categories": list(self.categories),
            "counts": self.counts.tolist(),
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> CategoricalProfile:
        return cls(
            name,
            tuple(str(c) for c in data["categories"]),
            np.array(data["counts"], dtype=np.float64),
            float(data.get("missing", 0.0)),
        )


FeatureProfile = Union[NumericProfile, CategoricalProfile]


def _feature_from_dict(name: str, data: Mapping[str, Any]) -> FeatureProfile:
    kind = data.get("kind")
    if kind == "numeric":
        return NumericProfile.from_dict(name, data)
    if kind == "categorical":
        return CategoricalProfile.from_dict(name, data)
    raise ValueError(f"feature {name!r}: kind must be 'numeric' or 'categorical', got {kind!r}")


def build_feature_profile(
    name: str,
    column: Column,
    kind: str | None = None,
    resolution: int = 1000,
    max_categories: int = 50,
) -> FeatureProfile:
    """Profiles one reference column.

    Args:
        name: the feature name.
        column: the reference values (see ``drift.columns``).
        kind: "numeric" or "categorical"; inferred from the column when None.
        resolution: the number of reference quantile steps of the KS bins.
        max_categories: the most categories kept; rarer ones go to the overflow.

    Raises:
        ValueError: if the column has no non-missing value, or ``kind`` does not fit.
    """
    kind = kind or ("numeric" if is_numeric(column) else "categorical")
    if kind == "numeric":
        if not is_numeric(column):
            raise ValueError(f"feature {name!r} is not numeric")
        values = np.asarray(column, dtype=np.float64)
        if np.isnan(values).all():
            raise ValueError(f"feature {name!r} has no values")
        edges = decile_edges(values)
        fine = ks_edges(values, edges, resolution)
        hist = FixedHistogram(fine, exact_edges=True).add_many(values)
        return NumericProfile(name, edges, fine, hist.counts, hist.missing)
    if kind != "categorical":
        raise ValueError(f"feature {name!r}: kind must be 'numeric' or 'categorical', got {kind!r}")
    if isinstance(column, EncodedColumn):
        counts = {str(k): v for k, v in column.value_counts().items()}
    else:
        counts = {}
        for value in column:
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                key = str(value)
                counts[key] = counts.get(key, 0) + 1
    if not counts:
        raise ValueError(f"feature {name!r} has no values")
    if max_categories < 1:
        raise ValueError(f"max_categories must be positive, got {max_categories!r}")
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    categories = tuple(name for name, _ in ranked[:max_categories])
    counter = CategoryCounter(categories)
    if isinstance(column, EncodedColumn):
        counter.add_encoded(column.indices, column.dictionary)
    else:
        counter.add_many(column if isinstance(column, np.ndarray) else list(column))
    return CategoricalProfile(name, categories, counter.counts, counter.missing)


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """The reference of one model: its features, predictions, confidences and quality.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(7)
        >>> profile = ReferenceProfile.build(
        ...     {"age": rng.normal(40, 10, 1000), "city": rng.choice(["a", "b"], 1000)})
        >>> sorted(profile.features), profile.features["city"].kind
        (['age', 'city'], 'categorical')
        >>> ReferenceProfile.from_json(profile.to_json()).features["age"].edges.tolist() == (
        ...     profile.features["age"].edges.tolist())
        True
    """

    #: Per feature, its reference distribution.
    features: Mapping[str, FeatureProfile]
    #: Number of reference rows.
    rows: int
    #: The distribution of the model's predictions, if known.
    prediction: FeatureProfile | None = None
    #: The distribution of the model's confidences, if known.
    confidence: NumericProfile | None = None
    #: Reference quality: ``{"accuracy": ...}`` or ``{"mae": ..., "rmse": ...}``.
    quality: Mapping[str, float] = field(default_factory=dict)
    #: When the profile was built (RFC 3339, UTC).
    created_at: str = ""
    #: Reference feature importance: feature to its mean absolute attribution (when the
    #: reference data carries attributions).
    importance: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        columns: Mapping[str, Column],
        numeric: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        prediction: str | None = None,
        confidence: str | None = None,
        label: str | None = None,
        resolution: int = 1000,
        max_categories: int = 50,
        attributions: Mapping[str, Column] | None = None,
    ) -> ReferenceProfile:
        """Profiles a reference data set.

        Args:
            columns: the reference columns by name.
            numeric: the numeric features; with ``categorical`` also None, every
                column not named as prediction/confidence/label is a feature, its
                kind inferred.
            categorical: the categorical features.
            prediction: the column of the model's predictions, if any.
            confidence: the column of the model's confidences, if any.
            label: the column of ground-truth labels, if any (needs ``prediction``).
            resolution: the number of reference quantile steps of the KS bins.
            max_categories: the most categories kept per categorical feature.
            attributions: per feature, the reference rows' attributions (numbers; a
                missing one counts 0): the reference importance is their mean
                absolute value. Features without a profile are left out.

        Raises:
            ValueError: naming the column, if one is unknown, empty or of the wrong kind.
        """
        special = {c for c in (prediction, confidence, label) if c}
        for name in [*special, *(numeric or ()), *(categorical or ())]:
            if name not in columns:
                raise ValueError(f"unknown column {name!r}")
        if label and not prediction:
            raise ValueError("a label column needs a prediction column")
        if numeric is None and categorical is None:
            kinds = {name: None for name in columns if name not in special}
        else:
            kinds = {name: "numeric" for name in numeric or ()}
            kinds.update({name: "categorical" for name in categorical or ()})
        if not kinds:
            raise ValueError("no feature columns to profile")
        features = {
            name: build_feature_profile(name, columns[name], kind, resolution, max_categories)
            for name, kind in kinds.items()
        }
        rows = len(columns[next(iter(columns))])
        pred = build_feature_profile(prediction, columns[prediction], None, resolution, max_categories) if prediction else None
        conf = None
        if confidence:
            conf = build_feature_profile(confidence, columns[confidence], "numeric", resolution, max_categories)
        quality = _quality(columns[prediction], columns[label]) if label and prediction else {}
        importance = {}
        for name, column in (attributions or {}).items():
            if name in features:
                if not isinstance(column, np.ndarray) or column.dtype.kind not in "fiu":
                    raise ValueError(f"attributions of {name!r} must be numbers")
                values = np.abs(column.astype(np.float64))
                if not np.isfinite(values[~np.isnan(values)]).all():
                    raise ValueError(f"attributions of {name!r}: non-finite values")
                importance[name] = float(np.nansum(values) / values.size) if values.size else 0.0
        created = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
        return cls(features, rows, pred, conf, quality, created.replace("+00:00", "Z"), importance)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created_at": self.created_at,
            "rows": self.rows,
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "confidence": self.confidence.to_dict() if self.confidence else None,
            "quality": dict(self.quality),
            "importance": dict(self.importance),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        """Loads a profile written by ``to_dict``.

        Raises:
            ValueError: if it is not a profile, or of a newer format version.
        """
        if data.get("format") != FORMAT:
            raise ValueError(f"not a reference profile (format {data.get('format')!r})")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported profile version {data.get('version')!r}, expected {FORMAT_VERSION}")
        features = {name: _feature_from_dict(name, f) for name, f in data["features"].items()}
        prediction = _feature_from_dict("prediction", data["prediction"]) if data.get("prediction") else None
        confidence = NumericProfile.from_dict("confidence", data["confidence"]) if data.get("confidence") else None
        return cls(
            features,
            int(data["rows"]),
            prediction,
            confidence,
            {k: float(v) for k, v in (data.get("quality") or {}).items()},
            str(data.get("created_at", "")),
            {k: float(v) for k, v in (data.get("importance") or {}).items()},
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def _quality(prediction: Column, label: Column) -> dict[str, float]:
    """Reference quality: accuracy for class predictions, MAE and RMSE for numbers."""
    pred, truth = _plain(prediction), _plain(label)
    if is_numeric(pred) and is_numeric(truth) and pred.dtype.kind == "f" and not np.all(pred == np.round(pred)):
        both = ~(np.isnan(pred) | np.isnan(truth))
        error = pred[both] - truth[both]
        if error.size == 0:
            return {}
        return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2)))}
    if is_numeric(pred) and is_numeric(truth):
        both = ~(np.isnan(pred.astype(np.float64)) | np.isnan(truth.astype(np.float64)))
        return {"accuracy": float(np.mean(pred[both] == truth[both]))} if both.any() else {}
    pairs = [(str(p), str(t)) for p, t in zip(pred, truth) if not (_missing(p) or _missing(t))]
    if not pairs:
        return {}
    return {"accuracy": sum(p == t for p, t in pairs) / len(pairs)}


def _plain(column: Column) -> np.ndarray:
    if isinstance(column, EncodedColumn):
        lookup = np.array([*column.dictionary, None], dtype=object)
        return lookup[np.where(column.indices < 0, -1, column.indices)]
    return column if isinstance(column, np.ndarray) else np.array(list(column), dtype=object)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
