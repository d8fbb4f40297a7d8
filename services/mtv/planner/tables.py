"""Changelog-backed tables: a dict in memory, every change also written to a compacted Kafka topic.

    <app id>-<table>-changelog     key: JSON of the table key; value: codec.dumps(value); tombstone = delete

On start `recover` reads each changelog from the beginning to its end offsets taken at start (the
compacted topic holds the latest value of every key), so a restarted planner has its tables back
before it consumes a single input. Writes go through the planner's one producer, the same that
publishes its events, and the input offsets are committed only after that producer was flushed: a
crash loses nothing that was committed, and what was not committed is consumed again.

This is the semantics of faust's changelog-backed memory tables; it is implemented here because the
faust worker stalled reproducibly under this service's load (see services/mtv/planner/app.py).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, MutableMapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from mtv.bus.publisher import Publisher
from mtv.planner import codec

log = logging.getLogger(__name__)

PARTITIONS = 6
_CONFIG = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"}


class ChangelogTable(MutableMapping[str, Any]):
    def __init__(self, name: str, topic: str, publisher: Publisher) -> None:
        self.name = name
        self.topic = topic
        self._publisher = publisher
        self._data: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value
        self._publisher.publish_raw(self.topic, json.dumps(key).encode(), codec.dumps(value))

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._publisher.publish_raw(self.topic, json.dumps(key).encode(), None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def load(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (recovery only: nothing is written back)."""
        k = json.loads(key)
        if value is None:
            self._data.pop(k, None)
        else:
            self._data[k] = codec.loads(value)


def changelog_topic(app_id: str, table: str) -> str:
    return f"{app_id}-{table}-changelog"


def ensure_topics(bootstrap: str, names: list[str], timeout: float = 30.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    new = [NewTopic(n, num_partitions=PARTITIONS, replication_factor=1, config=_CONFIG)
           for n in names if n not in existing]
    if not new:
        return
    for future in admin.create_topics(new, request_timeout=timeout).values():
        try:
            future.result(timeout)
        except KafkaException as exc:  # another process created it meanwhile: that is success
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def watermarks(consumer: Consumer, tp: TopicPartition, timeout: float = 60.0) -> tuple[int, int]:
    """(low, high) of a partition, waiting out a leader election (a topic created a moment ago)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=10)  # type: ignore[no-any-return]
        except KafkaException as exc:
            if not exc.args[0].retriable() and "LEADER" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def recover(bootstrap: str, tables: list[ChangelogTable], timeout: float = 300.0) -> int:
    """Fill the tables from their changelogs; return the number of records read."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"mtv-planner-recovery-{uuid.uuid4()}",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    by_topic = {t.topic: t for t in tables}
    try:
        tps = []
        end: dict[tuple[str, int], int] = {}
        for table in tables:
            meta = consumer.list_topics(table.topic, timeout=30).topics[table.topic]
            for p in meta.partitions:
                low, high = watermarks(consumer, TopicPartition(table.topic, p))
                if high > low:
                    end[(table.topic, p)] = high
                    tps.append(TopicPartition(table.topic, p, OFFSET_BEGINNING))
        if not tps:
            return 0
        consumer.assign(tps)
        records, deadline = 0, time.monotonic() + timeout
        while end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"table recovery did not reach the end of {sorted(end)} in {timeout:.0f} s")
            for msg in consumer.consume(10_000, 0.5):
                if not msg.error():
                    by_topic[msg.topic()].load(msg.key(), msg.value())
                    records += 1
            # Positions, not the last offset seen: compaction may have removed the newest offsets' neighbours.
            for tp in consumer.position([TopicPartition(t, p) for t, p in end]):
                if tp.offset >= end[(tp.topic, tp.partition)]:
                    del end[(tp.topic, tp.partition)]
        return records
    finally:
        consumer.close()
