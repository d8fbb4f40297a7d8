"""The `mtv-event` faust codec never raises inside faust: bad bytes arrive as a Decoded with the error."""

from __future__ import annotations

import pytest
from faust.serializers import codecs

from mtv import events
from mtv.bus import faust_codec
from mtv.v1 import transfer_pb2


def test_registered_codec_round_trips_and_reports_bad_bytes() -> None:
    faust_codec.register()
    codec = codecs.get_codec(faust_codec.NAME)
    event = events.make(transfer_pb2.DiskTransferFailed(transfer_id="p/v/1", reason="404"), source="t")
    decoded = codec.loads(codec.dumps(event))
    assert decoded.event == event and decoded.error is None

    bad = codec.loads(b"\xff\xfe not protobuf")
    assert bad.event is None
    assert bad.error is not None and bad.error.reason == "invalid_protobuf"
    assert bad.raw == b"\xff\xfe not protobuf"
    assert codec.dumps(bad) == bad.raw  # a dead-lettered copy keeps the original bytes


def test_dumps_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="mtv.v1.Event"):
        faust_codec.EventCodec().dumps({"not": "an event"})
