"""A consumer that commits only after processing and never drops a message.

Each message is decoded and checked (codec), then handed to the handler. A message that
cannot be decoded, or that the handler rejects, or whose handler keeps failing after the
retry policy, goes to the dead-letter topic with the reason; then the consumer goes on.
Offsets are stored after a message is processed or dead-lettered, and committed by the
commit policy, on revocation and on close — so a crash redelivers, never loses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from mtv.bus import dlq
from mtv.bus.codec import DEFAULT_MAX_BYTES, CodecError, decode
from mtv.bus.publisher import Publisher
from mtv.runtime import metrics
from mtv.v1 import event_pb2

log = logging.getLogger(__name__)


class Reject(Exception):
    """Raised by a handler for a well-formed message it will never be able to process
    (unknown plan, wrong state). The message goes to the DLQ at once, without retries."""


@dataclass(frozen=True)
class CommitPolicy:
    """Commit stored offsets after this many messages or this many seconds, whichever first."""

    max_messages: int
    max_seconds: float


# Named presets. AFTER_EACH suits minutes-long work (a disk copy); BATCHED suits short handlers.
COMMIT_AFTER_EACH = CommitPolicy(max_messages=1, max_seconds=0.0)
COMMIT_BATCHED = CommitPolicy(max_messages=10_000, max_seconds=1.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing handler is retried before the message is dead-lettered."""

    attempts: int = 3
    backoff_seconds: float = 0.5


Handler = Callable[[event_pb2.Event, Message], None]


class EventConsumer:
    """Consumes `topics` in `group_id` and calls `handler` for every valid event."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        handler: Handler,
        publisher: Publisher,
        *,
        service: str,
        commit: CommitPolicy = COMMIT_BATCHED,
        retry: RetryPolicy = RetryPolicy(),
        max_bytes: int = DEFAULT_MAX_BYTES,
        config: Mapping[str, object] | None = None,
    ) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                **(config or {}),
            }
        )
        self._topics = list(topics)
        self._handler = handler
        self._publisher = publisher
        self._service = service
        self._commit = commit
        self._retry = retry
        self._max_bytes = max_bytes
        self._uncommitted = 0
        self._last_commit = time.monotonic()
        self._stop = threading.Event()
        self._last_lag_report = 0.0
        self.assigned = threading.Event()
        self._consumer.subscribe(self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke)

    # -- lifecycle -------------------------------------------------------------------------

    def run(self, stop: threading.Event, poll_timeout: float = 0.5) -> None:
        """Process messages until `stop` is set, then commit and close."""
        self._stop = stop
        try:
            while not stop.is_set():
                self.poll_once(poll_timeout)
        finally:
            self.close()

    def close(self) -> None:
        self._commit_now()
        self._publisher.flush()
        self._consumer.close()

    # -- processing ------------------------------------------------------------------------

    def poll_once(self, timeout: float = 0.5, max_messages: int = 500) -> int:
        """Wait up to `timeout` for a message, then process what is already fetched (at most
        `max_messages`); return how many were handled."""
        handled = 0
        # poll(), not consume(n): consume waits for a full batch or its timeout, ~20x slower here.
        msg = self._consumer.poll(timeout)
        while msg is not None and not self._stop.is_set():
            # A stop leaves the rest unstored, so uncommitted: it is redelivered after restart.
            if msg.error() is not None:
                self._on_error(msg.error())
            else:
                self._process(msg)
                self._consumer.store_offsets(message=msg)
                self._uncommitted += 1
                handled += 1
                if self._commit.max_messages == 1:
                    self._commit_now()
            msg = self._consumer.poll(0) if handled < max_messages else None
        self._maybe_commit()
        return handled

    def _process(self, msg: Message) -> None:
        topic = msg.topic() or ""
        try:
            event = decode(msg.value(), self._max_bytes)
        except CodecError as exc:
            self._dead_letter(msg, exc.reason, str(exc))
            return
        for attempt in range(1, self._retry.attempts + 1):
            try:
                self._handler(event, msg)
                metrics.MESSAGES_PROCESSED.labels(self._service, topic).inc()
                return
            except Reject as exc:
                self._dead_letter(msg, "rejected", str(exc))
                return
            except Exception as exc:  # noqa: BLE001 — a handler bug must not stop the consumer
                if attempt == self._retry.attempts:
                    log.exception("handler failed %d times; dead-lettering", attempt)
                    self._dead_letter(msg, "handler_error", f"{type(exc).__name__}: {exc}")
                    return
                log.warning("handler failed (attempt %d/%d): %s", attempt, self._retry.attempts, exc)
                time.sleep(self._retry.backoff_seconds * attempt)

    def _dead_letter(self, msg: Message, reason: str, error: str) -> None:
        log.warning("dead-lettering %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), error)
        dlq.send(self._publisher, msg, reason=reason, error=error, service=self._service)
        # The DLQ copy must be durable before the original's offset can be committed.
        self._publisher.flush()
        metrics.DEAD_LETTERED.labels(self._service, msg.topic() or "", reason).inc()

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise KafkaException(err)
        log.warning("consumer error: %s", err.str())

    # -- commits ---------------------------------------------------------------------------

    def _report_lag(self) -> None:
        """Lag per assigned partition from cached watermarks (no broker round trip)."""
        try:
            assignment = self._consumer.assignment()
            for tp in self._consumer.position(assignment):
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    metrics.CONSUMER_LAG.labels(self._service, tp.topic, str(tp.partition)).set(high - tp.offset)
        except KafkaException:
            pass  # metrics must never stop the consumer

    def _maybe_commit(self) -> None:
        now = time.monotonic()
        if now - self._last_lag_report >= 5.0:
            self._last_lag_report = now
            self._report_lag()
        due = self._uncommitted >= self._commit.max_messages or (
            self._uncommitted and time.monotonic() - self._last_commit >= self._commit.max_seconds
        )
        if due:
            self._commit_now()

    def _commit_now(self) -> None:
        if self._uncommitted:
            try:
                self._consumer.commit(asynchronous=False)
            except KafkaException as exc:
                # No stored offsets for the current assignment is not an error worth raising.
                if exc.args[0].code() != KafkaError._NO_OFFSET:
                    raise
        self._uncommitted = 0
        self._last_commit = time.monotonic()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit_now()
