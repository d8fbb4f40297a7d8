"""Every protobuf message round-trips; every Event payload has a route and required fields."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

import mtv.v1
from mtv import events, topics
from mtv.bus import codec
from mtv.v1 import event_pb2, transfer_pb2


def _all_message_descriptors() -> list[Descriptor]:
    found: dict[str, Descriptor] = {}
    for mod in pkgutil.iter_modules(mtv.v1.__path__):
        if mod.name.endswith("_pb2"):
            module = importlib.import_module(f"mtv.v1.{mod.name}")
            for desc in module.DESCRIPTOR.message_types_by_name.values():
                found[desc.full_name] = desc
    return sorted(found.values(), key=lambda d: d.full_name)


MESSAGES = _all_message_descriptors()


def fill(msg: Message, depth: int = 0) -> Message:
    """Set every field to a non-default value (first member of each oneof), recursively."""
    seen_oneofs: set[str] = set()
    for field in msg.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if oneof is not None:
            if oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(oneof.name)
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 4:
                continue
            target = getattr(msg, field.name).add() if repeated else getattr(msg, field.name)
            fill(target, depth + 1)
            if not repeated and not target.ListFields():
                target.SetInParent()
            continue
        value = _scalar(field)
        if repeated:
            getattr(msg, field.name).append(value)
        else:
            setattr(msg, field.name, value)
    return msg


def _scalar(field: FieldDescriptor) -> object:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-value"
    if t == FieldDescriptor.TYPE_BYTES:
        return b"\x01\x02" + field.name.encode()
    if t == FieldDescriptor.TYPE_BOOL:
        return True
    if t == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values[-1].number
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 1.5
    return 7


def test_found_the_whole_contract() -> None:
    names = {d.full_name for d in MESSAGES}
    for expected in ("mtv.v1.Event", "mtv.v1.PlanApproved", "mtv.v1.DiskTransferRequested",
                     "mtv.v1.DiskTransferProgress", "mtv.v1.DiskTransferCompleted",
                     "mtv.v1.DiskTransferFailed", "mtv.v1.ListVmsRequest", "mtv.v1.CreatePlanRequest"):
        assert expected in names
    assert len(MESSAGES) > 60


@pytest.mark.parametrize("desc", MESSAGES, ids=lambda d: d.full_name)
def test_every_message_round_trips(desc: Descriptor) -> None:
    cls = GetMessageClass(desc)
    original = fill(cls())
    data = original.SerializeToString()
    if desc.fields:
        assert data, f"{desc.full_name} serialized to nothing: filler missed its fields"
    parsed = cls.FromString(data)
    assert parsed == original
    assert parsed.SerializeToString(deterministic=True) == original.SerializeToString(deterministic=True)


PAYLOADS = sorted(events.FIELD_BY_TYPE.items())


@pytest.mark.parametrize(("type_name", "field"), PAYLOADS, ids=[f for _, f in PAYLOADS])
def test_every_payload_round_trips_through_the_codec(type_name: str, field: str) -> None:
    payload_cls = GetMessageClass(event_pb2.Event.DESCRIPTOR.fields_by_name[field].message_type)
    event = events.make(fill(payload_cls()), source="test", correlation_id="plan-1")
    decoded = codec.decode(codec.encode(event))
    assert decoded == event
    assert decoded.envelope.type == type_name
    assert events.payload_field(decoded) == field
    topic, key = topics.route(decoded)
    assert topic in topics.ALL
    assert key, f"{field} routes with an empty key"


def test_every_payload_declares_required_fields() -> None:
    assert set(events.REQUIRED) == set(events.FIELD_BY_TYPE.values())
    assert set(topics.ROUTES) == set(events.FIELD_BY_TYPE.values())
    for field, required in events.REQUIRED.items():
        desc = event_pb2.Event.DESCRIPTOR.fields_by_name[field].message_type
        for name in required:
            assert name in desc.fields_by_name, f"{field}.{name} is not a field"


def test_public_topic_names_are_fixed() -> None:
    assert topics.PLAN_APPROVALS.name == "mtv.plan.approvals.v1"
    assert topics.TRANSFER_REQUESTS.name == "mtv.transfer.requests.v1"
    assert topics.TRANSFER_PROGRESS.name == "mtv.transfer.progress.v1"
    assert topics.DLQ.name == "mtv.dlq.v1"
    assert all(t.name.endswith(".v1") for t in topics.ALL)
    assert len({t.name for t in topics.ALL}) == len(topics.ALL)
    assert topics.TRANSFER_REQUESTS.partitions >= 12


def test_one_disk_keeps_one_key_across_its_events() -> None:
    tid = topics.transfer_id("plan-a", "vm-1", 2000)
    made = [
        events.make(transfer_pb2.DiskTransferRequested(transfer_id=tid), source="planner"),
        events.make(transfer_pb2.DiskTransferProgress(transfer_id=tid), source="transfer"),
        events.make(transfer_pb2.DiskTransferCompleted(transfer_id=tid), source="transfer"),
        events.make(transfer_pb2.TransferCheckpoint(transfer_id=tid), source="transfer"),
    ]
    assert {topics.route(e)[1] for e in made} == {tid}


def test_make_refuses_a_non_payload() -> None:
    with pytest.raises(TypeError, match="not an Event payload"):
        events.make(transfer_pb2.DiskSource(), source="x")
