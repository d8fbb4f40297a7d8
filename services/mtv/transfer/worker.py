"""The long-task consumer: one disk at a time per worker process, many processes in one group.

Loop (confluent-kafka, cooperative-sticky, no auto-commit):
1. poll; on a request, pause the whole assignment and copy in a job thread;
2. keep polling every 0.2 s while it runs (heartbeats, rebalance callbacks, the max-poll timer)
   and apply cancels;
3. when the job has published its result, commit offset+1 synchronously, then resume.
Newly assigned partitions are paused while busy.

While busy, a worker hands the requests waiting in its other partitions to idle peers (see
handoff.py): it learns who is idle from the workers topic, where it also reports itself.

Why a disk is never copied by two workers at once: a partition has one owner in the group, which
handles one message at a time and commits only when the disk is done; requests are keyed by
transfer id, so a duplicate usually sits behind the original, waits, then finds the `done`
checkpoint and is acknowledged without copying. A duplicate elsewhere (the original was handed
off) waits while a peer reports copying that disk. When the partition moves (scale-out, SIGTERM),
the revoke callback stops the job at a chunk boundary and writes its checkpoint *before*
returning, and the new owner cannot fetch the partition before the callback returned; it resumes
from that checkpoint. Only a *lost* partition (this worker missed its session timeout) can overlap
with the new owner, for at most the time until this worker notices; the job then stops without
checkpointing, and the overlap writes identical bytes at identical offsets (same source), so the
sink is still right.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from mtv import events
from mtv.bus import Publisher, admin, dlq
from mtv.bus.codec import CodecError, decode
from mtv.bus.publisher import DeliveryError
from mtv.runtime import metrics
from mtv.transfer import handoff
from mtv.transfer.cancels import CancelWatcher
from mtv.transfer.checkpoint import CheckpointStore
from mtv.transfer.copier import StopSignal
from mtv.transfer.directory import WorkerDirectory
from mtv.transfer.errors import InvalidRequest, TransferError
from mtv.transfer.job import SERVICE, JobContext, Outcome, TransferJob
from mtv.transfer.settings import TransferSettings
from mtv.transfer.spec import TransferSpec, from_proto
from mtv.transfer.throttle import TokenBucket
from mtv.v1 import event_pb2, transfer_pb2

log = logging.getLogger(__name__)
POLL_SECONDS = 0.2
REVOKE_WAIT_SECONDS = 60.0
RETRY_PAUSE_SECONDS = 2.0
MAX_RETRIES = 3
HANDED_OFF_HEADER = "mtv-handed-off-by"


def _handed_off(msg: Message) -> bool:
    return any(name == HANDED_OFF_HEADER for name, _ in msg.headers() or [])


@dataclass
class ActiveJob:
    job: TransferJob
    signal: StopSignal
    partition: TopicPartition  # where the request is, at its offset
    requested_at_ms: int
    message: Message
    thread: threading.Thread = field(init=False)
    outcome: Outcome | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="transfer-job", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.outcome = self.job.run()

    def stop_and_wait(self, timeout: float, *, lost: bool = False) -> None:
        self.signal.stop(lost=lost)
        self.thread.join(timeout)


class TransferWorker:
    def __init__(self, settings: TransferSettings) -> None:
        self.settings = settings
        self.topics = settings.topics()
        self.name = settings.worker_name()
        bootstrap = settings.kafka_bootstrap
        self.publisher = Publisher(bootstrap, client_id=f"mtv-transfer-{self.name}")
        bucket = TokenBucket(settings.transfer_bandwidth) if settings.transfer_bandwidth else None
        self.ctx = JobContext(
            settings=settings, topics=self.topics, publisher=self.publisher,
            checkpoints=CheckpointStore(bootstrap, self.topics.checkpoints, self.publisher, SERVICE),
            provider_dir=settings.provider_dir, worker=self.name, bucket=bucket)
        self.cancels = CancelWatcher(bootstrap, self.topics.cancels.name, settings.transfer_cancel_lookback_seconds)
        self.directory = WorkerDirectory(
            bootstrap, self.topics.workers, self.publisher, worker=self.name, group_id=settings.transfer_group_id,
            requests_topic=self.topics.requests.name, source=SERVICE, interval=settings.transfer_status_seconds)
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": settings.transfer_group_id,
            "client.id": f"mtv-transfer-{self.name}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": settings.transfer_session_timeout_ms,
            "heartbeat.interval.ms": max(1000, settings.transfer_session_timeout_ms // 5),
            # Requests are tiny and handled one at a time: prefetching many only delays pause().
            "queued.max.messages.kbytes": 1024,
            # A request should start at once, not when the broker's long-poll of an idle fetch ends.
            "fetch.wait.max.ms": 100,
        })
        self.assigned = threading.Event()
        self._active: ActiveJob | None = None
        # Requests fetched before a pause took effect: handled, in order, once the job is done.
        self._deferred: list[Message] = []
        self._retries = 0
        # Hand-off state: disks given to peers that have not reported copying them yet; partitions
        # resumed while busy to fetch requests for idle peers.
        self._handed: dict[str, handoff.HandedOff] = {}
        self._scouted: frozenset[int] = frozenset()

    # -- lifecycle ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event, mark_ready: Callable[[], None]) -> None:
        admin.ensure_topics(self.settings.kafka_bootstrap, self.topics.all())
        self.cancels.start()
        self.directory.start()
        self.consumer.subscribe([self.topics.requests.name], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("transfer worker %s consuming %s as group %s", self.name, self.topics.requests.name,
                 self.settings.transfer_group_id)
        try:
            while not stop.is_set():
                msg = self._next_deferred() if self._active is None else None
                if msg is None:
                    msg = self.consumer.poll(POLL_SECONDS)
                if self.assigned.is_set():
                    mark_ready()
                self._apply_cancels()
                self._reap()
                if msg is not None:
                    self._on_message(msg)
                self.directory.poll()
                self._hand_off()
                self._report()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._active is not None:
            log.info("stopping: interrupting transfer %s at a chunk boundary", self._active.job.spec.transfer_id)
            self._active.stop_and_wait(REVOKE_WAIT_SECONDS)
            self._reap()
        self._report(stopped=True)
        # close() leaves the group, so the partitions move now rather than after the session timeout.
        self.consumer.close()
        self.cancels.close()
        self.directory.close()
        self.ctx.checkpoints.close()
        self.publisher.flush()

    # -- messages ----------------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err.str())
            return
        tp = TopicPartition(msg.topic(), msg.partition(), msg.offset())
        if self._active is not None or self._must_wait(msg):
            # Fetched while busy (before the pause took effect, or for an idle peer), or waiting on
            # a peer. Kept rather than sought back: a seek on a paused partition can fail, and a
            # skipped request would be committed past by the next one.
            self._deferred.append(msg)
            self._pause([TopicPartition(msg.topic(), msg.partition())])
            self._hand_off()
            return
        parsed = self._parse(msg)
        if parsed is None:
            self._commit(tp)
            return
        event, spec = parsed
        signal = StopSignal()
        self._active = ActiveJob(TransferJob(spec, event, self.ctx, signal), signal, tp, msg.timestamp()[1], msg)
        self._pause(self.consumer.assignment())
        self._scouted = frozenset()
        self._report()
        self._apply_cancels()
        log.info("transfer %s: started from %s[%d]@%d", spec.transfer_id, tp.topic, tp.partition, tp.offset,
                 extra={"transfer_id": spec.transfer_id})
        self._active.start()

    def _parse(self, msg: Message) -> tuple[event_pb2.Event, TransferSpec] | None:
        """The request, or None after it was dead-lettered or answered with DiskTransferFailed."""
        try:
            event = decode(msg.value(), self.settings.max_message_bytes)
        except CodecError as exc:
            if not self._fail_invalid(msg, exc):
                self._dead_letter(msg, exc.reason, str(exc))
            return None
        if events.payload_field(event) != "disk_transfer_requested":
            self._dead_letter(msg, "rejected", f"{SERVICE} does not handle {events.payload_field(event)} "
                                               f"on {msg.topic()}")
            return None
        try:
            spec = from_proto(event.disk_transfer_requested)
        except InvalidRequest as exc:
            self._publish_failed(event, event.disk_transfer_requested, exc)
            return None
        metrics.MESSAGES_PROCESSED.labels(SERVICE, msg.topic() or "").inc()
        return event, spec

    def _fail_invalid(self, msg: Message, exc: CodecError) -> bool:
        """A request missing fields but naming its transfer: tell its requester, which waits on results."""
        if exc.reason != "missing_fields":
            return False
        event = event_pb2.Event.FromString(msg.value())
        request = event.disk_transfer_requested
        if events.payload_field(event) != "disk_transfer_requested" or not request.transfer_id:
            return False
        self._publish_failed(event, request, InvalidRequest(f"invalid request: {exc}"))
        return True

    def _publish_failed(self, cause: event_pb2.Event, request: transfer_pb2.DiskTransferRequested,
                        exc: TransferError) -> None:
        log.warning("transfer %s rejected: %s", request.transfer_id, exc.reason,
                    extra={"transfer_id": request.transfer_id})
        failed = transfer_pb2.DiskTransferFailed(
            transfer_id=request.transfer_id, plan_id=request.plan_id, vm_id=request.vm_id, reason=exc.reason,
            retryable=exc.retryable, worker=self.name, code=exc.code)
        self.publisher.publish(events.child_of(cause, failed, source=SERVICE), topic=self.topics.results,
                               key=request.transfer_id)
        self.publisher.flush()

    def _dead_letter(self, msg: Message, reason: str, error: str) -> None:
        log.warning("dead-lettering %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), error)
        dlq.send(self.publisher, msg, reason=reason, error=error, service=SERVICE)
        self.publisher.flush()  # durable before the original's offset is committed
        metrics.DEAD_LETTERED.labels(SERVICE, msg.topic() or "", reason).inc()

    # -- the running job ---------------------------------------------------------------------------

    def _apply_cancels(self) -> None:
        self.cancels.poll()
        active = self._active
        if active is None or active.signal.is_set():
            return
        reason = self.cancels.canceled(active.job.spec.transfer_id, active.requested_at_ms)
        if reason is not None:
            log.info("transfer %s: cancel requested (%s)", active.job.spec.transfer_id, reason)
            active.signal.cancel(reason)

    def _reap(self) -> None:
        """After the job thread ended: commit or not by outcome, then resume the assignment."""
        active = self._active
        if active is None or active.thread.is_alive():
            return
        self._active = None
        tp = active.partition
        if active.outcome in (Outcome.COMPLETED, Outcome.FAILED, Outcome.DUPLICATE):
            self._commit(tp)
            self._retries = 0
        elif active.outcome is not Outcome.INTERRUPTED and tp in self._owned():
            # RETRY (or a job thread that died): the result could not be published. Never move past
            # the request; after a few tries, exit so a restart brings fresh Kafka clients.
            self._retries += 1
            if self._retries > MAX_RETRIES:
                raise RuntimeError(f"results cannot be published for {self._retries} attempts; restarting")
            self._deferred.insert(0, active.message)
            time.sleep(RETRY_PAUSE_SECONDS)
        self._scouted = frozenset()
        self._report()
        self._resume(self.consumer.assignment())

    def _commit(self, tp: TopicPartition) -> None:
        try:
            self.consumer.commit(offsets=[TopicPartition(tp.topic, tp.partition, tp.offset + 1)], asynchronous=False)
        except KafkaException as exc:
            # The partition moved meanwhile: its next owner sees the done checkpoint and skips the disk.
            log.warning("commit of %s[%d]@%d failed: %s", tp.topic, tp.partition, tp.offset + 1, exc)

    def _pause(self, partitions: list[TopicPartition]) -> None:
        try:
            self.consumer.pause(partitions)
        except KafkaException as exc:
            # Only partitions in flux (mid-rebalance) refuse; a message from one is deferred anyway.
            log.warning("pause: %s", exc)

    def _resume(self, partitions: list[TopicPartition]) -> None:
        try:
            self.consumer.resume(partitions)
            # librdkafka 2.16 fetches resumed partitions only at its broker thread's next wake-up (up to
            # 1 s, measured); a metadata request wakes it, so the next disk starts at once.
            self.consumer.list_topics(self.topics.requests.name, timeout=5)
        except KafkaException as exc:
            log.debug("resume: %s", exc)

    def _owned(self) -> set[TopicPartition]:
        return {TopicPartition(p.topic, p.partition) for p in self.consumer.assignment()}

    # -- the pool: status, waiting on peers, hand-off ----------------------------------------------

    def _report(self, *, stopped: bool = False, force: bool = False) -> None:
        active = self._active
        partitions = [] if stopped else [p.partition for p in self.consumer.assignment()]
        try:
            if stopped:
                self.directory.report(handoff.State.STOPPED, partitions, force=True)
            elif active is None:
                self.directory.report(handoff.State.IDLE, partitions, force=force)
            else:
                self.directory.report(handoff.State.BUSY, partitions, active.job.spec.transfer_id,
                                      active.job.spec.attempt, force=force)
        except (KafkaException, BufferError) as exc:
            log.warning("worker status not published: %s", exc)

    def _must_wait(self, msg: Message) -> bool:
        """Whether this request must wait: an older request of its partition waits, or a peer copies its disk."""
        if any(m.partition() == msg.partition() and m.topic() == msg.topic() and m.offset() < msg.offset()
               for m in self._deferred):
            return True
        key = (msg.key() or b"").decode(errors="replace")
        peer = handoff.copying_elsewhere(self.directory.peers, self.name, key, time.monotonic()) if key else None
        if peer is not None:
            log.info("transfer %s: worker %s is copying it; this request waits", key, peer,
                     extra={"transfer_id": key})
        return peer is not None

    def _next_deferred(self) -> Message | None:
        """The first held request free to start: oldest of its partition, its disk not copied by a peer."""
        oldest: dict[tuple[str, int], int] = {}
        for m in self._deferred:
            tp = (m.topic(), m.partition())
            oldest[tp] = min(oldest.get(tp, m.offset()), m.offset())
        now = time.monotonic()
        for i, m in enumerate(self._deferred):
            if m.offset() != oldest[(m.topic(), m.partition())]:
                continue
            key = (m.key() or b"").decode(errors="replace")
            if key and handoff.copying_elsewhere(self.directory.peers, self.name, key, now):
                continue
            return self._deferred.pop(i)
        return None

    def _hand_off(self) -> None:
        """While busy: give waiting requests to idle peers; fetch from the other partitions if any is idle."""
        active = self._active
        if active is None:
            return
        now = time.monotonic()
        self._handed = handoff.unconfirmed(self._handed, self.directory.peers, now)
        peers = handoff.idle_peers(self.directory.peers, self.name, now, self._handed)
        running = active.partition.partition
        waiting = {(m.partition(), m.offset()): m for m in self._deferred if m.topic() == self.topics.requests.name}
        for w in handoff.movable([handoff.Waiting(p, o, _handed_off(m)) for (p, o), m in waiting.items()], running):
            if not peers:
                break
            msg = waiting[(w.partition, w.offset)]
            if not self._forward(msg, peers.pop(0)):
                break
            self._deferred.remove(msg)
        held = {m.partition() for m in self._deferred}
        scout = frozenset(p.partition for p in self.consumer.assignment()
                          if peers and p.partition != running and p.partition not in held)
        if scout != self._scouted:
            topic = self.topics.requests.name
            if scout - self._scouted:
                self._resume([TopicPartition(topic, p) for p in scout - self._scouted])
            self._pause([TopicPartition(topic, p) for p in self._scouted - scout])
            self._scouted = scout

    def _forward(self, msg: Message, peer: handoff.PeerStatus) -> bool:
        """Re-publish `msg` into a partition of `peer`, then commit past it here. A failed commit leaves
        two copies of the request: the later one waits while the peer copies, then finds `done`."""
        key = (msg.key() or b"").decode(errors="replace")
        dest = handoff.destination(peer, key)
        headers = [*(msg.headers() or []), (HANDED_OFF_HEADER, self.name.encode())]
        try:
            self.publisher.publish_raw(msg.topic(), msg.key(), msg.value(), headers, partition=dest)
            self.publisher.flush()
        except (DeliveryError, KafkaException, BufferError) as exc:
            log.warning("hand-off of %s to %s failed, keeping it: %s", key, peer.worker, exc)
            return False
        self._commit(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
        self._handed[peer.worker] = handoff.HandedOff(key, time.monotonic())
        metrics.TRANSFER_HANDOFFS.inc()
        log.info("transfer %s: handed to idle worker %s (%s[%d] -> [%d])", key, peer.worker, msg.topic(),
                 msg.partition(), dest, extra={"transfer_id": key})
        return True

    # -- rebalance callbacks (run inside poll, on this thread) -------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.incremental_assign(partitions)
        if self._active is not None:
            self._pause(partitions)  # new partitions arrive unpaused
        log.info("assigned %d partition(s), owning %d", len(partitions), len(consumer.assignment()))
        self.assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %d partition(s), owning %d", len(partitions),
                 len(consumer.assignment()) - len(partitions))
        self._give_up(partitions, lost=False)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._give_up(partitions, lost=True)

    def _give_up(self, partitions: list[TopicPartition], *, lost: bool) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        # Not committed, so their new owner reads them again.
        self._deferred = [m for m in self._deferred if (m.topic(), m.partition()) not in gone]
        self._scouted = self._scouted - {p for _, p in gone}
        active = self._active
        if active is None:
            return
        mine = TopicPartition(active.partition.topic, active.partition.partition)
        if mine not in {TopicPartition(p.topic, p.partition) for p in partitions}:
            return
        log.info("partition %s[%d] %s while copying %s: stopping at a chunk boundary", mine.topic, mine.partition,
                 "lost" if lost else "revoked", active.job.spec.transfer_id)
        # Returning from the revoke callback hands the partition over, so the checkpoint must be written first.
        active.stop_and_wait(5.0 if lost else REVOKE_WAIT_SECONDS, lost=lost)
        self._reap()  # a job that finished just now is committed while the partition is still ours
        # Say at once that this disk is no longer copied here: its next owner waits while we report it.
        self._report(force=True)
