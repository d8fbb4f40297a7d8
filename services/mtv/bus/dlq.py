"""The dead-letter topic: the original bytes and key, plus headers saying where it came from and why."""

from __future__ import annotations

from confluent_kafka import Message

from mtv import topics
from mtv.bus.publisher import Publisher

# Header names are part of the public DLQ contract (documented in the README).
ORIGIN_TOPIC = "mtv-origin-topic"
ORIGIN_PARTITION = "mtv-origin-partition"
ORIGIN_OFFSET = "mtv-origin-offset"
ERROR_REASON = "mtv-error-reason"
ERROR = "mtv-error"
CONSUMER = "mtv-consumer"

_MAX_ERROR = 2000


def send(publisher: Publisher, msg: Message, *, reason: str, error: str, service: str) -> None:
    headers = [
        (ORIGIN_TOPIC, (msg.topic() or "").encode()),
        (ORIGIN_PARTITION, str(msg.partition()).encode()),
        (ORIGIN_OFFSET, str(msg.offset()).encode()),
        (ERROR_REASON, reason.encode()),
        (ERROR, error[:_MAX_ERROR].encode()),
        (CONSUMER, service.encode()),
    ]
    value = msg.value()
    # An oversized message would be refused again by the broker; keep its start, say so in the error.
    if value is not None and len(value) > 900_000:
        value = value[:900_000]
    publisher.publish_raw(topics.DLQ.name, msg.key(), value, headers)


def headers_dict(msg: Message) -> dict[str, str]:
    """DLQ headers of a consumed dead-letter message, decoded."""
    return {k: (v or b"").decode(errors="replace") for k, v in (msg.headers() or [])}
