"""Each service process starts, connects, reports ready, dead-letters what it cannot handle,
and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixtures.dlq import find_dlq
from mtv import topics
from mtv.bus import Publisher, admin, dlq
from mtv.devstack.process import free_port

SERVICES = {
    "inventory": topics.PROVIDER_COMMANDS,
    "planner": topics.PLAN_APPROVALS,
    "transfer": topics.TRANSFER_REQUESTS,
    "converter": topics.TARGET_REQUESTS,
}


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"service exited early:\n{proc.stderr.read().decode()[-3000:]}"
        if _get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
            return
        time.sleep(0.3)
    raise AssertionError("service did not become ready")


@pytest.mark.kafka
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_lifecycle(service: str, kafka_bootstrap: str) -> None:
    admin.ensure_topics(kafka_bootstrap)
    port = free_port()
    env = {**os.environ, "MTV_KAFKA_BOOTSTRAP": kafka_bootstrap, "MTV_HTTP_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", f"mtv.{service}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_ready(proc, port)
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200

        # Something the service cannot read goes to the DLQ with its name; the service keeps running.
        key = f"garbage-{uuid.uuid4()}".encode()
        publisher = Publisher(kafka_bootstrap, "test")
        publisher.publish_raw(SERVICES[service].name, key, b"\x08\x96\x01 definitely not an Event")
        publisher.flush()
        dead = find_dlq(kafka_bootstrap, key, timeout=90)
        headers = dlq.headers_dict(dead)
        assert headers[dlq.CONSUMER] == service
        assert headers[dlq.ORIGIN_TOPIC] == SERVICES[service].name
        assert headers[dlq.ERROR_REASON] in ("invalid_protobuf", "unknown_type", "missing_fields")
        assert proc.poll() is None

        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        dead_lettered = {
            (s.labels["service"], s.labels["reason"]): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
            if s.name == "mtv_messages_dead_lettered_total"
        }
        assert dead_lettered[(service, headers[dlq.ERROR_REASON])] >= 1

        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        logs = proc.stderr.read().decode()
        assert code == 0, logs[-3000:]
        lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        assert any(line["service"] == service and "stopped" in line["msg"] for line in lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()



def test_missing_setting_refuses_to_start_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTV_")}
    proc = subprocess.run([sys.executable, "-m", "mtv.transfer"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert "MTV_KAFKA_BOOTSTRAP: not set" in proc.stderr
    assert "Traceback" not in proc.stderr
