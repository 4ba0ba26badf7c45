"""Real Prometheus, Alertmanager and Elasticsearch for tests, started by the project's scripts,
and the local receivers Alertmanager notifies (a webhook server and an SMTP sink).

The test services listen on their own ports (29090, 29094, 29200, plus
``AMPEL_TEST_PORT_OFFSET`` when set, so that two test runs can share a machine) so that
a local stack (``make obs-up es-up``) can run beside them. All test ports lie below
Linux's ephemeral range (32768-60999): a client connection's local port there once took
the broker's port just before the broker bound it; the receivers listen where
``deploy/alertmanager/alertmanager.yml`` sends: 127.0.0.1:19101 (HTTP) and :19025 (SMTP).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("AMPEL_CACHE", Path.home() / ".cache" / "ampel-monitor"))
#: Added to every test service port (not to the receivers, whose ports the Alertmanager config names).
PORT_OFFSET = int(os.environ.get("AMPEL_TEST_PORT_OFFSET", "0"))
PROM_PORT, AM_PORT, ES_PORT, ES_TRANSPORT_PORT = (p + PORT_OFFSET for p in (29090, 29094, 29200, 29300))
WEBHOOK_PORT, SMTP_PORT = 19101, 19025


def script(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Runs ``scripts/<name>``; raises with its stderr if it fails."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, check=False, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/{name} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def http_json(method: str, url: str, body: Any = None, timeout: float = 10) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read()
    return json.loads(text) if text else None


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition") -> Any:
    """Polls ``predicate`` until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (OSError, urllib.error.URLError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Observability:
    """Prometheus and Alertmanager, started with the configs of ``deploy/``."""

    def __init__(self, data: Path) -> None:
        self.env = {"PROM_PORT": str(PROM_PORT), "AM_PORT": str(AM_PORT),
                    "PROM_DATA": str(data / "prometheus"), "AM_DATA": str(data / "alertmanager")}
        self.prometheus = f"http://127.0.0.1:{PROM_PORT}"
        self.alertmanager = f"http://127.0.0.1:{AM_PORT}"

    def start(self) -> None:
        script("observability.sh", "install", env=self.env)
        script("observability.sh", "start", env=self.env)
        script("observability.sh", "wait", env=self.env)

    def stop(self, wipe: bool = False) -> None:
        script("observability.sh", "stop", *(["--wipe"] if wipe else []), env=self.env)

    def _stop_one(self, name: str) -> None:
        pidfile = Path(self.env["PROM_DATA" if name == "prometheus" else "AM_DATA"]) / f"{name}.pid"
        pid = int(pidfile.read_text())
        os.kill(pid, 15)
        wait_for(lambda: not _alive(pid), 30, what=f"{name} to stop")
        pidfile.unlink()

    def stop_prometheus(self) -> None:
        self._stop_one("prometheus")

    def stop_alertmanager(self) -> None:
        self._stop_one("alertmanager")

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant PromQL query; the result vector."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode(params)
        return http_json("GET", url)["data"]["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        url = f"{self.prometheus}/api/v1/query_range?" + urllib.parse.urlencode(params)
        return http_json("GET", url)["data"]["result"]

    def am_alerts(self) -> list[dict[str, Any]]:
        return http_json("GET", f"{self.alertmanager}/api/v2/alerts?active=true&silenced=true&inhibited=true")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child still answers kill 0; its state says it is gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class Elasticsearch:
    """A single Elasticsearch node (or OpenSearch with ``dist='opensearch'``)."""

    def __init__(self, dist: str = "elasticsearch", port: int = ES_PORT, transport_port: int = ES_TRANSPORT_PORT) -> None:
        # the node runs as its own user, which reaches the cache but not pytest's tmp dirs
        self.env = {"ES_DIST": dist, "ES_PORT": str(port), "ES_TRANSPORT_PORT": str(transport_port),
                    "ES_DATA": str(CACHE / f"test-{dist}-data{f'-{PORT_OFFSET}' if PORT_OFFSET else ''}")}
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        script("elasticsearch.sh", "start", env=self.env)
        script("elasticsearch.sh", "wait", env=self.env)

    def stop(self, wipe: bool = False) -> None:
        script("elasticsearch.sh", "stop", *(["--wipe"] if wipe else []), env=self.env)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        return http_json(method, self.url + path, body)

    def search(self, index: str, size: int = 10000, query: dict | None = None) -> list[dict[str, Any]]:
        """Every matching hit (after a refresh)."""
        self.request("POST", f"/{index}/_refresh")
        body = {"size": size, "query": query or {"match_all": {}}}
        return self.request("POST", f"/{index}/_search", body)["hits"]["hits"]


class _Webhook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append((self.path, json.loads(body or b"null")))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


class Receivers:
    """What Alertmanager's receivers got: webhook POSTs by path, and e-mails."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.http = ThreadingHTTPServer(("127.0.0.1", WEBHOOK_PORT), _Webhook)
        self.http.received = []  # type: ignore[attr-defined]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.mails: list[Message] = []
        receivers = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
                receivers.mails.append(message_from_bytes(envelope.content))
                return "250 OK"

        self.smtp = Controller(Handler(), hostname="127.0.0.1", port=SMTP_PORT)
        self.smtp.start()

    def posts(self, path: str) -> list[Any]:
        return [body for p, body in list(self.http.received) if p == path]  # type: ignore[attr-defined]

    def clear(self) -> None:
        self.http.received.clear()  # type: ignore[attr-defined]
        self.mails.clear()

    def close(self) -> None:
        self.http.shutdown()
        self.smtp.stop()
