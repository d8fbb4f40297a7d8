"""Transfer workers against a real broker and the vSphere simulator: byte-identical sparse copies,
every kind of bad input answered with a reason while the worker keeps serving, the CDI upload sink,
and duplicates.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.cdi_upload import CdiUploadServer
from fixtures.dlq import find_dlq
from fixtures.transfer import Pool, allocated, datastore_file, file_sha256, sim_disks
from mtv.bus import dlq
from mtv.devstack.vsphere_sim import SimHandle
from mtv.v1 import transfer_pb2

pytest_plugins = ["fixtures.vsphere", "fixtures.transfer_fixtures"]
pytestmark = [pytest.mark.kafka, pytest.mark.vsphere]


def _close_to(actual: int, expected: int) -> bool:
    """Allocated sizes match up to filesystem rounding (a few blocks) and 2 %."""
    return abs(actual - expected) <= max(256 << 10, expected // 50)


def test_vsphere_disks_are_copied_byte_identical_and_sparse(pool: Pool, vsphere_sim: SimHandle,
                                                            tmp_path: Path) -> None:
    provider = pool.add_provider(vsphere_sim)
    worker = pool.start_worker("w1").wait_ready()
    disks = sim_disks(vsphere_sim)[:3]
    for i, disk in enumerate(disks):
        pool.send(pool.request(f"plan/vm{i}/{disk['key']}", disk, str(tmp_path / f"out/disk{i}.raw"),
                               disk["size"], provider=provider))
    for i, disk in enumerate(disks):
        done = pool.recorder.result(f"plan/vm{i}/{disk['key']}")
        assert isinstance(done, transfer_pb2.DiskTransferCompleted), done
        target = tmp_path / f"out/disk{i}.raw"
        assert done.sha256 == disk["sha256"] == file_sha256(target)
        assert filecmp.cmp(target, datastore_file(vsphere_sim, disk), shallow=False)
        assert target.stat().st_size == disk["size"]
        assert _close_to(allocated(target), disk["allocated"]), (allocated(target), disk["allocated"])
        assert done.bytes_written + done.bytes_holes == done.bytes_total == disk["size"]
        assert _close_to(done.bytes_written, disk["allocated"])
        assert done.bytes_read == disk["size"]  # /folder has no allocation map: zeros travel too
        assert done.worker == "w1" and done.resumed_from == 0
    assert worker.proc.poll() is None


def test_local_file_source_skips_holes(pool: Pool, vsphere_sim: SimHandle, tmp_path: Path) -> None:
    disk = sim_disks(vsphere_sim)[0]
    source = datastore_file(vsphere_sim, disk)
    pool.start_worker("w1").wait_ready()
    pool.send(pool.request("plan/local/1", str(source), str(tmp_path / "local.raw"), disk["size"]))
    done = pool.recorder.result("plan/local/1")
    assert isinstance(done, transfer_pb2.DiskTransferCompleted), done
    assert done.sha256 == disk["sha256"]
    assert filecmp.cmp(tmp_path / "local.raw", source, shallow=False)
    assert _close_to(allocated(tmp_path / "local.raw"), allocated(source))
    # SEEK_DATA/SEEK_HOLE: only the allocated extents are read.
    assert done.bytes_read <= allocated(source)


@contextlib.contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def _failed(pool: Pool, transfer_id: str) -> transfer_pb2.DiskTransferFailed:
    result = pool.recorder.result(transfer_id)
    assert isinstance(result, transfer_pb2.DiskTransferFailed), result
    return result


@pytest.mark.skipif(os.geteuid() != 0, reason="a tiny tmpfs (ENOSPC) and a read-only mount need root")
def test_bad_input_fails_with_an_actionable_reason_and_the_worker_keeps_serving(
    pool: Pool, vsphere_sim: SimHandle, tmp_path: Path
) -> None:
    good = pool.add_provider(vsphere_sim)
    wrong_password = pool.add_provider(vsphere_sim, name="sim-wrong-password", password="not-the-password")
    wrong_pin = pool.add_provider(vsphere_sim, name="sim-wrong-pin", thumbprint=":".join(["AB"] * 32))
    worker = pool.start_worker("w1").wait_ready()
    disk = sim_disks(vsphere_sim)[0]
    out = str(tmp_path / "ok.raw")

    missing = disk | {"flat_path": "no-such-vm/disk1-flat.vmdk"}
    pool.send(pool.request("p/missing/1", missing, out, disk["size"], provider=good))
    failed = _failed(pool, "p/missing/1")
    assert (failed.code, failed.retryable) == ("source_not_found", False)
    assert "no-such-vm/disk1-flat.vmdk" in failed.reason and "was not found" in failed.reason

    pool.send(pool.request("p/auth/1", disk, out, disk["size"], provider=wrong_password))
    failed = _failed(pool, "p/auth/1")
    assert (failed.code, failed.retryable) == ("source_auth_failed", False)
    assert "sim-wrong-password" in failed.reason and "password" in failed.reason

    pool.send(pool.request("p/pin/1", disk, out, disk["size"], provider=wrong_pin))
    failed = _failed(pool, "p/pin/1")
    assert failed.code == "source_tls_failed" and "thumbprint" in failed.reason

    with _tmpfs(tmp_path / "tiny", "size=1m") as tiny:
        pool.send(pool.request("p/nospace/1", disk, str(tiny / "disk.raw"), disk["size"], provider=good))
        failed = _failed(pool, "p/nospace/1")
    assert failed.code == "sink_no_space" and "no space left" in failed.reason and "tiny" in failed.reason

    with _tmpfs(tmp_path / "readonly", "size=1m,ro") as readonly:
        pool.send(pool.request("p/readonly/1", disk, str(readonly / "disk.raw"), disk["size"], provider=good))
        failed = _failed(pool, "p/readonly/1")
    assert failed.code == "sink_not_writable" and "readonly/disk.raw" in failed.reason

    no_source = pool.request("p/nosource/1", disk, out, disk["size"], provider=good)
    no_source.ClearField("source")
    pool.send(no_source)
    failed = _failed(pool, "p/nosource/1")
    assert failed.code == "invalid_request" and "source" in failed.reason

    garbage_key = f"garbage-{uuid.uuid4()}".encode()
    pool.publisher.publish_raw(pool.topics.requests.name, garbage_key, b"\x08\x96\x01 not an Event")
    pool.publisher.flush()

    # After all that, the same worker still copies a disk.
    pool.send(pool.request("p/ok/1", disk, out, disk["size"], provider=good))
    done = pool.recorder.result("p/ok/1")
    assert isinstance(done, transfer_pb2.DiskTransferCompleted) and done.sha256 == disk["sha256"]
    assert worker.proc.poll() is None

    headers = dlq.headers_dict(find_dlq(pool.bootstrap, garbage_key))
    assert headers[dlq.CONSUMER] == "transfer"
    assert headers[dlq.ORIGIN_TOPIC] == pool.topics.requests.name
    assert headers[dlq.ERROR_REASON] == "invalid_protobuf"

    # Secrets never reach logs or events.
    text = worker.log.read_text() + "".join(str(s.payload) for s in pool.recorder.seen)
    assert vsphere_sim.password not in text and "vmware_soap_session" not in text



def test_cdi_upload_sink_streams_the_disk(pool: Pool, vsphere_sim: SimHandle, cdi_upload: CdiUploadServer) -> None:
    provider = pool.add_provider(vsphere_sim)
    (pool.secrets / "upload-token-vm1").write_text(cdi_upload.token)
    pool.start_worker("w1").wait_ready()
    disk = sim_disks(vsphere_sim)[1]
    sink = {"url": cdi_upload.url, "token_ref": "upload-token-vm1", "namespace": "ns", "pvc_name": "vm1-disk",
            "ca_pem": cdi_upload.ca_pem}
    pool.send(pool.request("p/cdi/1", disk, sink, disk["size"], provider=provider))
    done = pool.recorder.result("p/cdi/1")
    assert isinstance(done, transfer_pb2.DiskTransferCompleted), done
    assert done.sha256 == disk["sha256"]
    assert [(u.status, u.bytes, u.sha256) for u in cdi_upload.uploads] == [(200, disk["size"], disk["sha256"])]
    assert filecmp.cmp(cdi_upload.stored, datastore_file(vsphere_sim, disk), shallow=False)

    # A wrong token is refused by the proxy: the reason names the secret, never the token.
    (pool.secrets / "stale-token").write_text("expired-token-value")
    pool.send(pool.request("p/cdi/2", disk, sink | {"token_ref": "stale-token"}, disk["size"], provider=provider))
    failed = _failed(pool, "p/cdi/2")
    assert failed.code == "sink_rejected" and "stale-token" in failed.reason
    assert "expired-token-value" not in failed.reason
    # No CA given: the proxy's self-signed certificate is not trusted.
    pool.send(pool.request("p/cdi/3", disk, sink | {"ca_pem": ""}, disk["size"], provider=provider))
    failed = _failed(pool, "p/cdi/3")
    assert failed.code == "sink_rejected" and "ca_pem" in failed.reason


def test_duplicate_request_is_acknowledged_without_a_second_copy(pool: Pool, vsphere_sim: SimHandle,
                                                                tmp_path: Path) -> None:
    provider = pool.add_provider(vsphere_sim)
    w1 = pool.start_worker("w1").wait_ready()
    w2 = pool.start_worker("w2").wait_ready()
    disk = sim_disks(vsphere_sim)[2]
    request = pool.request("p/dup/1", disk, str(tmp_path / "dup.raw"), disk["size"], provider=provider)
    pool.send(request)
    pool.send(request)  # the planner retried its publish
    done = pool.recorder.result("p/dup/1")
    assert isinstance(done, transfer_pb2.DiskTransferCompleted)
    # The duplicate is handled (logged) by the same worker, after the first finished.
    deadline = time.monotonic() + 30
    while "duplicate" not in w1.log.read_text() + w2.log.read_text():
        assert time.monotonic() < deadline, "the duplicate was never handled"
        time.sleep(0.2)
    time.sleep(1.0)
    assert len(pool.recorder.results("p/dup/1")) == 1
    connecting = [p for p in pool.recorder.of("disk_transfer_progress", "p/dup/1")
                  if p.phase == transfer_pb2.TRANSFER_PHASE_CONNECTING]
    assert len(connecting) == 1, "the disk was started once"

    # A new attempt after a completed one copies again (e.g. the target was deleted).
    retry = transfer_pb2.DiskTransferRequested()
    retry.CopyFrom(request)
    retry.attempt = 2
    pool.send(retry)
    pool.recorder.wait(lambda: len(pool.recorder.results("p/dup/1")) == 2, what="the second attempt")
