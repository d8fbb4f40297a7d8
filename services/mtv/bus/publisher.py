"""An idempotent, acks=all producer of `mtv.v1.Event`s (confluent-kafka)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from confluent_kafka import KafkaError, Message, Producer

from mtv import topics
from mtv.bus.codec import encode
from mtv.v1 import event_pb2

Headers = Sequence[tuple[str, bytes]]


class DeliveryError(RuntimeError):
    """The broker did not take a message; it was not published."""


def event_headers(event: event_pb2.Event) -> list[tuple[str, bytes]]:
    """Envelope fields as headers, so tools can filter without decoding protobuf."""
    env = event.envelope
    return [
        ("mtv-type", env.type.encode()),
        ("mtv-event-id", env.event_id.encode()),
        ("mtv-correlation-id", env.correlation_id.encode()),
    ]


class Publisher:
    """Publishes events with `acks=all` and idempotence, so a retry never duplicates or reorders."""

    def __init__(self, bootstrap: str, client_id: str, config: Mapping[str, object] | None = None) -> None:
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": client_id,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
                **(config or {}),
            }
        )
        self._lock = threading.Lock()
        self._errors: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._errors.append(f"{msg.topic()}: {err.str()}")

    def publish(
        self,
        event: event_pb2.Event,
        topic: topics.Topic | None = None,
        key: str | None = None,
        headers: Headers = (),
    ) -> None:
        """Queue `event` for delivery. Topic and key default to the registry's route for its payload."""
        if topic is None or key is None:
            default_topic, default_key = topics.route(event)
            topic = topic or default_topic
            key = default_key if key is None else key
        self.publish_raw(topic.name, key.encode(), encode(event), [*event_headers(event), *headers])

    def publish_raw(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers = (),
                    partition: int | None = None) -> None:
        """Queue raw bytes (tombstones, the dead-letter topic, a request handed to a given partition)."""
        where = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=list(headers),
                                       on_delivery=self._on_delivery, **where)
                break
            except BufferError:
                # Local queue full: serve delivery reports until there is room (backpressure).
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued message is acknowledged; raise DeliveryError otherwise."""
        remaining = self._producer.flush(timeout)
        with self._lock:
            errors, self._errors = self._errors, []
        if remaining:
            errors.append(f"{remaining} message(s) still queued after {timeout:.0f} s")
        if errors:
            raise DeliveryError("; ".join(errors[:5]) + " — is the broker reachable? (MTV_KAFKA_BOOTSTRAP)")

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
