"""Every way a message can be unusable is named, so the DLQ says why."""

from __future__ import annotations

import pytest

from mtv import events
from mtv.bus.codec import CodecError, decode, encode
from mtv.v1 import event_pb2, transfer_pb2


def _good() -> event_pb2.Event:
    return events.make(
        transfer_pb2.DiskTransferCompleted(transfer_id="p/v/1", sha256="ab" * 32), source="transfer"
    )


def _reason(data: bytes | None, **kw: int) -> str:
    with pytest.raises(CodecError) as info:
        decode(data, **kw)
    return info.value.reason


def test_good_message_decodes() -> None:
    assert decode(encode(_good())).disk_transfer_completed.sha256 == "ab" * 32


def test_empty_and_tombstone() -> None:
    assert _reason(b"") == "empty"
    assert _reason(None) == "empty"


def test_not_protobuf() -> None:
    assert _reason(b"\xff\xff\xff\xff garbage") == "invalid_protobuf"


def test_too_large() -> None:
    assert _reason(encode(_good()), max_bytes=10) == "too_large"


def test_unknown_payload_from_a_newer_producer() -> None:
    event = _good()
    event.ClearField("disk_transfer_completed")
    # Field 999, length-delimited, 3 bytes: a payload this consumer was not built with.
    data = encode(event) + b"\xba\x3e\x03abc"
    with pytest.raises(CodecError) as info:
        decode(data)
    assert info.value.reason == "unknown_type"
    assert "DiskTransferCompleted" in str(info.value)  # the envelope still names the type


def test_type_mismatch() -> None:
    event = _good()
    event.envelope.type = "mtv.v1.DiskTransferFailed"
    assert _reason(encode(event)) == "type_mismatch"


def test_schema_too_new() -> None:
    event = _good()
    event.envelope.schema_version = events.SCHEMA_VERSION + 1
    assert _reason(encode(event)) == "schema_too_new"


def test_missing_required_payload_field_is_named() -> None:
    event = _good()
    event.disk_transfer_completed.sha256 = ""
    with pytest.raises(CodecError) as info:
        decode(encode(event))
    assert info.value.reason == "missing_fields"
    assert "disk_transfer_completed.sha256" in str(info.value)


def test_missing_envelope_fields_are_named() -> None:
    event = _good()
    event.envelope.source = ""
    event.envelope.ClearField("occurred_at")
    with pytest.raises(CodecError, match=r"envelope\.source.*envelope\.occurred_at"):
        decode(encode(event))


def test_event_id_must_be_a_uuid() -> None:
    event = _good()
    event.envelope.event_id = "not-a-uuid"
    assert _reason(encode(event)) == "invalid_envelope"


def test_child_event_keeps_correlation_and_points_at_its_cause() -> None:
    cause = events.make(transfer_pb2.DiskTransferRequested(transfer_id="t"), source="planner",
                        correlation_id="plan-9")
    child = events.child_of(cause, transfer_pb2.DiskTransferProgress(transfer_id="t"), source="transfer")
    assert child.envelope.correlation_id == "plan-9"
    assert child.envelope.causation_id == cause.envelope.event_id
    assert child.envelope.event_id != cause.envelope.event_id
