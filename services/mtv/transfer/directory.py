"""The pool's directory on Kafka: this worker's status out, every peer's status in.

Statuses go to the compacted workers topic keyed by worker name, on every change and every
`interval` seconds. Peers' statuses are read by a group-less consumer assigned every partition,
starting a few intervals back, so a worker learns the live pool at start without replaying the
statuses of workers long gone. Freshness is judged on this process's clock (when a status
arrived), never on another machine's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import TopicPartition

from mtv import events
from mtv.bus import Publisher, broadcast
from mtv.topics import Topic
from mtv.transfer import handoff
from mtv.transfer.handoff import PeerStatus, State
from mtv.v1 import transfer_pb2

_TO_PROTO = {State.IDLE: transfer_pb2.WORKER_STATE_IDLE, State.BUSY: transfer_pb2.WORKER_STATE_BUSY,
             State.STOPPED: transfer_pb2.WORKER_STATE_STOPPED}
_FROM_PROTO = {v: k for k, v in _TO_PROTO.items()}


class WorkerDirectory:
    def __init__(self, bootstrap: str, topic: Topic, publisher: Publisher | None, *, worker: str,
                 group_id: str | None, requests_topic: str | None, source: str, interval: float = 2.0) -> None:
        """`publisher` None: read only. `group_id`/`requests_topic` None: every pool's workers."""
        self._topic = topic
        self._publisher = publisher
        self._worker = worker
        self._group = group_id
        self._requests = requests_topic
        self._source = source
        self.interval = interval
        self._consumer = broadcast.reader(bootstrap, "mtv-transfer-workers")
        self.peers: dict[str, PeerStatus] = {}
        self._backlog: list[TopicPartition] = []
        self._last: tuple[State, str, int, tuple[int, ...]] | None = None
        self._sent_at = float("-inf")

    def start(self, timeout: float = 60.0) -> None:
        since = time.time() - handoff.STALE_INTERVALS * self.interval
        self._backlog = broadcast.assign_since(self._consumer, self._topic.name, int(since * 1000), timeout)

    def caught_up(self) -> bool:
        """Whether the statuses published before `start` have all been read."""
        return broadcast.caught_up(self._consumer, self._backlog)

    def poll(self, max_messages: int = 200) -> None:
        """Take in peers' statuses that arrived (never blocks)."""
        for _, s in broadcast.drain(self._consumer, "transfer_worker_status", max_messages):
            if self._group is not None and (s.group_id != self._group or s.requests_topic != self._requests):
                continue
            self.peers[s.worker] = PeerStatus(
                worker=s.worker, state=_FROM_PROTO.get(s.state, State.STOPPED), transfer_id=s.transfer_id,
                attempt=s.attempt, partitions=frozenset(s.partitions), interval_seconds=s.interval_seconds or 2.0,
                heard_at=time.monotonic())

    def report(self, state: State, partitions: Iterable[int], transfer_id: str = "", attempt: int = 0,
               *, force: bool = False) -> None:
        """Publish this worker's status if it changed, or if the interval passed (or `force`)."""
        assert self._publisher is not None and self._group is not None and self._requests is not None
        now = time.monotonic()
        current = (state, transfer_id, attempt, tuple(sorted(partitions)))
        if not force and current == self._last and now - self._sent_at < self.interval:
            return
        status = transfer_pb2.TransferWorkerStatus(
            worker=self._worker, group_id=self._group, requests_topic=self._requests, state=_TO_PROTO[state],
            transfer_id=transfer_id, attempt=attempt, partitions=current[3], interval_seconds=self.interval)
        self._publisher.publish(events.make(status, source=self._source), topic=self._topic, key=self._worker)
        self._last, self._sent_at = current, now

    def close(self) -> None:
        self._consumer.close()
