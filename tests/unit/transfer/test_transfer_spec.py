"""Request validation, checkpoints and the resume decision."""

from __future__ import annotations

import pytest

from mtv.transfer.checkpoint import Checkpoint, Start, decide
from mtv.transfer.errors import InvalidRequest
from mtv.transfer.spec import FileSinkSpec, TransferSpec, VsphereFile, from_proto
from mtv.v1 import transfer_pb2


def _request(**kw: object) -> transfer_pb2.DiskTransferRequested:
    req = transfer_pb2.DiskTransferRequested(transfer_id="plan/vm-1/2000", plan_id="plan", vm_id="vm-1",
                                             disk_key=2000, size_bytes=64 << 20, attempt=1)
    v = req.source.vsphere
    v.provider_id, v.datacenter_path, v.datastore_name, v.path = "p1", "DC0", "LocalDS_0", "vm 1/disk1-flat.vmdk"
    req.sink.file.path = "/var/lib/mtv/disk.raw"
    for name, value in kw.items():
        setattr(req, name, value)
    return req


def test_a_valid_request_becomes_a_spec() -> None:
    spec = from_proto(_request())
    assert spec.source == VsphereFile("p1", "DC0", "LocalDS_0", "vm 1/disk1-flat.vmdk")
    assert spec.sink == FileSinkSpec("/var/lib/mtv/disk.raw")
    assert spec.source.folder_url_path() == "/folder/vm%201/disk1-flat.vmdk?dcPath=DC0&dsName=LocalDS_0"


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.ClearField("source"), "source is not set"),
    (lambda r: r.ClearField("sink"), "sink is not set"),
    (lambda r: setattr(r, "size_bytes", 0), "size_bytes"),
    (lambda r: setattr(r.source.vsphere, "datastore_name", ""), "datastore_name"),
    (lambda r: setattr(r.sink.file, "path", "relative.raw"), "absolute"),
    (lambda r: r.sink.cdi_upload.SetInParent() or setattr(r.sink.cdi_upload, "url", "http://x/upload"), "https"),
])
def test_invalid_requests_name_the_field(change: object, message: str) -> None:
    req = _request()
    change(req)  # type: ignore[operator]
    with pytest.raises(InvalidRequest, match=message):
        from_proto(req)


def test_fingerprint_changes_with_source_sink_or_size_only() -> None:
    spec = from_proto(_request())
    assert from_proto(_request(attempt=2)).fingerprint() == spec.fingerprint()
    assert from_proto(_request(size_bytes=1 << 30)).fingerprint() != spec.fingerprint()
    other = _request()
    other.sink.file.path = "/elsewhere.raw"
    assert from_proto(other).fingerprint() != spec.fingerprint()


def _cp(spec: TransferSpec, **kw: object) -> Checkpoint:
    base: dict[str, object] = dict(transfer_id=spec.transfer_id, offset=8 << 20, bytes_written=1, bytes_holes=2,
                                   prefix_sha256="ab" * 32, bytes_total=spec.size, fingerprint=spec.fingerprint(),
                                   attempt=1, worker="w1")
    return Checkpoint(**{**base, **kw})  # type: ignore[arg-type]


def test_resume_decision() -> None:
    spec = from_proto(_request())
    assert decide(spec, None, True)[0] is Start.FRESH
    assert decide(spec, _cp(spec), True)[0] is Start.RESUME
    assert decide(spec, _cp(spec), False)[0] is Start.FRESH  # an upload stream cannot resume
    assert decide(spec, _cp(spec, fingerprint="other"), True)[0] is Start.FRESH
    assert decide(spec, _cp(spec, offset=0), True)[0] is Start.FRESH
    assert decide(spec, _cp(spec, done=True, sha256="cd" * 32), True)[0] is Start.DUPLICATE
    retry = from_proto(_request(attempt=2))
    assert decide(retry, _cp(spec, done=True), True)[0] is Start.FRESH  # a new attempt after completion
    assert decide(retry, _cp(spec), True)[0] is Start.RESUME  # a retry of a failed attempt resumes


def test_checkpoint_round_trips_through_protobuf() -> None:
    spec = from_proto(_request())
    cp = _cp(spec, done=True, sha256="ef" * 32, chunk_size=8 << 20)
    assert Checkpoint.from_proto(transfer_pb2.TransferCheckpoint.FromString(cp.to_proto().SerializeToString())) == cp
