"""Cost of the bus library over raw confluent-kafka, measured in the same run on the same broker.

Prints:
  bus_publish_events_per_second=   our Publisher (envelope + codec + routing)
  bus_publish_vs_raw=              ratio to a raw Producer sending the same bytes (1.0 = no overhead)
  bus_consume_events_per_second=   our EventConsumer (decode + checks + commit policy)
  bus_consume_vs_raw=              ratio to a raw Consumer reading the same messages
"""

from __future__ import annotations

import os
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from mtv import events, topics
from mtv.bus import EventConsumer, Publisher, encode
from mtv.v1 import event_pb2, transfer_pb2

N = int(os.environ.get("MTV_BENCH_EVENTS", "50000"))
PRODUCER_CONFIG = {"acks": "all", "enable.idempotence": True, "linger.ms": 5, "compression.type": "lz4"}


def _topic(bootstrap: str) -> topics.Topic:
    name = f"bench.bus.{uuid.uuid4().hex[:8]}"
    client = AdminClient({"bootstrap.servers": bootstrap})  # must outlive the future
    client.create_topics([NewTopic(name, 6, 1)])[name].result(30)
    return topics.Topic(name, topics.KeyBy.TRANSFER, 6, "bench")


def _progress(i: int) -> transfer_pb2.DiskTransferProgress:
    return transfer_pb2.DiskTransferProgress(transfer_id=f"plan/vm-{i % 50}/2000", bytes_done=i,
                                             bytes_total=N, rate_bytes_per_second=1e8, eta_seconds=3.0)


def bench_publish_ours(bootstrap: str, topic: topics.Topic) -> float:
    pub = Publisher(bootstrap, "bench", PRODUCER_CONFIG)
    pub.publish(events.make(_progress(0), source="bench"), topic=topic, key="warm-up")
    pub.flush()  # connection, metadata and producer id are not what we measure
    start = time.perf_counter()
    for i in range(N):
        pub.publish(events.make(_progress(i), source="bench", correlation_id="plan"), topic=topic)
    pub.flush()
    return time.perf_counter() - start


def bench_publish_raw(bootstrap: str, topic: topics.Topic) -> float:
    # A hand-written producer builds and serializes the same event; it skips our routing and headers.
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG})
    producer.produce(topic.name, value=encode(events.make(_progress(0), source="bench")), key=b"warm-up")
    producer.flush()
    start = time.perf_counter()
    for i in range(N):
        key = f"plan/vm-{i % 50}/2000".encode()
        value = encode(events.make(_progress(i), source="bench", correlation_id="plan"))
        while True:
            try:
                producer.produce(topic.name, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush()
    return time.perf_counter() - start


def bench_consume_ours(bootstrap: str, topic: topics.Topic) -> float:
    seen = 0
    start = 0.0

    def handle(event: object, msg: object) -> None:
        nonlocal seen, start
        start = start or time.perf_counter()  # from the first message, as the raw consumer is timed
        seen += 1

    consumer = EventConsumer(bootstrap, f"bench-{uuid.uuid4()}", [topic.name], handle,
                             Publisher(bootstrap, "bench-dlq"), service="bench")
    while seen < N + 1:
        consumer.poll_once(1.0)
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def bench_consume_raw(bootstrap: str, topic: topics.Topic) -> float:
    # A hand-written consumer that parses each event and commits at the end; no checks, no DLQ.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic.name])
    seen = 0
    start = 0.0
    while seen < N + 1:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        start = start or time.perf_counter()
        event_pb2.Event.FromString(msg.value())
        seen += 1
    elapsed = time.perf_counter() - start
    consumer.commit(asynchronous=False)
    consumer.close()
    return elapsed


def main() -> None:
    bootstrap = os.environ["MTV_KAFKA_BOOTSTRAP"]
    ours_topic, raw_topic = _topic(bootstrap), _topic(bootstrap)
    raw_pub = bench_publish_raw(bootstrap, raw_topic)
    ours_pub = bench_publish_ours(bootstrap, ours_topic)
    raw_con = bench_consume_raw(bootstrap, raw_topic)
    ours_con = bench_consume_ours(bootstrap, ours_topic)
    print(f"bus_events={N}")
    print(f"bus_publish_events_per_second={N / ours_pub:.0f}")
    print(f"bus_publish_vs_raw={raw_pub / ours_pub:.2f}")
    print(f"bus_consume_events_per_second={N / ours_con:.0f}")
    print(f"bus_consume_vs_raw={raw_con / ours_con:.2f}")


if __name__ == "__main__":
    main()
