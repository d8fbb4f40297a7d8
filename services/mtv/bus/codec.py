"""Bytes <-> `mtv.v1.Event`, with every way a message can be unusable named.

Each failure is a `CodecError` with a short machine-readable `reason` (used in the DLQ
header `mtv-error-reason` and as a metrics label) and a message saying what is wrong.
"""

from __future__ import annotations

import uuid

from google.protobuf.message import DecodeError

from mtv import events
from mtv.v1 import event_pb2

DEFAULT_MAX_BYTES = 1024 * 1024


class CodecError(ValueError):
    """A message that cannot be processed; `reason` is one of the REASONS."""

    REASONS = ("empty", "too_large", "invalid_protobuf", "unknown_type", "type_mismatch",
               "schema_too_new", "missing_fields", "invalid_envelope")

    def __init__(self, reason: str, message: str) -> None:
        assert reason in self.REASONS, reason
        super().__init__(message)
        self.reason = reason


def encode(event: event_pb2.Event) -> bytes:
    return event.SerializeToString()


def decode(data: bytes | None, max_bytes: int = DEFAULT_MAX_BYTES) -> event_pb2.Event:
    """Parse and check a message; raise CodecError if it must go to the dead-letter topic."""
    if not data:
        raise CodecError("empty", "message has no value (tombstone or empty payload)")
    if len(data) > max_bytes:
        raise CodecError("too_large", f"message is {len(data)} bytes, over the limit of {max_bytes}")
    event = event_pb2.Event()
    try:
        event.ParseFromString(data)
    except DecodeError as exc:
        raise CodecError("invalid_protobuf", f"not a valid mtv.v1.Event: {exc}") from None
    check(event)
    return event


def check(event: event_pb2.Event) -> None:
    """Envelope and payload checks shared by every consumer."""
    field = events.payload_field(event)
    env = event.envelope
    if field is None:
        hint = f" (envelope says {env.type!r})" if env.type else ""
        raise CodecError("unknown_type", f"no payload this consumer knows{hint}; upgrade the consumer?")
    expected = events.TYPE_BY_FIELD[field]
    if env.type and env.type != expected:
        raise CodecError("type_mismatch", f"envelope.type is {env.type!r} but the payload is {expected}")
    if env.schema_version > events.SCHEMA_VERSION:
        raise CodecError(
            "schema_too_new",
            f"schema_version {env.schema_version} is newer than {events.SCHEMA_VERSION}; upgrade the consumer",
        )
    missing = events.missing_fields(event)
    if missing:
        raise CodecError("missing_fields", "missing required fields: " + ", ".join(missing))
    try:
        uuid.UUID(env.event_id)
    except ValueError:
        raise CodecError("invalid_envelope", f"envelope.event_id {env.event_id!r} is not a UUID") from None
