"""Model quality per window from labelled predictions: mergeable state and its metrics.

``QualityState`` holds, for one model version over one slice or window, the confusion
matrix of the labelled predictions (classification) or the sums of absolute, squared
and relative errors (regression), the same per subgroup of each sensitive attribute,
and the sums of the Brier and log-loss terms. State is O(classes^2 x subgroups),
never O(events); merging adds counts and sums, so a window is exact as the merge of
its slices (up to the rounding of float sums).

Conventions, each matched by the tests against the named peer on the same data:

* accuracy, precision, recall, F1: scikit-learn's ``accuracy_score``,
  ``precision_score``, ``recall_score``, ``f1_score`` with ``zero_division=0``;
  binary (``positive_label`` set): one-vs-rest of the positive class; multiclass:
  ``average="macro"`` over the classes present in the labels or the predictions.
* Brier score and log loss (binary, over events that carry a confidence): the
  probability of the positive class is ``p = confidence`` when the prediction is the
  positive class, ``1 - confidence`` otherwise; ``brier_score_loss`` and
  ``log_loss``, which clips probabilities to ``[eps, 1 - eps]`` with ``eps`` the
  float64 machine epsilon (2.2e-16) since scikit-learn 1.5 (1e-15 before).
  Natural logarithm.
* MAE, RMSE, MAPE: ``mean_absolute_error``, ``root_mean_squared_error``,
  ``mean_absolute_percentage_error`` (``|y - yhat| / max(|y|, eps)``, a ratio, not
  a percentage).
* bias: fairlearn's ``selection_rate`` (positive rate), ``true_positive_rate``,
  ``false_positive_rate``, ``demographic_parity_difference``,
  ``equal_opportunity_difference`` and ``demographic_parity_ratio`` (the disparate
  impact ratio), all ``between_groups`` (max - min, min / max).

Labels and predictions of a classifier are compared as text: a label arriving as the
number 1 (or 1.0) matches the prediction ``"1"``. Events whose label or prediction is
missing (None, NaN) are skipped.

Also here: the two-proportion z-test and the per-version comparison of an A/B test,
the Page-Hinkley detector of a rising error over successive windows (concept drift),
and feature-importance ranks from attributions with a top-k rank change.

Pure numpy and scipy: no Apache Beam import.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from scipy.special import ndtr

from sketches import serde

__all__ = [
    "MISSING_SUBGROUP",
    "OTHER_SUBGROUP",
    "PageHinkley",
    "QualitySpec",
    "QualityState",
    "attribution_importance",
    "compare_versions",
    "rank_change",
    "two_proportion_ztest",
]

#: The subgroup of events whose sensitive attribute is absent (None or NaN).
MISSING_SUBGROUP = "(missing)"
#: The subgroup of every value beyond ``QualitySpec.max_subgroups`` distinct values.
OTHER_SUBGROUP = "(other)"
#: The disparate impact ratio below which the four-fifths rule is violated.
FOUR_FIFTHS = 0.8

_TASKS = ("classification", "regression")
_EPS = float(np.finfo(np.float64).eps)
_TAG = b"Q"
_NO_SUBGROUPS: Mapping[str, np.ndarray] = MappingProxyType({})


@dataclass(frozen=True)
class QualitySpec:
    """What the quality state of one model needs to know.

    Raises:
        ValueError: on an unknown task, a positive label for regression, a negative
            ``min_subgroup`` or a ``max_subgroups`` below 1.
    """

    #: "classification" or "regression".
    task: str
    #: Binary classification: the positive class; None: multiclass (macro averages).
    positive_label: str | None = None
    #: Attribute names whose subgroups get bias metrics.
    sensitive: tuple[str, ...] = ()
    #: Subgroups with fewer labelled events are reported, flagged ``small``, and left
    #: out of the disparity measures.
    min_subgroup: int = 30
    #: At most this many distinct values per attribute are kept apart; later ones are
    #: counted in ``OTHER_SUBGROUP`` (bounds the state; which values come first
    #: depends on the order of adds and merges).
    max_subgroups: int = 100

    def __post_init__(self) -> None:
        if self.task not in _TASKS:
            raise ValueError(f"task should be one of {list(_TASKS)}, got {self.task!r}")
        if self.task == "regression" and self.positive_label is not None:
            raise ValueError(f"a regression has no positive label, got {self.positive_label!r}")
        if self.min_subgroup < 0:
            raise ValueError(f"min_subgroup must be >= 0, got {self.min_subgroup!r}")
        if self.max_subgroups < 1:
            raise ValueError(f"max_subgroups must be >= 1, got {self.max_subgroups!r}")
        object.__setattr__(self, "sensitive", tuple(self.sensitive))
        if self.positive_label is not None:
            object.__setattr__(self, "positive_label", str(self.positive_label))


def _text(value: Any) -> str:
    """The text a label, prediction or subgroup value is compared as."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # 1.0 (a JSON or Avro double) matches "1"
    return str(value)


def _factorize(values: Sequence[Any] | np.ndarray) -> tuple[list[str], np.ndarray]:
    """The distinct texts of ``values`` and the index of each value into them (-1: missing).

    Vectorised: numpy finds the distinct values; Python only touches each distinct one.
    """
    array = np.asarray(values)
    if array.ndim != 1:
        array = array.reshape(-1)
    if array.dtype.kind == "O":
        missing = (array == None) | (array != array)  # noqa: E711  None, or NaN != NaN
    elif array.dtype.kind == "f":
        missing = np.isnan(array)
    else:
        missing = np.zeros(array.shape, dtype=bool)
    codes = np.full(array.size, -1, dtype=np.intp)
    present = array[~missing]
    if present.size == 0:
        return [], codes
    keys = present.astype(str) if present.dtype.kind == "O" else present
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    names = [_text(present[i]) for i in first]
    distinct = sorted(set(names))
    position = {name: i for i, name in enumerate(distinct)}
    codes[~missing] = np.array([position[name] for name in names], dtype=np.intp)[inverse.reshape(-1)]
    return distinct, codes


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def _json_float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


class _Groups:
    """The subgroups of one sensitive attribute and their per-subgroup state."""

    __slots__ = ("names", "index", "table")

    def __init__(self, names: list[str], table: np.ndarray) -> None:
        self.names = names
        self.index = {name: i for i, name in enumerate(names)}
        #: classification: (subgroups, classes, classes) counts [label, prediction];
        #: regression: (subgroups, 4) of count, sum |e|, sum e^2, sum |e| / max(|y|, eps).
        self.table = table

    def lookup(self, names: Iterable[str], cap: int) -> np.ndarray:
        """The subgroup index of each name, adding new ones up to ``cap`` then to the overflow."""
        out = []
        for name in names:
            i = self.index.get(name)
            if i is None:
                distinct = len(self.names) - (OTHER_SUBGROUP in self.index)
                if distinct >= cap:
                    name = OTHER_SUBGROUP
                    i = self.index.get(name)
                if i is None:
                    i = self.index[name] = len(self.names)
                    self.names.append(name)
            out.append(i)
        rows = len(self.names) - self.table.shape[0]
        if rows > 0:
            self.table = np.concatenate((self.table, np.zeros((rows, *self.table.shape[1:]), self.table.dtype)))
        return np.array(out, dtype=np.intp)

    def copy(self) -> _Groups:
        return _Groups(list(self.names), self.table.copy())


class QualityState:
    """Mergeable per-window state of the labelled predictions of one model version.

    O(classes^2 x subgroups), never O(events). ``add`` takes the labelled events of a
    batch as arrays; ``add_unlabelled`` counts the window's predictions (labelled or
    not), the denominator of ``labelled_fraction``.

    Args:
        spec: the task, positive class and sensitive attributes.

    Examples:
        >>> state = QualityState(QualitySpec("classification", positive_label="fraud"))
        >>> state.add(np.array(["fraud", "ok", "ok", "fraud"], dtype=object),
        ...           np.array(["fraud", "fraud", "ok", "ok"], dtype=object),
        ...           np.array([0.9, 0.6, 0.8, np.nan]))
        >>> state.add_unlabelled(8)
        >>> m = state.metrics(reference={"accuracy": 0.8})
        >>> m["labelled_fraction"], m["accuracy"], m["precision"], m["recall"], round(m["accuracy_drop"], 4)
        (0.5, 0.5, 0.5, 0.5, 0.375)
        >>> round(m["brier"], 4), round(m["log_loss"], 4)
        (0.1367, 0.4149)
        >>> QualityState.from_bytes(state.to_bytes()).metrics() == state.metrics()
        True
    """

    __slots__ = ("spec", "predictions", "classes", "_class_index", "matrix", "scored", "brier_sum",
                 "log_loss_sum", "regression", "groups")

    def __init__(self, spec: QualitySpec) -> None:
        self.spec = spec
        #: Predictions of the window, labelled or not (``add_unlabelled``).
        self.predictions = 0
        #: Classes seen, in order of arrival; the axes of ``matrix``.
        self.classes: list[str] = []
        self._class_index: dict[str, int] = {}
        #: Confusion matrix: counts per [label, prediction].
        self.matrix = np.zeros((0, 0), dtype=np.int64)
        #: Binary: events with a confidence, and their sums of Brier and log-loss terms.
        self.scored = 0
        self.brier_sum = 0.0
        self.log_loss_sum = 0.0
        #: Regression: count, sum |e|, sum e^2, sum |e| / max(|y|, eps).
        self.regression = np.zeros(4, dtype=np.float64)
        self.groups: dict[str, _Groups] = {name: self._new_groups() for name in spec.sensitive}

    def _new_groups(self) -> _Groups:
        k = len(self.classes)
        shape = (0, k, k) if self.spec.task == "classification" else (0, 4)
        return _Groups([], np.zeros(shape, dtype=np.int64 if self.spec.task == "classification" else np.float64))

    @property
    def labelled(self) -> int:
        """The number of labelled predictions."""
        if self.spec.task == "classification":
            return int(self.matrix.sum())
        return int(self.regression[0])

    def _class_codes(self, names: Iterable[str]) -> np.ndarray:
        out = []
        for name in names:
            i = self._class_index.get(name)
            if i is None:
                i = self._class_index[name] = len(self.classes)
                self.classes.append(name)
            out.append(i)
        grow = len(self.classes) - self.matrix.shape[0]
        if grow > 0:
            self.matrix = np.pad(self.matrix, ((0, grow), (0, grow)))
            for groups in self.groups.values():
                groups.table = np.pad(groups.table, ((0, 0), (0, grow), (0, grow)))
        return np.array(out, dtype=np.intp)

    def _class_codes_of(self, names: list[str], codes: np.ndarray) -> np.ndarray:
        """The class index of each code into ``names``, adding only the classes used."""
        used, position = np.unique(codes, return_inverse=True)
        return self._class_codes([names[i] for i in used.tolist()])[position.reshape(-1)]

    def _subgroup_codes(self, subgroups: Mapping[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for name, groups in self.groups.items():
            values = subgroups.get(name)
            if values is None:
                local: list[str] = []
                codes = np.full(keep.size, -1, dtype=np.intp)
            else:
                local, codes = _factorize(values)
                if codes.size != keep.size:
                    raise ValueError(f"subgroups[{name!r}] must match labels in length, got {codes.size} and {keep.size}")
            codes = codes[keep]
            used, position = np.unique(codes, return_inverse=True)  # only subgroups with events
            names = [local[i] if i >= 0 else MISSING_SUBGROUP for i in used.tolist()]
            out[name] = groups.lookup(names, self.spec.max_subgroups)[position.reshape(-1)]
        return out

    def add(
        self,
        predictions: np.ndarray,
        labels: np.ndarray,
        confidence: np.ndarray | None = None,
        subgroups: Mapping[str, np.ndarray] = _NO_SUBGROUPS,
    ) -> None:
        """Adds labelled predictions.

        Args:
            predictions: classification: the predicted class per event (object array
                of str); regression: float64.
            labels: the true class (str or numbers, compared as text) or value.
            confidence: classification: the confidence of the prediction in [0, 1],
                NaN where absent; ignored for regression.
            subgroups: sensitive attribute to its value per event; None where absent
                (``MISSING_SUBGROUP``). An attribute of the spec not given here puts
                every event in ``MISSING_SUBGROUP``; others are ignored.

        Raises:
            ValueError: if the arrays differ in length or a confidence is outside [0, 1].
        """
        if self.spec.task == "regression":
            self._add_regression(np.asarray(predictions, dtype=np.float64).reshape(-1),
                                 np.asarray(labels, dtype=np.float64).reshape(-1), subgroups)
            return
        label_names, label_codes = _factorize(labels)
        pred_names, pred_codes = _factorize(predictions)
        if label_codes.size != pred_codes.size:
            raise ValueError(f"predictions and labels must match in length, got {pred_codes.size} and {label_codes.size}")
        keep = (label_codes >= 0) & (pred_codes >= 0)
        truth = self._class_codes_of(label_names, label_codes[keep])
        guess = self._class_codes_of(pred_names, pred_codes[keep])
        k = len(self.classes)
        self.matrix += np.bincount(truth * k + guess, minlength=k * k).reshape(k, k)
        for name, codes in self._subgroup_codes(subgroups, keep).items():
            table = self.groups[name].table
            cells = np.bincount((codes * k + truth) * k + guess, minlength=table.size)
            table += cells.reshape(table.shape)
        if self.spec.positive_label is not None and confidence is not None:
            conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
            if conf.size != keep.size:
                raise ValueError(f"confidence must match labels in length, got {conf.size} and {keep.size}")
            conf = conf[keep]
            scored = ~np.isnan(conf)
            if np.any((conf[scored] < 0.0) | (conf[scored] > 1.0)):
                raise ValueError("confidence must be within [0, 1]")
            self._add_scores(conf[scored], truth[scored], guess[scored])

    def _add_scores(self, conf: np.ndarray, truth: np.ndarray, guess: np.ndarray) -> None:
        if not conf.size:
            return
        positive = self._class_index.get(self.spec.positive_label, -1)  # type: ignore[arg-type]
        p = np.where(guess == positive, conf, 1.0 - conf)  # probability of the positive class
        y = truth == positive
        self.scored += int(conf.size)
        self.brier_sum += float(np.sum((y - p) ** 2))
        p_true = np.clip(np.where(y, p, 1.0 - p), _EPS, 1.0 - _EPS)
        self.log_loss_sum += float(-np.sum(np.log(p_true)))

    def _add_regression(self, predictions: np.ndarray, labels: np.ndarray, subgroups: Mapping[str, np.ndarray]) -> None:
        if predictions.size != labels.size:
            raise ValueError(f"predictions and labels must match in length, got {predictions.size} and {labels.size}")
        keep = np.isfinite(predictions) & np.isfinite(labels)
        y, error = labels[keep], np.abs(predictions[keep] - labels[keep])
        terms = np.stack((np.ones_like(error), error, error**2, error / np.maximum(np.abs(y), _EPS)))
        self.regression += terms.sum(axis=1)
        for name, codes in self._subgroup_codes(subgroups, keep).items():
            table = self.groups[name].table
            for j in range(4):
                table[:, j] += np.bincount(codes, weights=terms[j], minlength=table.shape[0])

    def add_unlabelled(self, n: int) -> None:
        """Counts ``n`` predictions of the window, labelled or not: the denominator of
        ``labelled_fraction`` (which may exceed 1 if labels are counted in another window).

        Raises:
            ValueError: if ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"the number of predictions must be >= 0, got {n!r}")
        self.predictions += int(n)

    def _is_empty(self) -> bool:
        return self.predictions == 0 and not self.classes and not self.regression[0] and not any(
            g.names for g in self.groups.values())

    def copy(self) -> QualityState:
        """Returns an independent copy."""
        clone = QualityState.__new__(QualityState)
        clone.spec, clone.predictions = self.spec, self.predictions
        clone.classes, clone._class_index = list(self.classes), dict(self._class_index)
        clone.matrix, clone.regression = self.matrix.copy(), self.regression.copy()
        clone.scored, clone.brier_sum, clone.log_loss_sum = self.scored, self.brier_sum, self.log_loss_sum
        clone.groups = {name: g.copy() for name, g in self.groups.items()}
        return clone

    def merge(self, other: QualityState) -> QualityState:
        """Adds ``other`` into this state in place (``other`` is unchanged); returns ``self``.

        Raises:
            ValueError: if the specs differ.
        """
        if other.spec != self.spec:
            raise ValueError(f"cannot merge quality states of different specs: {self.spec!r} and {other.spec!r}")
        if other._is_empty():
            return self
        if self._is_empty():
            clone = other.copy()
            for name in self.__slots__:
                setattr(self, name, getattr(clone, name))
            return self
        self.predictions += other.predictions
        self.scored += other.scored
        self.brier_sum += other.brier_sum
        self.log_loss_sum += other.log_loss_sum
        self.regression += other.regression
        to_mine = self._class_codes(other.classes)
        self.matrix[np.ix_(to_mine, to_mine)] += other.matrix
        for name, groups in other.groups.items():
            rows = self.groups[name].lookup(groups.names, self.spec.max_subgroups)
            table = self.groups[name].table
            if self.spec.task == "classification":
                np.add.at(table, (rows[:, None, None], to_mine[None, :, None], to_mine[None, None, :]), groups.table)
            else:
                np.add.at(table, rows, groups.table)
        return self

    def metrics(self, reference: Mapping[str, float | None] | None = None) -> dict[str, Any]:
        """The quality metrics of the state, JSON-ready (None where undefined).

        Keys: ``task``, ``predictions``, ``labelled``, ``labelled_fraction``; then

        * classification: ``correct``, ``accuracy``, ``precision``, ``recall``, ``f1``,
          ``average`` ("binary" or "macro"), ``scored`` (events with a confidence),
          ``brier`` and ``log_loss`` (binary with confidences, else None),
          ``accuracy_drop`` = (reference accuracy - accuracy) / reference accuracy,
          negative when better;
        * regression: ``mae``, ``rmse``, ``mape``, ``mae_increase`` = (mae - reference
          mae) / reference mae, positive when worse;
        * ``bias``: per sensitive attribute, ``subgroups`` (value to ``count``,
          ``small`` and: classification ``accuracy``, binary also ``positive_rate``,
          ``tpr``, ``fpr``; regression ``mae``, ``rmse``) and, binary only, the
          disparity measures over
          the subgroups with at least ``min_subgroup`` events (None with fewer than
          two): ``demographic_parity_difference`` (max - min positive rate),
          ``equal_opportunity_difference`` (max - min TPR, over those subgroups that
          have positive labels; fairlearn would count a TPR of 0 for the others),
          ``disparate_impact_ratio`` (min / max positive rate; None when no subgroup
          has a positive prediction), ``disparate_impact_pvalue`` (the two-proportion
          z-test of the positive rates of those two subgroups: how likely a ratio this
          far from 1 is by chance alone) and ``four_fifths_violated`` (ratio < 0.8).

        Args:
            reference: the reference metrics (``accuracy``, ``mae``), if any.
        """
        labelled = self.labelled
        out: dict[str, Any] = {
            "task": self.spec.task,
            "predictions": self.predictions,
            "labelled": labelled,
            "labelled_fraction": _ratio(labelled, self.predictions),
        }
        reference = reference or {}
        if self.spec.task == "classification":
            out.update(self._classification())
            ref = reference.get("accuracy")
            acc = out["accuracy"]
            out["accuracy_drop"] = None if not ref or acc is None else _json_float((ref - acc) / ref)
        else:
            out.update(_regression(self.regression))
            ref = reference.get("mae")
            mae = out["mae"]
            out["mae_increase"] = None if not ref or mae is None else _json_float((mae - ref) / ref)
        out["bias"] = {name: self._bias(groups) for name, groups in self.groups.items()}
        return out

    def _positive(self) -> int:
        return self._class_index.get(self.spec.positive_label, -1)  # type: ignore[arg-type]

    def _classification(self) -> dict[str, Any]:
        binary = self.spec.positive_label is not None
        out: dict[str, Any] = {"correct": int(np.trace(self.matrix)), "average": "binary" if binary else "macro"}
        out.update(_scores(self.matrix, self._positive() if binary else None))
        out["scored"] = self.scored
        out["brier"] = _ratio(self.brier_sum, self.scored) if binary else None
        out["log_loss"] = _ratio(self.log_loss_sum, self.scored) if binary else None
        return out

    def _bias(self, groups: _Groups) -> dict[str, Any]:
        subgroups: dict[str, dict[str, Any]] = {}
        for i in sorted(range(len(groups.names)), key=groups.names.__getitem__):
            if self.spec.task == "regression":
                entry = _regression(groups.table[i])
                subgroups[groups.names[i]] = {"count": entry["labelled"], "mae": entry["mae"], "rmse": entry["rmse"],
                                              "small": entry["labelled"] < self.spec.min_subgroup}
            else:
                subgroups[groups.names[i]] = _subgroup(groups.table[i], self._positive(),
                                                       self.spec.positive_label is not None, self.spec.min_subgroup)
        out: dict[str, Any] = {"subgroups": subgroups}
        if self.spec.positive_label is not None:
            out.update(_disparity([s for s in subgroups.values() if not s["small"]]))
        return out

    def to_bytes(self) -> bytes:
        """Encodes the state without pickle: a JSON header and the count arrays."""
        head = {
            "spec": [self.spec.task, self.spec.positive_label, list(self.spec.sensitive), self.spec.min_subgroup,
                     self.spec.max_subgroups],
            "predictions": self.predictions, "classes": self.classes, "scored": self.scored,
            "brier_sum": self.brier_sum, "log_loss_sum": self.log_loss_sum,
            "regression": self.regression.tolist(), "groups": [g.names for g in self.groups.values()],
        }
        text = json.dumps(head, allow_nan=False, separators=(",", ":"))
        parts = [serde.header(_TAG), serde.pack_strings([text]), serde.pack_counts(self.matrix.ravel())]
        for groups in self.groups.values():
            if self.spec.task == "classification":
                parts.append(serde.pack_counts(groups.table.ravel()))
            else:
                parts.append(serde.pack_floats(groups.table.ravel()))
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> QualityState:
        """Decodes a state written by ``to_bytes``.

        Raises:
            ValueError: if the bytes are not an encoded quality state of a known version.
        """
        reader = serde.Reader(data, _TAG)
        (text,) = reader.strings()
        head = json.loads(text)
        task, positive, sensitive, min_subgroup, max_subgroups = head["spec"]
        state = cls(QualitySpec(task, positive, tuple(sensitive), min_subgroup, max_subgroups))
        state.predictions, state.scored = head["predictions"], head["scored"]
        state.brier_sum, state.log_loss_sum = head["brier_sum"], head["log_loss_sum"]
        state.regression = np.array(head["regression"], dtype=np.float64)
        state._class_codes(head["classes"])
        k = len(state.classes)
        state.matrix = reader.counts().astype(np.int64).reshape(k, k)
        for groups, names in zip(state.groups.values(), head["groups"]):
            groups.lookup(names, len(names))
            if task == "classification":
                groups.table = reader.counts().astype(np.int64).reshape(len(names), k, k)
            else:
                groups.table = reader.floats().reshape(len(names), 4)
        reader.done()
        return state

    def __repr__(self) -> str:
        return f"QualityState(task={self.spec.task!r}, labelled={self.labelled}, predictions={self.predictions})"


def _scores(matrix: np.ndarray, positive: int | None) -> dict[str, float | None]:
    """Accuracy, precision, recall, F1 of a confusion matrix [label, prediction]."""
    total = matrix.sum()
    if not total:
        return {"accuracy": None, "precision": None, "recall": None, "f1": None}
    tp = np.diag(matrix).astype(np.float64)
    rows, cols = matrix.sum(axis=1).astype(np.float64), matrix.sum(axis=0).astype(np.float64)
    if positive is not None:  # one-vs-rest of the positive class
        if positive < 0:
            precision = recall = f1 = 0.0
        else:
            t, r, c = tp[positive], rows[positive], cols[positive]
            precision, recall, f1 = t / c if c else 0.0, t / r if r else 0.0, 2 * t / (r + c) if r + c else 0.0
    else:  # macro over the classes present in labels or predictions
        present = rows + cols > 0
        tp, rows, cols = tp[present], rows[present], cols[present]
        precision = float(np.mean(np.divide(tp, cols, out=np.zeros_like(tp), where=cols > 0)))
        recall = float(np.mean(np.divide(tp, rows, out=np.zeros_like(tp), where=rows > 0)))
        f1 = float(np.mean(2 * tp / (rows + cols)))
    return {"accuracy": float(np.trace(matrix) / total), "precision": float(precision), "recall": float(recall),
            "f1": float(f1)}


def _regression(sums: np.ndarray) -> dict[str, Any]:
    n, abs_sum, sq_sum, ape_sum = (float(v) for v in sums)
    if not n:
        return {"labelled": 0, "mae": None, "rmse": None, "mape": None}
    return {"labelled": int(n), "mae": abs_sum / n, "rmse": math.sqrt(sq_sum / n), "mape": ape_sum / n}


def _subgroup(matrix: np.ndarray, positive: int, binary: bool, min_subgroup: int) -> dict[str, Any]:
    count = int(matrix.sum())
    entry: dict[str, Any] = {"count": count, "accuracy": _ratio(np.trace(matrix), count)}
    if binary:
        predicted = int(matrix[:, positive].sum()) if positive >= 0 else 0
        actual = int(matrix[positive].sum()) if positive >= 0 else 0
        tp = int(matrix[positive, positive]) if positive >= 0 else 0
        entry["positive_rate"] = _ratio(predicted, count)
        entry["tpr"] = _ratio(tp, actual)
        entry["fpr"] = _ratio(predicted - tp, count - actual)
    entry["small"] = count < min_subgroup
    return entry


def _disparity(eligible: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(("demographic_parity_difference", "equal_opportunity_difference",
                                         "disparate_impact_ratio", "disparate_impact_pvalue", "four_fifths_violated"))
    if len(eligible) < 2:
        return out
    rates = [s["positive_rate"] for s in eligible]
    out["demographic_parity_difference"] = max(rates) - min(rates)
    tprs = [s["tpr"] for s in eligible if s["tpr"] is not None]
    if len(tprs) >= 2:
        out["equal_opportunity_difference"] = max(tprs) - min(tprs)
    if max(rates) > 0:
        out["disparate_impact_ratio"] = min(rates) / max(rates)
        out["four_fifths_violated"] = out["disparate_impact_ratio"] < FOUR_FIFTHS
        low, high = eligible[rates.index(min(rates))], eligible[rates.index(max(rates))]
        out["disparate_impact_pvalue"] = _json_float(two_proportion_ztest(
            round(low["positive_rate"] * low["count"]), low["count"],
            round(high["positive_rate"] * high["count"]), high["count"])[1])
    return out


def two_proportion_ztest(x1: float, n1: float, x2: float, n2: float) -> tuple[float, float]:
    """The pooled two-sided z-test of two proportions ``x1 / n1`` and ``x2 / n2``.

    ``z = (x1/n1 - x2/n2) / sqrt(p (1 - p) (1/n1 + 1/n2))`` with the pooled
    ``p = (x1 + x2) / (n1 + n2)``; the p-value is ``2 * (1 - Phi(|z|))``. As
    statsmodels' ``proportions_ztest([x1, x2], [n1, n2])``, except when the pooled
    proportion is 0 or 1 (both samples all failures or all successes): then there is
    no evidence of a difference, ``(0.0, 1.0)``, where statsmodels gives NaN.

    Args:
        x1: successes of the first sample.
        n1: its size.
        x2: successes of the second sample.
        n2: its size.

    Returns:
        ``(z, p_value)``; both NaN when a sample is empty.

    Raises:
        ValueError: unless ``0 <= x <= n`` for both samples.

    Examples:
        >>> z, p = two_proportion_ztest(30, 1000, 15, 1000)
        >>> round(z, 4), round(p, 4)
        (2.2617, 0.0237)
    """
    if not (0 <= x1 <= n1 and 0 <= x2 <= n2):
        raise ValueError(f"successes must be within [0, n], got {x1!r}/{n1!r} and {x2!r}/{n2!r}")
    if not n1 or not n2:
        return float("nan"), float("nan")
    pooled = (x1 + x2) / (n1 + n2)
    if pooled <= 0.0 or pooled >= 1.0:
        return 0.0, 1.0
    z = (x1 / n1 - x2 / n2) / math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(z), float(2.0 * ndtr(-abs(z)))  # the normal's survival function


def compare_versions(windows: Mapping[str, Mapping[str, Any]], baseline: str) -> dict[str, dict[str, Any]]:
    """Compares every version of one window with the baseline version (A/B test).

    Per non-baseline version: ``error_rate_difference`` (version - baseline) and its
    ``error_rate_pvalue`` (``two_proportion_ztest`` of errors over count);
    ``accuracy_difference`` and ``accuracy_pvalue`` (the same test on the correct
    labelled predictions) when both have labelled predictions, else None;
    ``latency_p95_difference_ms``. Differences are version minus baseline.

    Args:
        windows: version to its ``WindowMetrics`` record of the window (``count``,
            ``errors``, ``latency_ms.p95``, optional ``quality``).
        baseline: the version the others are compared with.

    Returns:
        Version to its comparison; empty when the baseline is not in the window.

    Examples:
        >>> out = compare_versions({"v1": {"count": 1000, "errors": 15, "latency_ms": {"p95": 80.0}},
        ...                         "v2": {"count": 1000, "errors": 30, "latency_ms": {"p95": 95.0}}}, "v1")
        >>> out["v2"]["error_rate_difference"], round(out["v2"]["error_rate_pvalue"], 4)
        (0.015, 0.0237)
    """
    base = windows.get(baseline)
    if base is None:
        return {}
    out = {}
    for version in sorted(windows):
        if version == baseline:
            continue
        current = windows[version]
        n, e, n0, e0 = current.get("count", 0), current.get("errors", 0), base.get("count", 0), base.get("errors", 0)
        entry: dict[str, Any] = {
            "error_rate_difference": e / n - e0 / n0 if n and n0 else None,
            "error_rate_pvalue": _json_float(two_proportion_ztest(e, n, e0, n0)[1]),
            "accuracy_difference": None,
            "accuracy_pvalue": None,
        }
        quality, quality0 = current.get("quality") or {}, base.get("quality") or {}
        if quality.get("labelled") and quality0.get("labelled") and None not in (
                quality.get("accuracy"), quality0.get("accuracy")):
            entry["accuracy_difference"] = quality["accuracy"] - quality0["accuracy"]
            entry["accuracy_pvalue"] = _json_float(two_proportion_ztest(
                _correct(quality), quality["labelled"], _correct(quality0), quality0["labelled"])[1])
        p95, p95_0 = (current.get("latency_ms") or {}).get("p95"), (base.get("latency_ms") or {}).get("p95")
        entry["latency_p95_difference_ms"] = None if p95 is None or p95_0 is None else p95 - p95_0
        out[version] = entry
    return out


def _correct(quality: Mapping[str, Any]) -> int:
    correct = quality.get("correct")
    return int(correct) if correct is not None else int(round(quality["accuracy"] * quality["labelled"]))


class PageHinkley:
    """Page-Hinkley test for an increase of the per-window error (concept drift).

    Fed one value per window, ``x_t = 1 - accuracy``. With ``mean_t`` the mean of
    ``x_1..x_t`` since the last reset, the test accumulates
    ``m_t = sum_{i<=t} (x_i - mean_i - delta)`` and its running minimum
    ``M_t = min(m_1, ..., m_t)``, and detects when ``m_t - M_t > threshold`` after
    at least ``min_windows`` values; it then resets. ``delta`` is the tolerated
    increase per window (it makes ``m`` drift down while the error is stationary);
    ``threshold`` trades false alarms for delay. Windows without labels (None, NaN)
    are skipped.

    Measured (``tests/monitor/test_quality.py``, seeded) with the defaults, on
    independent windows of Bernoulli errors at a rate of 0.1, 200 runs of 1000
    windows: false alarms per 1000 windows 0 with 1000 labelled predictions per
    window, 0.14 with 100, 4.3 with 30 (at 30 nearly every run of 1000 windows has
    one; the median first one comes at about window 140). The noise of the input,
    ``sqrt(e (1 - e) / labelled)``, is what matters: with fewer labelled predictions
    per window, raise the threshold or skip such windows. Detection delay after 100
    stationary windows, counted in windows from the change (1 = the first changed
    one), 300 runs: a step of the error from 0.1 to 0.2 is detected after a median
    of 5 windows (95th percentile 8) with 100 labelled per window, 6 (5 to 7) with
    1000; from 0.1 to 0.15 after a median of 11 (95th percentile 18; one run in 300
    missed it within 200 windows, having reset just before the change) with 100,
    12 (10 to 15) with 1000. Overlapping sliding windows are correlated and alarm
    more often: feed it one window per window size, or raise the threshold.

    Args:
        delta: tolerated increase of the error, per window (>= 0).
        threshold: detection threshold ``lambda`` (> 0), in units of the error.
        min_windows: least number of values since the last reset before a detection.

    Raises:
        ValueError: if a parameter is out of range.

    Examples:
        >>> detector = PageHinkley()
        >>> rng = np.random.default_rng(7)
        >>> errors = np.concatenate((rng.binomial(100, 0.1, 100), rng.binomial(100, 0.2, 100))) / 100
        >>> [t for t, x in enumerate(errors) if detector.update(x)]
        [104]

    References:
        Page, E. S. (1954). Continuous inspection schemes. Biometrika 41, 100-115.
        Gama, J. et al. (2014). A survey on concept drift adaptation. ACM Computing
        Surveys 46(4). River's ``drift.PageHinkley(mode="up", alpha=1.0)`` gives the
        same detections (tested).
    """

    __slots__ = ("delta", "threshold", "min_windows", "n", "mean", "cumsum", "minimum")

    def __init__(self, delta: float = 0.005, threshold: float = 0.5, min_windows: int = 5) -> None:
        if not delta >= 0:
            raise ValueError(f"delta must be >= 0, got {delta!r}")
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        if min_windows < 1:
            raise ValueError(f"min_windows must be >= 1, got {min_windows!r}")
        self.delta, self.threshold, self.min_windows = float(delta), float(threshold), int(min_windows)
        self._reset()

    def _reset(self) -> None:
        self.n = 0
        self.mean = self.cumsum = self.minimum = 0.0

    @property
    def statistic(self) -> float:
        """``m_t - M_t``, compared with the threshold."""
        return self.cumsum - self.minimum

    def update(self, x: float | None) -> bool:
        """Adds one window's error; returns True when an increase is detected (then resets)."""
        if x is None or not math.isfinite(x):
            return False
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.cumsum += x - self.mean - self.delta
        self.minimum = self.cumsum if self.n == 1 else min(self.minimum, self.cumsum)
        if self.n >= self.min_windows and self.cumsum - self.minimum > self.threshold:
            self._reset()
            return True
        return False

    def state(self) -> dict[str, float]:
        """The parameters and state as a small JSON-able dict (see ``from_state``)."""
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_state(cls, state: Mapping[str, float]) -> PageHinkley:
        """Restores a detector from ``state()``."""
        detector = cls(state["delta"], state["threshold"], int(state["min_windows"]))
        detector.n = int(state["n"])
        detector.mean, detector.cumsum, detector.minimum = (float(state[k]) for k in ("mean", "cumsum", "minimum"))
        return detector

    def __repr__(self) -> str:
        return f"PageHinkley(delta={self.delta!r}, threshold={self.threshold!r}, min_windows={self.min_windows!r})"


def attribution_importance(sums: Mapping[str, float], count: int) -> dict[str, dict[str, Any]]:
    """Feature importance from per-feature sums of absolute attributions.

    Args:
        sums: feature to the sum of ``|attribution|`` over ``count`` events.
        count: the number of events.

    Returns:
        Feature to ``{"mean_abs": sum / count, "rank": r}``, rank 1 the largest mean
        (ties by feature name); empty when ``count`` is 0.

    Raises:
        ValueError: on a negative or non-finite sum, or a negative count.

    Examples:
        >>> attribution_importance({"age": 3.0, "income": 9.0, "zip": 0.0}, 3)
        {'income': {'mean_abs': 3.0, 'rank': 1}, 'age': {'mean_abs': 1.0, 'rank': 2}, 'zip': {'mean_abs': 0.0, 'rank': 3}}
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count!r}")
    for name, total in sums.items():
        if not (math.isfinite(total) and total >= 0):
            raise ValueError(f"sums of absolute attributions must be finite and >= 0, got {name!r}: {total!r}")
    if not count:
        return {}
    order = sorted(sums, key=lambda name: (-sums[name], name))
    return {name: {"mean_abs": float(sums[name]) / count, "rank": rank} for rank, name in enumerate(order, 1)}


def rank_change(current: Mapping[str, int], reference: Mapping[str, int], top_k: int = 5) -> float:
    """How much the top-k features changed: the normalised Kendall distance of two top-k lists.

    Each ranking (feature to rank, 1 = most important; ties by name) is cut to its
    first ``k = min(top_k, len(current), len(reference))`` features. Over every pair
    of features in the union of the two lists, one point is counted when the lists
    disagree on their order: both in both lists and ordered differently; both in one
    list and only the lower-ranked of them in the other; or each in only one list. A
    pair found in one list only counts 0. That is Fagin, Kumar and Sivakumar's
    ``K^(0)``, the least Kendall distance over all completions of the two lists; its
    maximum is ``k^2`` (disjoint lists), so the result is ``K^(0) / k^2`` in [0, 1]:
    0 for the same features in the same order, 1 for no feature in common; the same
    features in reverse order give ``(k - 1) / (2k)`` (0.4 for k = 5); one feature
    swapped for a new one at the bottom gives ``1 / k^2``. 0 when ``k`` is 0.

    Args:
        current: feature to rank now.
        reference: feature to rank in the reference.
        top_k: the length of the lists compared (>= 1).

    Returns:
        The rank change in [0, 1].

    Raises:
        ValueError: if ``top_k`` < 1.

    Examples:
        >>> rank_change({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 2, "c": 3}, top_k=3)
        0.0
        >>> rank_change({"b": 1, "a": 2, "c": 3}, {"a": 1, "b": 2, "c": 3}, top_k=3)
        0.1111111111111111
        >>> rank_change({"x": 1, "y": 2}, {"a": 1, "b": 2}, top_k=2)
        1.0

    References:
        Fagin, R., Kumar, R., Sivakumar, D. (2003). Comparing top k lists. SIAM
        Journal on Discrete Mathematics 17(1), 134-160.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k!r}")
    k = min(top_k, len(current), len(reference))
    if k == 0:
        return 0.0
    first = {name: i for i, name in enumerate(sorted(current, key=lambda n: (current[n], n))[:k])}
    second = {name: i for i, name in enumerate(sorted(reference, key=lambda n: (reference[n], n))[:k])}
    union = sorted(first.keys() | second.keys())
    disagreements = 0
    for a_pos, a in enumerate(union):
        for b in union[a_pos + 1:]:
            disagreements += _disagree(first.get(a), first.get(b), second.get(a), second.get(b))
    return disagreements / (k * k)


def _disagree(a1: int | None, b1: int | None, a2: int | None, b2: int | None) -> int:
    """1 when two lists order features a and b differently (absent = after every present one)."""
    if (a1 is None and b1 is None) or (a2 is None and b2 is None):
        return 0  # the pair is in one list only: K^(0) counts no disagreement
    first = (a1 if a1 is not None else math.inf) < (b1 if b1 is not None else math.inf)
    second = (a2 if a2 is not None else math.inf) < (b2 if b2 is not None else math.inf)
    return int(first != second)
