"""Prometheus metrics shared by all services, and the /metrics, /healthz, /readyz endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

MESSAGES_PROCESSED = Counter(
    "mtv_messages_processed_total", "Messages handled successfully", ["service", "topic"]
)
DEAD_LETTERED = Counter(
    "mtv_messages_dead_lettered_total", "Messages sent to the dead-letter topic", ["service", "topic", "reason"]
)
CONSUMER_LAG = Gauge(
    "mtv_consumer_lag_messages", "Messages not yet consumed per assigned partition (high watermark - position)",
    ["service", "topic", "partition"],
)
# Migration metrics; each is set by the service that owns the fact (planner, transfer).
MIGRATIONS = Counter("mtv_migrations_total", "VM migrations that ended, by final status", ["status"])
VMS_IN_FLIGHT = Gauge("mtv_vms_in_flight", "VMs currently migrating (not queued, not finished)")
DISK_TRANSFER_BYTES = Counter(
    "mtv_disk_transfer_bytes_total", "Logical disk bytes handled by transfer workers", ["result"]
)
DISK_TRANSFER_THROUGHPUT = Gauge(
    "mtv_disk_transfer_throughput_bytes", "Current copy rate of this worker in bytes per second"
)
TRANSFER_HANDOFFS = Counter(
    "mtv_transfer_handoffs_total", "Waiting disk requests this busy worker handed to an idle peer"
)


class HealthServer:
    """Serves /metrics (Prometheus), /healthz (process alive) and /readyz (`ready()` is true)."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 — http.server's naming
                if self.path.startswith("/metrics"):
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif self.path.startswith("/healthz"):
                    self._send(200, b'{"status":"ok"}', "application/json")
                elif self.path.startswith("/readyz"):
                    ok = outer.ready()
                    body = json.dumps({"status": "ready" if ok else "not ready"}).encode()
                    self._send(200 if ok else 503, body, "application/json")
                else:
                    self._send(404, b"not found", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # probes every few seconds would drown the service's own logs

        self.ready = ready
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
