"""The Flink REST client's parsing and error messages, and the submit/jobs/cancel commands'
argument checks (the real cluster: tests/kafka/test_flink_cluster_it.py)."""

from __future__ import annotations

import socket

import pytest
import yaml

from ampel_monitor.cli import main
from ampel_monitor.flink import (
    CheckpointStats,
    FlinkJob,
    FlinkRest,
    check_job_id,
    error_detail,
    parse_checkpoints,
    parse_jobs,
    parse_operation,
    rest_url,
)
from tests.pipeline.streams import write_setup

JOB = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("master, url", [
    ("127.0.0.1:8081", "http://127.0.0.1:8081"),
    (" flink.example:443 ", "http://flink.example:443"),
    ("https://flink.example:8443/", "https://flink.example:8443"),
    ("http://[::1]:8081", "http://[::1]:8081"),
])
def test_rest_url(master, url):
    assert rest_url(master) == url


@pytest.mark.parametrize("master", ["", "  ", "ftp://x:1", "host:port/extra path", "a b:1"])
def test_rest_url_rejects_what_is_not_an_address(master):
    with pytest.raises(ValueError, match="flink master must be HOST:PORT"):
        rest_url(master)


@pytest.mark.parametrize("job", ["", "abc", JOB.upper(), JOB + "0", JOB[:-1] + "g"])
def test_job_ids_are_32_hex_digits(job):
    with pytest.raises(ValueError, match=f"32 hex digits, got {job!r}"):
        check_job_id(job)
    assert check_job_id(JOB) == JOB


def test_jobs_newest_first():
    body = {"jobs": [
        {"jid": "a" * 32, "name": "old", "state": "FINISHED", "start-time": 10, "end-time": 20, "tasks": {}},
        {"jid": "b" * 32, "name": "new", "state": "RUNNING", "start-time": 30, "end-time": -1},
    ]}
    assert parse_jobs(body) == [FlinkJob("b" * 32, "new", "RUNNING", 30), FlinkJob("a" * 32, "old", "FINISHED", 10)]
    assert parse_jobs({"jobs": []}) == []


@pytest.mark.parametrize("body, field", [
    ({}, "'jobs'"),
    ({"jobs": [{"jid": "a", "name": "n", "start-time": 1}]}, "'state'"),
    ([], "'jobs'"),
])
def test_jobs_answer_without_a_field_names_it(body, field):
    with pytest.raises(ValueError, match=f"no {field}"):
        parse_jobs(body)


def test_savepoint_operation_states():
    assert parse_operation({"status": {"id": "IN_PROGRESS"}}) == ("IN_PROGRESS", None)
    done = {"status": {"id": "COMPLETED"}, "operation": {"location": "file:/sp/savepoint-01"}}
    assert parse_operation(done) == ("COMPLETED", "file:/sp/savepoint-01")


def test_failed_savepoint_reports_the_first_line_and_the_root_cause():
    trace = ("java.util.concurrent.CompletionException: org.apache.flink.runtime.checkpoint.CheckpointException: "
             "Checkpoint Coordinator is suspending.\n\tat java.base/Thread.run(Thread.java:840)\n"
             "Caused by: org.apache.flink.runtime.checkpoint.CheckpointException: Checkpoint Coordinator is "
             "suspending.\n\t... 3 more\nCaused by: java.io.IOException: No space left on device\n")
    failed = {"status": {"id": "COMPLETED"}, "operation": {"failure-cause": {"class": "x", "stack-trace": trace}}}
    with pytest.raises(RuntimeError) as raised:
        parse_operation(failed)
    assert str(raised.value) == ("java.util.concurrent.CompletionException: org.apache.flink.runtime.checkpoint."
                                 "CheckpointException: Checkpoint Coordinator is suspending. "
                                 "(Caused by: java.io.IOException: No space left on device)")


def test_checkpoint_counters():
    body = {"counts": {"restored": 1, "total": 5, "in_progress": 0, "completed": 4, "failed": 1},
            "latest": {"completed": {"id": 5, "external_path": "file:/cp/job/chk-5"}, "restored": {"id": 2}}}
    assert parse_checkpoints(body) == CheckpointStats(4, 1, 1, "file:/cp/job/chk-5")
    empty = {"counts": {"restored": 0, "total": 0, "in_progress": 0, "completed": 0, "failed": 0},
             "latest": {"completed": None, "savepoint": None, "failed": None, "restored": None}}
    assert parse_checkpoints(empty) == CheckpointStats(0, 0, 0, None)
    with pytest.raises(ValueError, match="no 'counts.completed'"):
        parse_checkpoints({"counts": {"failed": 0, "restored": 0}})


def test_error_detail_keeps_flinks_errors_first_lines():
    body = '{"errors": ["org.apache.flink.runtime.rest.NotFoundException: Job 01 not found\\n\\tat x", "second"]}'
    assert error_detail(404, body) == "HTTP 404: org.apache.flink.runtime.rest.NotFoundException: Job 01 not found; second"
    assert error_detail(500, "") == "HTTP 500: "
    assert error_detail(400, '{"errors": []}') == 'HTTP 400: {"errors": []}'


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_cluster_names_the_request():
    port = _closed_port()
    rest = FlinkRest(f"127.0.0.1:{port}", timeout=2)
    with pytest.raises(RuntimeError, match=rf"^flink REST GET http://127.0.0.1:{port}/jobs/overview: cannot connect "
                                           r"\(Connection refused\)"):
        rest.jobs()
    with pytest.raises(ValueError, match="32 hex digits"):
        rest.cancel("not-a-job")


def test_commands_name_what_is_wrong(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AMPEL_FLINK_MASTER", raising=False)
    monkeypatch.delenv("AMPEL_FLINK_JOB_SERVER_JAR", raising=False)
    config = write_setup(tmp_path, [], {"size": "10s", "slide": "10s"})
    jar = tmp_path / "job-server.jar"
    jar.write_bytes(b"PK")
    port = _closed_port()

    def fails(args: list[str], status: int, message: str) -> None:
        assert main(args) == status
        assert message in capsys.readouterr().err

    fails(["jobs"], 2, "--flink-master: give the Flink REST address")
    fails(["jobs", "--flink-master", f"127.0.0.1:{port}"], 1,
          f"error: flink REST GET http://127.0.0.1:{port}/jobs/overview: cannot connect")
    fails(["cancel", "nope", "--flink-master", "127.0.0.1:1"], 2, "a Flink job id is 32 hex digits, got 'nope'")
    fails(["cancel", JOB, "--flink-master", "127.0.0.1:1", "--drain"], 2, "--drain applies with --savepoint")
    base = ["submit", "--flink-master", f"127.0.0.1:{port}", "--config", str(config)]
    fails(base, 2, "--job-server-jar: give the Beam Flink job-server jar")
    fails([*base, "--job-server-jar", str(tmp_path / "missing.jar")], 2, "job_server_jar: no such file")
    fails([*base, "--job-server-jar", str(jar), "--worker-pool", "nowhere"], 2,
          "worker_pool: expected HOST:PORT, got 'nowhere'")
    fails([*base, "--job-server-jar", str(jar), "--parallelism", "0"], 2, "parallelism: must be >= 1, got 0")
    fails([*base, "--job-server-jar", str(jar), "--checkpoint-interval", "soon"], 2,
          "--checkpoint-interval: expected a duration")
    fails([*base, "--job-server-jar", str(jar)], 2, "kafka: submit needs a kafka section in the config")
    document = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**document, "kafka": {"bootstrap": "127.0.0.1:1"}}))
    fails([*base, "--job-server-jar", str(jar)], 1,
          f"error: flink REST GET http://127.0.0.1:{port}/overview: cannot connect")


def test_the_rest_client_does_not_import_beam():
    import subprocess
    import sys

    code = "import sys, ampel_monitor.flink\nassert 'apache_beam' not in sys.modules\n"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
