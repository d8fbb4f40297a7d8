"""The `mtv-event` codec for faust topics (use `value_serializer="mtv-event"`, never `value_type`).

Decoding never raises inside faust (which would log and skip the message): a bad message is
delivered as a `Decoded` with `error` set, so the agent can dead-letter it with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faust.serializers import codecs

from mtv.bus.codec import DEFAULT_MAX_BYTES, CodecError, decode, encode
from mtv.v1 import event_pb2

NAME = "mtv-event"


@dataclass(frozen=True)
class Decoded:
    """What a faust agent receives: the event, or the raw bytes and why they are unusable."""

    event: event_pb2.Event | None
    raw: bytes | None
    error: CodecError | None = None


class EventCodec(codecs.Codec):
    max_bytes = DEFAULT_MAX_BYTES

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, Decoded):
            return obj.raw or b""
        if isinstance(obj, event_pb2.Event):
            return encode(obj)
        raise TypeError(f"{NAME} codec serializes mtv.v1.Event, not {type(obj).__name__}")

    def _loads(self, s: bytes) -> Decoded:
        try:
            return Decoded(event=decode(s, self.max_bytes), raw=s)
        except CodecError as exc:
            return Decoded(event=None, raw=s, error=exc)


def register() -> None:
    codecs.register(NAME, EventCodec())
