"""The bus against a real broker: per-key order, commit after processing, dead-lettering."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, Message
from confluent_kafka.admin import AdminClient, NewTopic

from mtv import events, topics
from mtv.bus import COMMIT_AFTER_EACH, EventConsumer, Publisher, Reject, RetryPolicy, admin, dlq
from mtv.runtime import metrics
from mtv.v1 import event_pb2, transfer_pb2

pytestmark = pytest.mark.kafka


def _topic(bootstrap: str, partitions: int = 3) -> topics.Topic:
    name = f"test.bus.{uuid.uuid4().hex[:8]}.v1"
    client = AdminClient({"bootstrap.servers": bootstrap})
    client.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return topics.Topic(name, topics.KeyBy.TRANSFER, partitions, "test")


def _progress(tid: str, n: int) -> event_pb2.Event:
    return events.make(transfer_pb2.DiskTransferProgress(transfer_id=tid, bytes_done=n, bytes_total=1000),
                       source="test", correlation_id="plan-t")


def _drain(consumer: EventConsumer, until: callable, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out waiting for messages"
        consumer.poll_once(0.2)


def _dlq_messages(bootstrap: str, origin_topic: str, want: int, timeout: float = 30.0) -> list[Message]:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dlq-reader-{uuid.uuid4()}",
                       "auto.offset.reset": "earliest"})
    reader.subscribe([topics.DLQ.name])
    found: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < want and time.monotonic() < deadline:
            msg = reader.poll(0.5)
            if msg is None or msg.error():
                continue
            if dlq.headers_dict(msg).get(dlq.ORIGIN_TOPIC) == origin_topic:
                found.append(msg)
    finally:
        reader.close()
    return found


@pytest.fixture(scope="module")
def registry_topics(kafka_bootstrap: str) -> str:
    admin.ensure_topics(kafka_bootstrap)
    # A second call finds them all and creates nothing: idempotent.
    assert admin.ensure_topics(kafka_bootstrap) == []
    return kafka_bootstrap


def test_events_arrive_in_per_key_order(registry_topics: str) -> None:
    bootstrap = registry_topics
    topic = _topic(bootstrap, partitions=3)
    publisher = Publisher(bootstrap, "test-producer")
    keys = [f"plan/vm-{i}/2000" for i in range(5)]
    per_key = 40
    for n in range(per_key):
        for key in keys:
            publisher.publish(_progress(key, n), topic=topic, key=key)
    publisher.flush()

    seen: dict[str, list[int]] = defaultdict(list)

    def handle(event: event_pb2.Event, msg: Message) -> None:
        assert msg.key().decode() == event.disk_transfer_progress.transfer_id
        seen[event.disk_transfer_progress.transfer_id].append(event.disk_transfer_progress.bytes_done)

    consumer = EventConsumer(bootstrap, f"g-{uuid.uuid4()}", [topic.name], handle, publisher, service="test-order")
    _drain(consumer, lambda: sum(map(len, seen.values())) >= len(keys) * per_key)
    consumer._report_lag()  # noqa: SLF001 — normally every 5 s
    lag = {s.labels["partition"]: s.value for s in metrics.CONSUMER_LAG.collect()[0].samples
           if s.labels["service"] == "test-order"}
    consumer.close()
    assert set(lag) == {"0", "1", "2"} and set(lag.values()) == {0.0}, lag
    assert sorted(seen) == sorted(keys)
    for key in keys:
        assert seen[key] == list(range(per_key)), f"{key} out of order"


def test_malformed_message_is_dead_lettered_and_the_next_is_processed(registry_topics: str) -> None:
    bootstrap = registry_topics
    topic = _topic(bootstrap, partitions=1)
    publisher = Publisher(bootstrap, "test-producer")
    publisher.publish_raw(topic.name, b"disk-1", b"\x00\xffnot protobuf at all")
    publisher.publish(_progress("disk-1", 7), topic=topic, key="disk-1")
    publisher.flush()

    handled: list[int] = []
    consumer = EventConsumer(bootstrap, f"g-{uuid.uuid4()}", [topic.name],
                             lambda e, m: handled.append(e.disk_transfer_progress.bytes_done), publisher,
                             service="test")
    _drain(consumer, lambda: handled == [7])
    consumer.close()

    dead = _dlq_messages(bootstrap, topic.name, want=1)
    assert len(dead) == 1
    headers = dlq.headers_dict(dead[0])
    assert headers[dlq.ERROR_REASON] == "invalid_protobuf"
    assert "not a valid mtv.v1.Event" in headers[dlq.ERROR]
    assert headers[dlq.ORIGIN_PARTITION] == "0"
    assert headers[dlq.ORIGIN_OFFSET] == "0"
    assert headers[dlq.CONSUMER] == "test"
    assert dead[0].value() == b"\x00\xffnot protobuf at all"
    assert dead[0].key() == b"disk-1"


def test_rejected_and_failing_messages_are_dead_lettered_with_reasons(registry_topics: str) -> None:
    bootstrap = registry_topics
    topic = _topic(bootstrap, partitions=1)
    publisher = Publisher(bootstrap, "test-producer")
    for n in (1, 2, 3):
        publisher.publish(_progress("d", n), topic=topic, key="d")
    publisher.flush()
    calls: list[int] = []

    def handle(event: event_pb2.Event, msg: Message) -> None:
        n = event.disk_transfer_progress.bytes_done
        calls.append(n)
        if n == 1:
            raise Reject("unknown plan plan-t")
        if n == 2:
            raise RuntimeError("boom")

    consumer = EventConsumer(bootstrap, f"g-{uuid.uuid4()}", [topic.name], handle, publisher, service="test",
                             retry=RetryPolicy(attempts=2, backoff_seconds=0.01))
    _drain(consumer, lambda: 3 in calls)
    consumer.close()
    assert calls == [1, 2, 2, 3]  # rejected once, failing one retried, then the next processed
    reasons = sorted(dlq.headers_dict(m)[dlq.ERROR_REASON] for m in _dlq_messages(bootstrap, topic.name, 2))
    assert reasons == ["handler_error", "rejected"]


def test_offsets_are_committed_only_after_processing(registry_topics: str) -> None:
    bootstrap = registry_topics
    topic = _topic(bootstrap, partitions=1)
    group = f"g-{uuid.uuid4()}"
    publisher = Publisher(bootstrap, "test-producer")
    for n in range(6):
        publisher.publish(_progress("d", n), topic=topic, key="d")
    publisher.flush()

    got: list[int] = []
    stop = threading.Event()

    def crash_at_3(event: event_pb2.Event, msg: Message) -> None:
        n = event.disk_transfer_progress.bytes_done
        if n == 3:
            stop.set()
            raise KeyboardInterrupt  # the process dies in the middle of message 3
        got.append(n)

    first = EventConsumer(bootstrap, group, [topic.name], crash_at_3, publisher, service="test",
                          commit=COMMIT_AFTER_EACH)
    with pytest.raises(KeyboardInterrupt):
        _drain(first, lambda: stop.is_set())
    first._consumer.close()  # noqa: SLF001 — a crash: no final commit
    assert got == [0, 1, 2]

    again: list[int] = []
    second = EventConsumer(bootstrap, group, [topic.name],
                           lambda e, m: again.append(e.disk_transfer_progress.bytes_done), publisher,
                           service="test")
    _drain(second, lambda: len(again) >= 3)
    second.close()
    assert again == [3, 4, 5]  # message 3 was redelivered, 0-2 were not
