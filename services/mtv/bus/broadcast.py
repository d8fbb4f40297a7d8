"""Topics every process reads whole, outside any consumer group (cancels, worker statuses).

Such a reader is assigned every partition and never commits: each process must see every
message, and on restart it starts again from a point in time rather than from a group offset.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, Message, TopicPartition

from mtv import events
from mtv.bus.codec import CodecError, decode

log = logging.getLogger(__name__)


def reader(bootstrap: str, name: str) -> Consumer:
    """A consumer for `assign_since`; the group id only satisfies the client, it is never joined."""
    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"{name}-{uuid.uuid4()}",
        "enable.auto.commit": False, "auto.offset.reset": "latest", "fetch.wait.max.ms": 100,
    })


def assign_since(consumer: Consumer, topic: str, since_ms: int, timeout: float = 60.0) -> list[TopicPartition]:
    """Assign every partition of `topic` from the first message at or after `since_ms` (epoch ms),
    or from the end where there is none. Waits for a topic created a moment ago to get leaders.
    Returns, for the partitions with such messages, the end offsets at assignment: the backlog that
    `caught_up` waits for."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            found = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in meta.partitions],
                                               timeout=10)
            backlog = [TopicPartition(topic, tp.partition, consumer.get_watermark_offsets(tp, timeout=10)[1])
                       for tp in found if tp.offset >= 0]
            break
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise
            log.info("%s not ready (%s); retrying", topic, exc.args[0].str())
            time.sleep(0.5)
    # -1: no message at or after `since_ms`.
    consumer.assign([TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                     for tp in found])
    return backlog


def caught_up(consumer: Consumer, backlog: list[TopicPartition]) -> bool:
    """Whether everything that was in the partitions at assignment has been read."""
    if not backlog:
        return True
    positions = {tp.partition: tp.offset for tp in consumer.position(
        [TopicPartition(tp.topic, tp.partition) for tp in backlog])}
    return all(positions.get(tp.partition, -1) >= tp.offset for tp in backlog)


def drain(consumer: Consumer, payload_field: str, max_messages: int = 500) -> Iterator[tuple[Message, Any]]:
    """What has arrived, without blocking: (message, payload) for each event carrying `payload_field`.
    Other payloads are skipped; unreadable messages are logged and skipped (every process reads
    them, so none of them can own a dead-letter decision)."""
    for _ in range(max_messages):
        msg = consumer.poll(0)
        if msg is None:
            return
        if msg.error() is not None or msg.value() is None:
            continue
        try:
            event = decode(msg.value())
        except CodecError as exc:
            log.warning("ignoring an unreadable message at %s[%d]@%d: %s", msg.topic(), msg.partition(),
                        msg.offset(), exc)
            continue
        if events.payload_field(event) == payload_field:
            yield msg, getattr(event, payload_field)
