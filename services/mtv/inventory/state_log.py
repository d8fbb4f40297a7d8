"""Rebuild inventories from the compacted `mtv.inventory.state.v1` topic.

The service does this at start-up so its first discovery diffs against what it published before:
objects deleted while it was down get their tombstone, unchanged ones are not re-published. Anyone
else can use `read_state` the same way to rebuild an inventory without asking the service.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from mtv import topics
from mtv.bus.codec import CodecError, decode
from mtv.inventory.objects import Item, from_proto

log = logging.getLogger(__name__)
_TRANSIENT = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT, KafkaError._TRANSPORT}


def read_state(bootstrap: str, provider_ids: Iterable[str] | None = None,
               timeout: float = 30.0) -> dict[str, dict[str, Item]]:
    """Latest object per key, by provider id then object id, read up to the current end of the topic.
    With `provider_ids`, other providers are skipped."""
    wanted = set(provider_ids) if provider_ids is not None else None
    name = topics.INVENTORY_STATE.name
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"mtv-state-reader-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    state: dict[str, dict[str, Item]] = {}
    try:
        meta = consumer.list_topics(name, timeout=timeout).topics.get(name)
        if meta is None or meta.error is not None:
            return state  # never written: nothing to restore
        ends: dict[int, int] = {}
        assignment = []
        deadline = time.monotonic() + timeout
        for partition in meta.partitions:
            low, high = _watermarks(consumer, TopicPartition(name, partition), deadline)
            if high > low:
                ends[partition] = high
                assignment.append(TopicPartition(name, partition, low))
        consumer.assign(assignment)
        _consume(consumer, ends, wanted, state, deadline)
    finally:
        consumer.close()
    return state


def _watermarks(consumer: Consumer, partition: TopicPartition, deadline: float) -> tuple[int, int]:
    """Low and high offsets; retried while the broker is still electing leaders (a fresh cluster)."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=max(deadline - time.monotonic(), 1.0))
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0]
            if not (error.retriable() or error.code() in _TRANSIENT) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _consume(consumer: Consumer, ends: dict[int, int], wanted: set[str] | None,
             state: dict[str, dict[str, Item]], deadline: float) -> None:
    while ends:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading {topics.INVENTORY_STATE.name} did not reach its end in time")
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error() is not None:
            raise KafkaException(msg.error())
        if msg.offset() + 1 >= ends.get(msg.partition(), 0):
            ends.pop(msg.partition(), None)
        provider_id, _, object_id = (msg.key() or b"").decode().partition("/")
        if wanted is not None and provider_id not in wanted:
            continue
        objects = state.setdefault(provider_id, {})
        if msg.value() is None:
            objects.pop(object_id, None)
            continue
        try:
            item = from_proto(decode(msg.value()).inventory_changed.object)
        except CodecError as exc:
            log.warning("skipping unreadable state record %s: %s", msg.key(), exc)
            continue
        if item is not None:
            objects[object_id] = item
