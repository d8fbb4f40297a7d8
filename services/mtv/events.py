"""Building, reading and checking `mtv.v1.Event` messages (envelope + one payload).

Inside services we pass protobuf payloads only at the edges; this module is the one place
that knows how the envelope is filled and which payload fields are required.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from google.protobuf.message import Message

from mtv.v1 import event_pb2

SCHEMA_VERSION = 1

_ONEOF = event_pb2.Event.DESCRIPTOR.oneofs_by_name["payload"]
# "mtv.v1.DiskTransferProgress" -> "disk_transfer_progress"
FIELD_BY_TYPE: Mapping[str, str] = {f.message_type.full_name: f.name for f in _ONEOF.fields}
TYPE_BY_FIELD: Mapping[str, str] = {v: k for k, v in FIELD_BY_TYPE.items()}

# Fields a payload must carry to be processed (proto3 has no `required`). A string must be
# non-empty, a message set, a number non-zero. Checked by the bus before a handler runs.
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "provider_status_changed": ("provider", "phase"),
    "inventory_changed": ("provider_id", "change", "object_id"),
    "inventory_synced": ("provider_id",),
    "source_power_requested": ("provider_id", "vm_id", "action"),
    "source_power_changed": ("provider_id", "vm_id", "action"),
    "plan_created": ("plan_id", "revision", "spec"),
    "plan_validated": ("plan_id", "revision"),
    "plan_approved": ("approval", "signature"),
    "plan_rejected": ("plan_id", "reason"),
    "plan_status_changed": ("plan_id", "phase"),
    "cancel_plan_requested": ("plan_id",),
    "plan_canceled": ("plan_id",),
    "retry_plan_requested": ("plan_id",),
    "vm_migration_status": ("plan_id", "vm_id", "phase"),
    "disk_transfer_requested": ("transfer_id", "plan_id", "vm_id", "source", "sink", "size_bytes"),
    "disk_transfer_cancel_requested": ("transfer_id",),
    "disk_transfer_progress": ("transfer_id", "bytes_total"),
    "disk_transfer_completed": ("transfer_id", "sha256"),
    "disk_transfer_failed": ("transfer_id", "reason"),
    "transfer_checkpoint": ("transfer_id",),
    "transfer_worker_status": ("worker", "group_id", "requests_topic", "state"),
    "target_prepare_requested": ("plan_id", "vm", "plan", "target_name"),
    "target_prepared": ("plan_id", "vm_id"),
    "convert_requested": ("plan_id", "vm", "plan", "target_name"),
    "vm_created": ("plan_id", "vm_id", "name"),
    "target_cleanup_requested": ("plan_id", "vm_id"),
    "target_failed": ("plan_id", "vm_id", "reason"),
}


def make(
    payload: Message,
    *,
    source: str,
    correlation_id: str = "",
    causation_id: str = "",
    event_id: str | None = None,
    occurred_at: datetime | None = None,
) -> event_pb2.Event:
    """Wrap a payload message in an Event with a filled envelope."""
    type_name = payload.DESCRIPTOR.full_name
    field = FIELD_BY_TYPE.get(type_name)
    if field is None:
        raise TypeError(f"{type_name} is not an Event payload; add it to proto/mtv/v1/event.proto")
    event = event_pb2.Event()
    env = event.envelope
    env.event_id = event_id or str(uuid.uuid4())
    env.type = type_name
    env.source = source
    env.correlation_id = correlation_id
    env.causation_id = causation_id
    env.schema_version = SCHEMA_VERSION
    env.occurred_at.FromDatetime(occurred_at or datetime.now(UTC))
    getattr(event, field).CopyFrom(payload)
    return event


def payload_field(event: event_pb2.Event) -> str | None:
    """The name of the set payload field, e.g. "disk_transfer_progress", or None."""
    return event.WhichOneof("payload")


def payload(event: event_pb2.Event) -> Message:
    field = payload_field(event)
    if field is None:
        raise ValueError("event has no payload")
    return getattr(event, field)  # type: ignore[no-any-return]


def missing_fields(event: event_pb2.Event) -> list[str]:
    """Required envelope and payload fields that are absent, as dotted paths."""
    missing: list[str] = []
    env = event.envelope
    if not event.HasField("envelope"):
        return ["envelope"]
    for name in ("event_id", "type", "source"):
        if not getattr(env, name):
            missing.append(f"envelope.{name}")
    if not env.HasField("occurred_at"):
        missing.append("envelope.occurred_at")
    if env.schema_version == 0:
        missing.append("envelope.schema_version")
    field = payload_field(event)
    if field is None:
        missing.append("payload")
        return missing
    body = getattr(event, field)
    for name in REQUIRED.get(field, ()):
        fd = body.DESCRIPTOR.fields_by_name[name]
        if fd.message_type is not None and not fd.is_repeated:
            present = body.HasField(name)
        else:
            present = bool(getattr(body, name))
        if not present:
            missing.append(f"{field}.{name}")
    return missing


def child_of(cause: event_pb2.Event, payload: Message, *, source: str) -> event_pb2.Event:
    """An event caused by `cause`: same correlation id, causation = cause's event id."""
    return make(
        payload,
        source=source,
        correlation_id=cause.envelope.correlation_id,
        causation_id=cause.envelope.event_id,
    )
