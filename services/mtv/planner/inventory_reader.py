"""Reads the whole compacted `mtv.inventory.state.v1` into the planner's inventory, then follows it.

Not a consumer group: every planner needs every provider's objects (a plan may name any VM), so the
reader assigns itself all partitions and starts at the beginning on each start; the compacted topic
holds one record per live object, so this is a full snapshot. `on_loaded` fires once, when the
positions reach the end offsets taken at start: until then validation would see a partial inventory.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from mtv import topics
from mtv.bus.codec import CodecError, decode
from mtv.planner.tables import watermarks
from mtv.v1 import inventory_pb2

log = logging.getLogger(__name__)

Record = tuple[str, inventory_pb2.InventoryChanged | None]


def _poll_batch(consumer: Consumer, limit: int, timeout: float = 0.2) -> list[Message]:
    # poll, not consume(n, t): consume waits for n messages or the whole timeout.
    batch: list[Message] = []
    msg = consumer.poll(timeout)
    while msg is not None:
        batch.append(msg)
        msg = consumer.poll(0) if len(batch) < limit else None
    return batch


class InventoryReader:
    def __init__(self, bootstrap: str, apply: Callable[[list[Record]], None], on_loaded: Callable[[], None],
                 max_bytes: int = 1024 * 1024) -> None:
        self._bootstrap = bootstrap
        self._apply = apply  # called with each batch of records (under the planner's lock, by the caller)
        self._on_loaded = on_loaded
        self._max_bytes = max_bytes
        self.loaded = False
        self.records = 0

    def run(self, stop: threading.Event) -> None:
        # A group id is required by the client; it is never committed to (no subscription, no commits).
        consumer = Consumer({"bootstrap.servers": self._bootstrap, "group.id": f"mtv-planner-inventory-{uuid.uuid4()}",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 100})
        try:
            end = self._assign_all(consumer, stop)
            while not stop.is_set():
                batch = [self._record(m.key(), m.value()) for m in _poll_batch(consumer, 5000) if not m.error()]
                batch = [r for r in batch if r is not None]
                self.records += len(batch)
                if batch:
                    self._apply(batch)
                if not self.loaded and self._caught_up(consumer, end):
                    self.loaded = True
                    log.info("inventory state read: %d record(s)", self.records)
                    self._on_loaded()
        finally:
            consumer.close()

    @staticmethod
    def _caught_up(consumer: Consumer, end: dict[int, int]) -> bool:
        positions = consumer.position([TopicPartition(topics.INVENTORY_STATE.name, p) for p in end])
        return all(tp.offset >= end[tp.partition] for tp in positions)

    def _assign_all(self, consumer: Consumer, stop: threading.Event) -> dict[int, int]:
        name = topics.INVENTORY_STATE.name
        while not stop.is_set():
            meta = consumer.list_topics(name, timeout=10).topics.get(name)
            if meta is not None and meta.partitions and meta.error is None:
                break
            log.warning("topic %s not found yet; run `mtvctl topics create`", name)
            stop.wait(1.0)
        partitions = sorted(meta.partitions)
        marks = {p: watermarks(consumer, TopicPartition(name, p)) for p in partitions}
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
        # Only partitions holding records must be read to their end before the inventory counts as loaded.
        return {p: high for p, (low, high) in marks.items() if high > low}

    def _record(self, key: bytes | None, value: bytes | None) -> Record | None:
        text_key = (key or b"").decode(errors="replace")
        if value is None:
            return text_key, None
        try:
            event = decode(value, self._max_bytes)
        except CodecError as exc:
            # The state topic belongs to the inventory service; a bad record there is its bug to fix.
            log.warning("skipping inventory record %s: %s", text_key, exc)
            return None
        if event.WhichOneof("payload") != "inventory_changed":
            return None
        return text_key, event.inventory_changed
