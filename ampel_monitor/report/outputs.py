"""Reading a run's JSON-lines outputs for the report: one pane per window, bad lines noted.

A window can be written several times (late panes; quality panes updated as labels
arrive): ``latest_panes`` keeps the fullest pane per (model, version, window end), the one
with the most events (quality: the most labelled predictions), the later one on a tie.
A missing or empty file, or unreadable lines, become notes, never errors.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OUTPUT_FILES", "RunOutputs", "as_number", "axis_time", "dig", "dig_number", "keys", "latest_panes", "load_outputs",
           "parse_time"]

OUTPUT_FILES = {"metrics": "metrics.jsonl", "alerts": "alerts.jsonl", "dead_letters": "dead_letters.jsonl",
                "quality": "quality.jsonl", "ab": "ab.jsonl"}


def parse_time(text: Any) -> datetime.datetime | None:
    """An RFC 3339 time as an aware UTC datetime; None when it is not one."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def axis_time(text: str) -> str:
    """An RFC 3339 UTC time as plotly's date string, e.g. ``2026-01-01 00:05:00``.

    >>> axis_time("2026-01-01T00:05:00Z"), axis_time("2026-01-01T00:05:00.250Z")
    ('2026-01-01 00:05:00', '2026-01-01 00:05:00.250')
    """
    moment = parse_time(text)
    if moment is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    out = moment.strftime("%Y-%m-%d %H:%M:%S")
    return out + f".{moment.microsecond // 1000:03d}" if moment.microsecond else out


def as_number(value: Any) -> float | None:
    """A finite number, else None (bools, strings, NaN and infinities are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def dig(record: Any, *path: str) -> Any:
    """``record[path[0]][path[1]]...``, None where a level is missing or not a mapping."""
    for key in path:
        if not isinstance(record, Mapping):
            return None
        record = record.get(key)
    return record


def keys(record: Any, *path: str) -> list[str]:
    """The keys of the mapping at ``path``; empty where there is none."""
    found = dig(record, *path)
    return list(found) if isinstance(found, Mapping) else []


def dig_number(record: Any, *path: str) -> float | None:
    return as_number(dig(record, *path))


def latest_panes(records: Iterable[Mapping[str, Any]], size: Callable[[Mapping[str, Any]], float | None],
                 keys: Sequence[str] = ("model", "version", "window_end")) -> list[Mapping[str, Any]]:
    """The fullest pane per key (largest ``size``; the later one on a tie), in window order.

    >>> panes = [{"model": "m", "version": "v1", "window_end": "2026-01-01T00:05:00Z", "count": 20},
    ...          {"model": "m", "version": "v1", "window_end": "2026-01-01T00:05:00Z", "count": 25, "late": True}]
    >>> [p["count"] for p in latest_panes(panes, lambda p: p["count"])]
    [25]
    """
    best: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for record in records:
        key = tuple(record.get(k) for k in keys)
        current = best.get(key)
        if current is None or (size(record) or 0.0) >= (size(current) or 0.0):
            best[key] = record
    return sorted(best.values(), key=lambda r: (parse_time(r["window_end"]), *(str(r.get(k)) for k in keys)))


@dataclass(frozen=True)
class RunOutputs:
    """A run's outputs as the report uses them: one pane per window, in window order."""

    #: The directory read.
    directory: Path
    #: Window metrics, the fullest pane per (model, version, window end).
    metrics: list[Mapping[str, Any]]
    #: Alert transitions (firing, resolved), in window order.
    alerts: list[Mapping[str, Any]]
    #: Dead letters, as written.
    dead_letters: list[Mapping[str, Any]]
    #: Quality panes, the one with the most labelled predictions per (model, version, window end).
    quality: list[Mapping[str, Any]]
    #: A/B comparisons, the last per (model, kind, window end).
    ab: list[Mapping[str, Any]]
    #: Output kind to what was wrong with its file: missing, empty, lines skipped.
    notes: dict[str, str] = field(default_factory=dict)
    #: Metrics panes replaced by a fuller pane of the same window (late panes).
    superseded_panes: int = 0


def _read(path: Path, required: Callable[[Mapping[str, Any]], bool]) -> tuple[list[Mapping[str, Any]], str | None]:
    if not path.is_file():
        return [], f"{path.name} not found"
    records, bad = [], 0
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(record, dict) and required(record):
                records.append(record)
            else:
                bad += 1
    if bad:
        return records, f"{bad} unreadable line{'s' if bad > 1 else ''} of {path.name} skipped"
    return records, None if records else f"{path.name} is empty"


def _windowed(record: Mapping[str, Any]) -> bool:
    version = record.get("version")
    return isinstance(record.get("model"), str) and (version is None or isinstance(version, str)) \
        and parse_time(record.get("window_end")) is not None


def load_outputs(directory: str | Path) -> RunOutputs:
    """Reads a run's output directory; a missing or bad file becomes a note, not an error.

    Raises:
        ValueError: when ``directory`` is not a directory.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"--metrics: not a directory: {str(root)!r}")
    notes: dict[str, str] = {}
    raw: dict[str, list[Mapping[str, Any]]] = {}
    checks: dict[str, Callable[[Mapping[str, Any]], bool]] = {
        "metrics": lambda r: _windowed(r) and isinstance(r.get("version"), str),
        "alerts": lambda r: _windowed(r) and isinstance(r.get("rule"), str) and r.get("state") in ("firing", "resolved"),
        "dead_letters": lambda r: True,
        "quality": lambda r: _windowed(r) and isinstance(r.get("version"), str) and isinstance(r.get("quality"), dict),
        "ab": lambda r: _windowed(r) and isinstance(r.get("versions"), dict),
    }
    for kind, name in OUTPUT_FILES.items():
        raw[kind], note = _read(root / name, checks[kind])
        if note:
            notes[kind] = note
    metrics = latest_panes(raw["metrics"], lambda r: as_number(r.get("count")))
    quality = latest_panes(raw["quality"], lambda r: dig_number(r, "quality", "labelled"))
    ab = latest_panes(raw["ab"], lambda r: 0.0, keys=("model", "kind", "window_end"))
    alerts = sorted(raw["alerts"], key=lambda r: parse_time(r["window_end"]))  # stable: file order within a window
    return RunOutputs(root, metrics, alerts, raw["dead_letters"], quality, ab, notes,
                      len(raw["metrics"]) - len(metrics))

