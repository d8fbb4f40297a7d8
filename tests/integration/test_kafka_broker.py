"""The test broker behaves like Kafka: partitioned topics, idempotent produce, per-key order, fresh groups."""

from __future__ import annotations

import socket
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from mtv.devstack.kafka_broker import CONTROLLER_PORT_ENV, PORT_ENV, start_broker
from mtv.devstack.process import StackError

pytestmark = pytest.mark.kafka

MESSAGES = 30
KEYS = [f"vm-{n}" for n in range(5)]


def test_keyed_messages_round_trip_in_order(kafka_bootstrap: str) -> None:
    topic = f"mtv-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=30)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 3

    errors: list[str] = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True})
    for seq in range(MESSAGES):
        key = KEYS[seq % len(KEYS)]
        producer.produce(
            topic,
            key=key,
            value=str(seq).encode(),
            on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
        )
    assert producer.flush(30) == 0
    assert errors == []

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"mtv-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    seen: dict[str, list[int]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while sum(map(len, seen.values())) < MESSAGES and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            key = msg.key().decode()
            seen[key].append(int(msg.value().decode()))
            partitions[key].add(msg.partition())
    finally:
        consumer.close()

    expected = {key: [seq for seq in range(MESSAGES) if KEYS[seq % len(KEYS)] == key] for key in KEYS}
    assert dict(seen) == expected  # count and per-key order
    assert all(len(parts) == 1 for parts in partitions.values())  # a key sticks to one partition


@pytest.mark.parametrize(("which", "env"), [("port", PORT_ENV), ("controller_port", CONTROLLER_PORT_ENV)])
def test_taken_port_is_named(tmp_path: Path, which: str, env: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StackError, match=rf"port {port}\b.*{env}"):
            start_broker(tmp_path / "data", tmp_path / "kafka.log", tmp_path, **{which: port})
    assert not (tmp_path / "kafka.pid").exists()
