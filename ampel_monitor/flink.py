"""A small client of the Flink REST API: list jobs, stop them with a savepoint, cancel them.

Pure Python over ``requests``; no Beam. Every failure raises ``RuntimeError`` with a
message naming the request (``GET http://host:8081/jobs/overview``) and what went wrong
(connection refused, the HTTP status and Flink's own ``errors``, a malformed answer), or
``ValueError`` for a bad argument (a job id that is not 32 hex digits, a bad address).

Examples:
    >>> rest_url("127.0.0.1:8081")
    'http://127.0.0.1:8081'
    >>> parse_jobs({"jobs": [{"jid": "a" * 32, "name": "ampel", "state": "RUNNING", "start-time": 5}]})
    [FlinkJob(id='aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', name='ampel', state='RUNNING', start_time_ms=5)]
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests

__all__ = ["CheckpointStats", "FlinkJob", "FlinkRest", "check_job_id", "error_detail", "parse_checkpoints",
           "parse_jobs", "parse_operation", "rest_url"]

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_ADDRESS = re.compile(r"^(https?://)?[A-Za-z0-9._\-\[\]:]+(:\d{1,5})?/?$")
#: States after which a job runs no more.
TERMINAL_STATES = frozenset({"FINISHED", "CANCELED", "FAILED", "SUSPENDED"})


@dataclass(frozen=True)
class FlinkJob:
    """One job as ``/jobs/overview`` lists it."""

    #: The job id (32 hex digits).
    id: str
    #: The job name (Beam's ``--job_name``).
    name: str
    #: CREATED, RUNNING, RESTARTING, FAILING, CANCELLING, CANCELED, FINISHED, FAILED, ...
    state: str
    #: When it started, epoch milliseconds.
    start_time_ms: int


@dataclass(frozen=True)
class CheckpointStats:
    """A job's checkpoint counters and where the latest one is."""

    #: Completed checkpoints.
    completed: int
    #: Failed checkpoints.
    failed: int
    #: Restores so far (from a checkpoint after a failure, or from a savepoint at start).
    restored: int
    #: The path of the latest completed checkpoint, if any.
    latest_path: str | None


def rest_url(master: str) -> str:
    """``HOST:PORT`` (or a URL) as the base URL of the REST API.

    Raises:
        ValueError: if it is not an address.
    """
    text = master.strip()
    if not text or not _ADDRESS.match(text):
        raise ValueError(f"flink master must be HOST:PORT or http(s)://HOST:PORT, got {master!r}")
    if not text.startswith(("http://", "https://")):
        text = "http://" + text
    return text.rstrip("/")


def check_job_id(job_id: str) -> str:
    """Returns ``job_id`` if it is a Flink job id.

    Raises:
        ValueError: naming the id, if it is not 32 hex digits.
    """
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise ValueError(f"a Flink job id is 32 hex digits, got {job_id!r}")
    return job_id


def error_detail(status: int, text: str) -> str:
    """What a failed answer says: its status and Flink's ``errors`` (first line of each).

    >>> error_detail(404, '{"errors": ["Job 00 not found"]}')
    'HTTP 404: Job 00 not found'
    >>> error_detail(502, '<html>bad gateway</html>')
    'HTTP 502: <html>bad gateway</html>'
    """
    try:
        body = requests.models.complexjson.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        messages = [str(e).strip().splitlines()[0] for e in body["errors"] if str(e).strip()]
        return f"HTTP {status}: " + "; ".join(messages)
    return f"HTTP {status}: {text.strip()[:300]}"


def _field(body: Any, *path: str) -> Any:
    value = body
    for name in path:
        if not isinstance(value, dict) or name not in value:
            raise ValueError(f"no {'.'.join(path)!r} in {str(body)[:200]}")
        value = value[name]
    return value


def parse_jobs(body: Any) -> list[FlinkJob]:
    """The jobs of a ``/jobs/overview`` answer, newest first.

    Raises:
        ValueError: naming the missing field.
    """
    jobs = _field(body, "jobs")
    if not isinstance(jobs, list):
        raise ValueError(f"'jobs' is not a list: {str(jobs)[:200]}")
    parsed = [FlinkJob(str(_field(j, "jid")), str(_field(j, "name")), str(_field(j, "state")),
                       int(_field(j, "start-time"))) for j in jobs]
    return sorted(parsed, key=lambda j: j.start_time_ms, reverse=True)


def parse_operation(body: Any) -> tuple[str, str | None]:
    """The status of an asynchronous operation (a savepoint): ``("IN_PROGRESS", None)``,
    ``("COMPLETED", location)``.

    Raises:
        ValueError: naming the missing field.
        RuntimeError: with Flink's cause, if the operation failed.
    """
    status = _field(body, "status", "id")
    if status != "COMPLETED":
        return str(status), None
    operation = _field(body, "operation")
    if isinstance(operation, dict) and "failure-cause" in operation:
        cause = operation["failure-cause"] or {}
        trace = str(cause.get("stack-trace") or cause.get("class") or cause).strip()
        # the root cause is at the bottom of the chain of "Caused by:" lines
        causes = [line.strip() for line in trace.splitlines() if line.strip().startswith("Caused by:")]
        first = trace.splitlines()[0] if trace else "unknown"
        raise RuntimeError(first + (f" ({causes[-1]})" if causes else ""))
    return "COMPLETED", str(_field(body, "operation", "location"))


def parse_checkpoints(body: Any) -> CheckpointStats:
    """The counters and latest path of a ``/jobs/:id/checkpoints`` answer.

    Raises:
        ValueError: naming the missing field.
    """
    latest = (body.get("latest") or {}).get("completed") or {} if isinstance(body, dict) else {}
    return CheckpointStats(int(_field(body, "counts", "completed")), int(_field(body, "counts", "failed")),
                           int(_field(body, "counts", "restored")), latest.get("external_path"))


class FlinkRest:
    """The REST API of one Flink cluster (JobManager).

    Args:
        master: ``HOST:PORT`` or ``http(s)://HOST:PORT`` of the REST endpoint.
        timeout: seconds per request.
    """

    def __init__(self, master: str, timeout: float = 10.0) -> None:
        self.url = rest_url(master)
        self._timeout = timeout
        self._session = requests.Session()

    def _call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        url = self.url + path
        what = f"{method} {url}" + (f"?{urlencode(params)}" if params else "")
        try:
            response = self._session.request(method, url, json=body, params=params, timeout=self._timeout)
        except requests.ConnectionError as exc:
            raise RuntimeError(f"flink REST {what}: cannot connect ({_reason(exc)})") from None
        except requests.Timeout:
            raise RuntimeError(f"flink REST {what}: no answer within {self._timeout:g} s") from None
        except requests.RequestException as exc:
            raise RuntimeError(f"flink REST {what}: {exc}") from None
        if response.status_code >= 400:
            raise RuntimeError(f"flink REST {what}: {error_detail(response.status_code, response.text)}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise RuntimeError(f"flink REST {what}: not JSON: {response.text[:200]!r}") from None

    def _parse(self, what: str, parse: Any, body: Any) -> Any:
        try:
            return parse(body)
        except (ValueError, TypeError) as exc:
            raise RuntimeError(f"flink REST {what}: unexpected answer: {exc}") from None

    def overview(self) -> dict[str, Any]:
        """The cluster overview: TaskManagers, slots, Flink version, job counts."""
        body = self._call("GET", "/overview")
        self._parse("GET /overview", lambda b: _field(b, "flink-version"), body)
        return dict(body)

    def jobs(self) -> list[FlinkJob]:
        """Every job the cluster knows, newest first."""
        return self._parse("GET /jobs/overview", parse_jobs, self._call("GET", "/jobs/overview"))

    def job(self, job_id: str) -> FlinkJob:
        """One job's state."""
        check_job_id(job_id)
        body = self._call("GET", f"/jobs/{job_id}")
        return self._parse(f"GET /jobs/{job_id}", lambda b: FlinkJob(
            str(_field(b, "jid")), str(_field(b, "name")), str(_field(b, "state")), int(_field(b, "start-time"))), body)

    def checkpoints(self, job_id: str) -> CheckpointStats:
        """A job's checkpoint counters."""
        check_job_id(job_id)
        body = self._call("GET", f"/jobs/{job_id}/checkpoints")
        return self._parse(f"GET /jobs/{job_id}/checkpoints", parse_checkpoints, body)

    def root_exception(self, job_id: str) -> str | None:
        """The first line of the job's latest failure, if it had one."""
        check_job_id(job_id)
        body = self._call("GET", f"/jobs/{job_id}/exceptions")
        text = (body or {}).get("root-exception") or ""
        return text.strip().splitlines()[0] if text.strip() else None

    def wait_for_state(self, job_id: str, states: set[str] | frozenset[str], timeout: float) -> FlinkJob:
        """Polls the job until it is in one of ``states``.

        Raises:
            RuntimeError: if it ends in another state first (with its failure), or on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.state in states:
                return job
            if job.state in TERMINAL_STATES:
                cause = self.root_exception(job_id)
                raise RuntimeError(f"flink job {job_id} is {job.state}" + (f": {cause}" if cause else ""))
            if time.monotonic() > deadline:
                raise RuntimeError(f"flink job {job_id} is {job.state}, not {'/'.join(sorted(states))}, "
                                   f"after {timeout:g} s")
            time.sleep(0.5)

    def stop_with_savepoint(self, job_id: str, directory: str | None = None, drain: bool = False,
                            timeout: float = 600.0) -> str:
        """Stops the job with a savepoint (sources stop first, then state is saved); returns
        the savepoint's path. Without ``directory`` the cluster's ``state.savepoints.dir``.

        ``drain`` advances the watermark to the end, firing every window: only for a job
        that will not be resumed.
        """
        check_job_id(job_id)
        body: dict[str, Any] = {"drain": drain}
        if directory:
            body["targetDirectory"] = directory
        trigger = self._call("POST", f"/jobs/{job_id}/stop", body)
        return self._await_savepoint(job_id, trigger, f"POST /jobs/{job_id}/stop", timeout)

    def savepoint(self, job_id: str, directory: str | None = None, cancel: bool = False,
                  timeout: float = 600.0) -> str:
        """Takes a savepoint (and cancels the job if ``cancel``); returns its path."""
        check_job_id(job_id)
        body: dict[str, Any] = {"cancel-job": cancel}
        if directory:
            body["target-directory"] = directory
        trigger = self._call("POST", f"/jobs/{job_id}/savepoints", body)
        return self._await_savepoint(job_id, trigger, f"POST /jobs/{job_id}/savepoints", timeout)

    def _await_savepoint(self, job_id: str, trigger: Any, what: str, timeout: float) -> str:
        request_id = self._parse(what, lambda b: str(_field(b, "request-id")), trigger)
        path = f"/jobs/{job_id}/savepoints/{request_id}"
        deadline = time.monotonic() + timeout
        while True:
            body = self._call("GET", path)
            try:
                status, location = parse_operation(body)
            except (ValueError, TypeError) as exc:
                raise RuntimeError(f"flink REST GET {self.url}{path}: unexpected answer: {exc}") from None
            except RuntimeError as exc:
                raise RuntimeError(f"flink savepoint of job {job_id} failed: {exc}") from None
            if location is not None:
                return location
            if time.monotonic() > deadline:
                raise RuntimeError(f"flink savepoint of job {job_id}: still {status} after {timeout:g} s")
            time.sleep(0.5)

    def cancel(self, job_id: str) -> None:
        """Cancels the job without a savepoint."""
        check_job_id(job_id)
        self._call("PATCH", f"/jobs/{job_id}", params={"mode": "cancel"})


def _reason(exc: Exception) -> str:
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    return match.group(1) if match else text[:200]
