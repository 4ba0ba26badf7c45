"""Window metrics, alerts, the decision log and dead letters to Elasticsearch or OpenSearch.

``BulkWriter`` sends documents with ``_bulk`` and checks every item's status; the
Beam DoFn that calls it (``transforms/sinks.py``) only batches per bundle and counts.
Pure Python: no Apache Beam import.

Decisions:

* **Daily indices behind one alias per kind.** A document of kind ``k`` goes to
  ``<prefix>-<k>-YYYY.MM.DD``, the UTC day of its ``@timestamp`` (the window end for
  metrics, quality, A/B comparisons and alerts, the event time for decisions, the write time for dead letters);
  the index templates of ``deploy/elasticsearch`` (index pattern ``<prefix>-<k>-*``)
  give every such index its mapping and the alias ``<prefix>-<k>``, which is what
  readers query. Old days are dropped by deleting whole indices (no ILM: the
  integ-test distributions lack it).
* **Deterministic ids**, the SHA-1 of a stable key, so that a re-write (a replayed
  bundle, a retried batch) replaces a document instead of adding one: metrics by
  (model, version, window_start, window_end), quality the same, A/B comparisons by
  (model, kind, window_start, window_end), alerts by (model, version, rule, severity,
  window_end, state), decisions by (model, event_id), dead letters by (reason, source,
  record). Times in keys are normalised to epoch milliseconds. Since the index of a
  metric, alert or decision follows from its key, it is always the same index; a dead
  letter written again on another day lands a second time, in that day's index.
* **External versioning for window metrics.** A window is emitted once on time and again
  as late panes, each with the window's accumulated ``count``. It is indexed with
  ``version=count, version_type=external_gte``: a later pane (same or larger count)
  replaces the earlier one, and an older pane arriving after a newer one gets a 409
  version conflict, which means the newer pane is already there: counted as
  ``superseded``, not an error. Two panes with the same count (a late pane with labels
  only) may replace each other in either order. Quality panes are versioned the same
  way by their ``labelled`` count, A/B comparisons by their pane index.
* **Retry classification.** Per item: 2xx is written; 429, 5xx and
  ``es_rejected_execution_exception`` are transient and retried; any other status (a
  mapping error, a bad document) is permanent and becomes a dead letter with reason
  ``elasticsearch_rejected``. A failed request (connection error, timeout, a 429/5xx
  answer to the whole ``_bulk``) retries every document of the batch; any other failed
  request rejects them. Retries wait an exponential backoff with jitter
  (``RetryPolicy.initial_backoff`` doubling up to ``max_backoff``, each wait drawn from
  [b/2, b]); what is undelivered ``RetryPolicy.deadline`` seconds after ``write`` began
  becomes a dead letter with reason ``elasticsearch_unavailable``. The clients' own
  retries are off. ``write`` never raises for bad data or an outage, and drops nothing
  silently: every document is written, superseded or dead-lettered.
* **Two flavors.** ``elasticsearch`` uses the official client, which refuses to talk to
  OpenSearch; ``opensearch`` uses ``opensearch-py``. Both get the same NDJSON body, so
  documents are serialised once (NaN and infinities are rejected, not sent).
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ampel_monitor.config import ElasticsearchSink
from ampel_monitor.events import parse_timestamp
from ampel_monitor.window import rfc3339

__all__ = [
    "KINDS",
    "TEMPLATES_DIR",
    "BulkWriter",
    "WriteStats",
    "alias_name",
    "document_id",
    "index_name",
    "index_template",
    "sample",
]

_LOG = logging.getLogger(__name__)

#: The kinds of documents, each with its index template, daily indices and alias.
KINDS = ("metrics", "quality", "ab", "alerts", "decisions", "dead_letters")
#: The index templates, ``<kind>.json`` (``_index_template`` bodies for the prefix ``ampel``).
TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "deploy" / "elasticsearch"

#: The fields of a document's id, per kind.
_ID_FIELDS = {
    "metrics": ("model", "version", "window_start", "window_end"),
    "quality": ("model", "version", "window_start", "window_end"),
    "ab": ("model", "kind", "window_start", "window_end"),
    "alerts": ("model", "version", "rule", "severity", "window_end", "state"),
    "decisions": ("model", "event_id"),
    "dead_letters": ("reason", "source", "record"),
}
_TIME_FIELDS = ("window_start", "window_end")
#: The external version of a document, per kind that has one: (its field, its value).
_VERSIONS = {
    "metrics": lambda record: ("count", record["count"]),
    "quality": lambda record: ("quality.labelled", record["quality"]["labelled"]),
    "ab": lambda record: ("pane", record.get("pane", 0)),
}
_RETRYABLE_TYPES = ("es_rejected_execution_exception:",)
_DETAIL_CHARS = 1000


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind should be one of {list(KINDS)}, got {kind!r}")


def document_id(kind: str, record: Mapping[str, Any]) -> str:
    """The id of a record's document: the SHA-1 (hex) of its key fields as JSON.

    Raises:
        KeyError: if a key field is missing; ValueError if a time in the key is invalid.

    Examples:
        >>> a = {"model": "m", "version": "1", "window_start": "2026-01-01T00:00:00Z",
        ...      "window_end": "2026-01-01T00:05:00Z", "count": 10}
        >>> document_id("metrics", a) == document_id("metrics", {**a, "count": 12,
        ...     "window_end": "2026-01-01T00:05:00.000+00:00"})
        True
    """
    _check_kind(kind)
    key = [parse_timestamp(record[f]) if f in _TIME_FIELDS else record[f] for f in _ID_FIELDS[kind]]
    text = json.dumps(key, separators=(",", ":"), ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def alias_name(prefix: str, kind: str) -> str:
    """The alias over every daily index of a kind, e.g. ``ampel-metrics``."""
    _check_kind(kind)
    return f"{prefix}-{kind}"


def index_name(prefix: str, kind: str, timestamp_ms: int) -> str:
    """The daily index of a document, by the UTC day of its timestamp.

    Examples:
        >>> index_name("ampel", "metrics", 1767225599999)
        'ampel-metrics-2025.12.31'
    """
    day = datetime.datetime.fromtimestamp(timestamp_ms / 1000, tz=datetime.timezone.utc)
    return f"{alias_name(prefix, kind)}-{day:%Y.%m.%d}"


def sample(event_id: Any, share: float) -> bool:
    """Whether the decision log keeps an event: the same answer for the same id, always.

    An event is kept when the first 64 bits of the SHA-1 of its id, as a fraction of
    2**64, are below ``share``; so about ``share`` of all ids are kept, a replay keeps
    the same ones, and raising the share keeps a superset.

    Raises:
        ValueError: if ``share`` is not within [0, 1].

    Examples:
        >>> sample("e-1", 1.0), sample("e-1", 0.0), sample("e-1", 0.5) == sample("e-1", 0.5)
        (True, False, True)
    """
    if not 0 <= share <= 1:
        raise ValueError(f"share should be within [0, 1], got {share!r}")
    digest = hashlib.sha1(str(event_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < share * 2.0**64


def index_template(kind: str, prefix: str, templates_dir: Path = TEMPLATES_DIR) -> dict[str, Any]:
    """The composable index template of a kind, with ``prefix`` in its pattern and alias.

    Raises:
        ValueError: if the template file is missing or not a template with one alias.
    """
    path = Path(templates_dir) / f"{kind}.json"
    _check_kind(kind)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        aliases = body["template"]["aliases"]
        if len(aliases) != 1 or "index_patterns" not in body:
            raise KeyError("one alias and index_patterns")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a usable index template ({exc})") from None
    body["index_patterns"] = [f"{alias_name(prefix, kind)}-*"]
    body["template"]["aliases"] = {alias_name(prefix, kind): next(iter(aliases.values()))}
    return body


@dataclass(frozen=True)
class WriteStats:
    """What one ``BulkWriter.write`` call did."""

    #: Documents created or replaced.
    written: int = 0
    #: Window metrics not written because a newer pane of the window is already there.
    superseded: int = 0
    #: ``_bulk`` requests sent again after a transient failure.
    retries: int = 0
    #: Documents dead-lettered as ``elasticsearch_rejected``.
    rejected: int = 0
    #: Documents dead-lettered as ``elasticsearch_unavailable``.
    unavailable: int = 0


@dataclass(frozen=True)
class _Document:
    index: str
    id: str
    #: The external version (window records only).
    version: int | None
    #: The document as JSON.
    source: str

    def action(self) -> str:
        meta: dict[str, Any] = {"_index": self.index, "_id": self.id}
        if self.version is not None:
            meta.update(version=self.version, version_type="external_gte")
        return json.dumps({"index": meta}, separators=(",", ":"))

    def dead_letter(self, reason: str, detail: str) -> dict[str, str]:
        return _dead_letter(reason, detail, f"elasticsearch:{self.index}/{self.id}", self.source)


def _dead_letter(reason: str, detail: str, source: str, record: str) -> dict[str, str]:
    """A ``DeadLetter.to_dict()``."""
    return {"reason": reason, "detail": detail[:_DETAIL_CHARS], "source": source, "record": record}


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default)


def _item_error(item: Mapping[str, Any]) -> str:
    error = item.get("error") or {}
    if isinstance(error, Mapping):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}"
    return str(error)


class BulkWriter:
    """Writes documents to Elasticsearch or OpenSearch with ``_bulk``; see the module docstring.

    Args:
        config: the sink's configuration.
        sleep: waits between retries (a fake one in tests).
        clock: monotonic seconds, for the retry deadline.
        now: wall-clock seconds, the ``@timestamp`` of dead letters.
        templates_dir: where ``install_templates`` reads ``<kind>.json``.

    Raises:
        ValueError: if a secret's environment variable is not set, or the flavor is unknown.

    Examples:
        A writer to a node that is not running gives every document back as a dead letter::

            writer = BulkWriter(ElasticsearchSink(hosts=("http://127.0.0.1:9",)))
            dead = writer.write([("alerts", alert)])
            # dead[0]["reason"] == "elasticsearch_unavailable" after retry.deadline seconds
    """

    def __init__(
        self,
        config: ElasticsearchSink,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        templates_dir: Path = TEMPLATES_DIR,
    ) -> None:
        if config.batch_size < 1:
            raise ValueError(f"batch_size should be at least 1, got {config.batch_size!r}")
        self.config = config
        self._sleep, self._clock, self._now = sleep, clock, now
        self._templates_dir = Path(templates_dir)
        self._client, self._errors = _connect(config)
        #: What the latest ``write`` call did.
        self.stats = WriteStats()

    def close(self) -> None:
        self._client.close()

    def install_templates(self) -> list[str]:
        """PUTs the index template of every kind (idempotent); returns their names (the aliases').

        Transient failures are retried like documents until the retry deadline.

        Raises:
            ValueError: if a template file is unusable; the client's error if the node
                rejects a template or stays unreachable past the deadline.
        """
        names = []
        for kind in KINDS:
            name = alias_name(self.config.index_prefix, kind)
            body = index_template(kind, self.config.index_prefix, self._templates_dir)
            self._with_retries(functools.partial(self._client.indices.put_index_template, name=name, body=body))
            names.append(name)
        return names

    def write(self, records: Iterable[tuple[str, Mapping[str, Any]]]) -> list[dict[str, str]]:
        """Writes (kind, record) pairs; returns the dead letters of those not written.

        ``stats`` tells what the call did. Records that cannot become a document (a
        missing key field, an invalid time, NaN) are dead-lettered without being sent.

        Raises:
            ValueError: for an unknown kind (a programming error, not a data error).
        """
        now_ms = int(self._now() * 1000)
        documents: list[_Document] = []
        dead: list[dict[str, str]] = []
        for kind, record in records:
            _check_kind(kind)
            try:
                documents.append(self._document(kind, record, now_ms))
            except (KeyError, TypeError, ValueError) as exc:
                detail = f"not indexable: {type(exc).__name__}: {exc}"
                dead.append(_dead_letter("elasticsearch_rejected", detail, f"elasticsearch:{kind}",
                                         json.dumps(record, default=str)))
        counts: Counter[str] = Counter()
        deadline = self._clock() + self.config.retry.deadline
        size = self.config.batch_size
        for start in range(0, len(documents), size):
            dead.extend(self._send(documents[start:start + size], deadline, counts))
        unavailable = sum(d["reason"] == "elasticsearch_unavailable" for d in dead)
        self.stats = WriteStats(counts["written"], counts["superseded"], counts["retries"],
                                len(dead) - unavailable, unavailable)
        return dead

    def _document(self, kind: str, record: Mapping[str, Any], now_ms: int) -> _Document:
        if kind in ("metrics", "quality", "ab", "alerts"):
            timestamp = parse_timestamp(record["window_end"])
        elif kind == "decisions":
            timestamp = parse_timestamp(record["timestamp"])
        else:
            timestamp = now_ms
        version = None
        if kind in _VERSIONS:
            field, version = _VERSIONS[kind](record)
            if isinstance(version, bool) or not isinstance(version, int) or version < 0:
                raise ValueError(f"{field} should be a non-negative integer (the external version), got {version!r}")
        source = _to_json({**record, "@timestamp": rfc3339(timestamp)})
        return _Document(index_name(self.config.index_prefix, kind, timestamp), document_id(kind, record), version, source)

    def _send(self, batch: list[_Document], deadline: float, counts: Counter[str]) -> list[dict[str, str]]:
        """One batch until each document is written, superseded, rejected or out of time."""
        dead: list[dict[str, str]] = []
        pending, delays = batch, self.config.retry.delays()
        while True:
            items, retryable, error = self._bulk(pending)
            if items is None:
                if not retryable:
                    return dead + [doc.dead_letter("elasticsearch_rejected", error) for doc in pending]
                retry = pending
            else:
                retry = []
                for doc, item in zip(pending, items):
                    status = int(item.get("status", 500))
                    if status < 300:
                        counts["written"] += 1
                    elif status == 409 and doc.version is not None:
                        counts["superseded"] += 1
                    elif status == 429 or status >= 500 or _item_error(item).startswith(_RETRYABLE_TYPES):
                        retry.append(doc)
                        error = f"{status} {_item_error(item)}"
                    else:
                        dead.append(doc.dead_letter("elasticsearch_rejected", f"{status} {_item_error(item)}"))
            if not retry:
                return dead
            left = deadline - self._clock()
            if left <= 0:
                _LOG.warning("elasticsearch: giving up on %d documents after the retry deadline: %s", len(retry), error)
                return dead + [doc.dead_letter("elasticsearch_unavailable", f"undelivered by the deadline: {error}")
                               for doc in retry]
            wait = min(next(delays), left)
            _LOG.info("elasticsearch: retrying %d documents in %.2f s: %s", len(retry), wait, error[:200])
            self._sleep(wait)
            counts["retries"] += 1
            pending = retry

    def _bulk(self, batch: list[_Document]) -> tuple[list[Mapping[str, Any]] | None, bool, str]:
        """The per-item results of one ``_bulk``, or None, whether to retry, and why."""
        body = "".join(f"{doc.action()}\n{doc.source}\n" for doc in batch)
        try:
            if self.config.flavor == "elasticsearch":
                response = self._client.bulk(operations=body).body
            else:
                response = self._client.bulk(body=body)
        except self._errors as exc:
            status = getattr(exc, "status_code", None)
            retryable = not isinstance(status, int) or status == 429 or status >= 500
            return None, retryable, f"{type(exc).__name__}: {exc}"[:_DETAIL_CHARS]
        items = [next(iter(item.values())) for item in response.get("items", [])]
        if len(items) != len(batch):
            return None, True, f"_bulk answered {len(items)} items for {len(batch)} documents"
        return items, False, ""

    def _with_retries(self, call: Callable[[], Any]) -> None:
        """Calls ``call`` until it succeeds, retrying 429, 5xx and connection errors until the
        deadline; raises the last error otherwise."""
        errors: list[BaseException] = []

        def attempt() -> tuple[str, str]:
            try:
                call()
            except self._errors as exc:
                errors.append(exc)
                status = getattr(exc, "status_code", None)
                permanent = isinstance(status, int) and status != 429 and status < 500
                return ("permanent" if permanent else "transient"), str(exc)
            return "ok", ""

        if self.config.retry.retry(attempt, self._sleep, self._clock)[0] != "ok":
            raise errors[-1]

def _secret(name: str | None) -> str | None:
    if name is None:
        return None
    value = os.environ.get(name)
    if value is None:
        raise ValueError(f"sinks.elasticsearch: environment variable {name!r} is not set")
    return value


def _connect(config: ElasticsearchSink) -> tuple[Any, tuple[type[BaseException], ...]]:
    """The flavor's client, its own retries off, and the exceptions its requests raise."""
    password, api_key = _secret(config.password_env), _secret(config.api_key_env)
    basic = (config.username or "", password) if password is not None else None
    common: dict[str, Any] = {"max_retries": 0, "retry_on_timeout": False, "retry_on_status": ()}
    if config.ca_certs:
        common["ca_certs"] = config.ca_certs
    if config.flavor == "elasticsearch":
        import elasticsearch

        if basic:
            common["basic_auth"] = basic
        if api_key:
            common["api_key"] = tuple(api_key.split(":", 1)) if ":" in api_key else api_key
        client = elasticsearch.Elasticsearch(list(config.hosts), request_timeout=config.retry.timeout, **common)
        return client, (elasticsearch.ApiError, elasticsearch.TransportError)
    if config.flavor == "opensearch":
        import opensearchpy

        if basic:
            common["http_auth"] = basic
        if api_key:
            encoded = base64.b64encode(api_key.encode()).decode() if ":" in api_key else api_key
            common["headers"] = {"Authorization": f"ApiKey {encoded}"}
        client = opensearchpy.OpenSearch(list(config.hosts), timeout=config.retry.timeout, **common)
        return client, (opensearchpy.TransportError,)
    raise ValueError(f"flavor should be 'elasticsearch' or 'opensearch', got {config.flavor!r}")
