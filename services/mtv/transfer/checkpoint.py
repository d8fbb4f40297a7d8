"""Resume points of disk copies on the compacted checkpoint topic (key = transfer id).

Hash scheme: hashlib objects cannot be serialized, so a checkpoint carries the hex SHA-256 of the
logical bytes [0, offset) (`prefix_sha256`, a `.copy().hexdigest()` of the running hash: O(1) in
size, unlike per-chunk digests). A worker resuming it reads the sink's first `offset` bytes into a
fresh hash; if the digest matches, the running hash is exactly restored *and* the sink is proven
to hold what was checkpointed, so the final SHA-256 is that of the whole logical disk. If it does
not match (sink changed, torn write after a power loss), the copy starts from zero. Sinks that
cannot be read back (CDI upload) are not resumable and always start from zero.

A finished copy leaves a `done` checkpoint with its SHA-256, written after DiskTransferCompleted:
a duplicate request for the same attempt is then acknowledged without copying again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from enum import Enum

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from mtv import events
from mtv.bus import Publisher
from mtv.bus.codec import CodecError, decode
from mtv.topics import Topic
from mtv.transfer.errors import TransferError
from mtv.transfer.spec import TransferSpec
from mtv.v1 import transfer_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    transfer_id: str
    offset: int
    bytes_written: int
    bytes_holes: int
    prefix_sha256: str
    bytes_total: int
    fingerprint: str
    attempt: int
    worker: str
    chunk_size: int = 0
    done: bool = False
    sha256: str = ""

    def to_proto(self) -> transfer_pb2.TransferCheckpoint:
        return transfer_pb2.TransferCheckpoint(
            transfer_id=self.transfer_id, offset=self.offset, bytes_written=self.bytes_written,
            bytes_holes=self.bytes_holes, prefix_sha256=self.prefix_sha256, bytes_total=self.bytes_total,
            fingerprint=self.fingerprint, attempt=self.attempt, worker=self.worker, chunk_size=self.chunk_size,
            done=self.done, sha256=self.sha256,
        )

    @classmethod
    def from_proto(cls, cp: transfer_pb2.TransferCheckpoint) -> Checkpoint:
        return cls(
            transfer_id=cp.transfer_id, offset=cp.offset, bytes_written=cp.bytes_written,
            bytes_holes=cp.bytes_holes, prefix_sha256=cp.prefix_sha256, bytes_total=cp.bytes_total,
            fingerprint=cp.fingerprint, attempt=cp.attempt, worker=cp.worker, chunk_size=cp.chunk_size,
            done=cp.done, sha256=cp.sha256,
        )


class Start(Enum):
    FRESH = "fresh"
    RESUME = "resume"
    DUPLICATE = "duplicate"


def decide(spec: TransferSpec, cp: Checkpoint | None, sink_resumable: bool) -> tuple[Start, str]:
    """How to start `spec` given the latest checkpoint of its transfer id, and why."""
    if cp is None:
        return Start.FRESH, "no checkpoint"
    if cp.fingerprint != spec.fingerprint():
        return Start.FRESH, "the checkpoint is of a different source, sink or size"
    if cp.done:
        if spec.attempt <= cp.attempt:
            return Start.DUPLICATE, f"attempt {cp.attempt} already completed (sha256 {cp.sha256[:12]}…)"
        return Start.FRESH, f"new attempt {spec.attempt} after a completed attempt {cp.attempt}"
    if not sink_resumable:
        return Start.FRESH, "the sink cannot resume (it is one upload stream)"
    if cp.offset == 0 or cp.offset > spec.size or not cp.prefix_sha256:
        return Start.FRESH, "the checkpoint holds no usable resume point"
    return Start.RESUME, f"resuming at byte {cp.offset} checkpointed by {cp.worker}"


class CheckpointStore:
    """Writes checkpoints through the worker's publisher; reads the latest one of a transfer id.

    Reading scans the compacted topic up to its high watermarks (taken at the start of the read,
    so a checkpoint flushed before is seen). It happens once per disk, so simplicity wins over an
    index; compaction keeps the topic at about one record per disk.
    """

    def __init__(self, bootstrap: str, topic: Topic, publisher: Publisher, source: str) -> None:
        self._topic = topic
        self._publisher = publisher
        self._source = source
        self._bootstrap = bootstrap
        self._reader: Consumer | None = None
        self._lock = threading.Lock()

    def save(self, cp: Checkpoint, *, wait: bool = True) -> None:
        """Publish; with `wait`, return only when the broker has it. Periodic checkpoints do not wait:
        a flush per checkpoint stalled the copy (measured ~0.3 s per GiB), and one lost in a crash only
        means resuming from the one before (the idempotent producer keeps them in order)."""
        event = events.make(cp.to_proto(), source=self._source)
        self._publisher.publish(event, topic=self._topic, key=cp.transfer_id)
        if wait:
            self._publisher.flush()

    def delete(self, transfer_id: str) -> None:
        """A tombstone: compaction drops the key, later copies start fresh."""
        self._publisher.publish_raw(self._topic.name, transfer_id.encode(), None)
        self._publisher.flush()

    def load(self, transfer_id: str, timeout: float = 30.0, attempts: int = 3) -> Checkpoint | None:
        with self._lock:
            for attempt in range(1, attempts + 1):
                try:
                    return self._scan(transfer_id.encode(), timeout)
                except KafkaException as exc:
                    # E.g. a partition leader moving: worth a second look before failing the disk.
                    if attempt == attempts:
                        raise TransferError(f"cannot read checkpoints from {self._topic.name}: {exc}; retry the "
                                            "disk when the broker is healthy", retryable=True) from None
                    time.sleep(0.5 * attempt)
            return None

    def _scan(self, key: bytes, timeout: float) -> Checkpoint | None:
        reader = self._consumer()
        meta = reader.list_topics(self._topic.name, timeout=10).topics[self._topic.name]
        ends: dict[int, int] = {}
        for p in meta.partitions:
            low, high = reader.get_watermark_offsets(TopicPartition(self._topic.name, p), timeout=10)
            if high > low:
                ends[p] = high
        if not ends:
            return None
        reader.assign([TopicPartition(self._topic.name, p, OFFSET_BEGINNING) for p in ends])
        found: tuple[int, bytes | None] | None = None  # (timestamp, value); latest wins
        deadline = time.monotonic() + timeout
        try:
            while ends:
                if time.monotonic() > deadline:
                    raise TransferError(f"reading checkpoints from {self._topic.name} timed out", retryable=True)
                msg = reader.poll(0.2)
                if msg is None or msg.error() is not None:
                    continue
                if msg.key() == key and (found is None or msg.timestamp()[1] >= found[0]):
                    found = (msg.timestamp()[1], msg.value())
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
        finally:
            reader.unassign()
        return _parse(found[1]) if found else None

    def _consumer(self) -> Consumer:
        if self._reader is None:
            # Never commits: a private group id just satisfies the client.
            self._reader = Consumer({
                "bootstrap.servers": self._bootstrap, "group.id": f"mtv-transfer-checkpoints-{uuid.uuid4()}",
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                # Reading to a known end: a fetch the broker holds back (500 ms by default) only adds latency.
                "fetch.wait.max.ms": 10,
            })
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _parse(value: bytes | None) -> Checkpoint | None:
    if value is None:
        return None  # tombstone
    try:
        event = decode(value)
    except CodecError as exc:
        log.warning("ignoring an unreadable checkpoint: %s", exc)
        return None
    if events.payload_field(event) != "transfer_checkpoint":
        return None
    return Checkpoint.from_proto(event.transfer_checkpoint)
