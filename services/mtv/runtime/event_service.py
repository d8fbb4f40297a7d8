"""A confluent-kafka consumer service: dispatch each event by payload type to a handler.

A payload with no handler in this service is rejected to the dead-letter topic with a reason
naming the service and payload, never silently skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from confluent_kafka import Message

from mtv import events
from mtv.bus import COMMIT_BATCHED, CommitPolicy, EventConsumer, Publisher, Reject
from mtv.runtime import logging as mtv_logging
from mtv.runtime.lifecycle import serve
from mtv.runtime.settings import ServiceSettings
from mtv.topics import Topic
from mtv.v1 import event_pb2

EventHandler = Callable[[event_pb2.Event, Message], None]


def dispatcher(service: str, handlers: Mapping[str, EventHandler]) -> EventHandler:
    def handle(event: event_pb2.Event, msg: Message) -> None:
        field = events.payload_field(event) or ""
        handler = handlers.get(field)
        if handler is None:
            raise Reject(f"{service} does not handle {field} on {msg.topic()}")
        token = mtv_logging.correlation_id.set(event.envelope.correlation_id)
        try:
            handler(event, msg)
        finally:
            mtv_logging.correlation_id.reset(token)

    return handle


def run_event_service(
    service: str,
    settings: ServiceSettings,
    group_id: str,
    topics: Sequence[Topic],
    handlers: Mapping[str, EventHandler],
    commit: CommitPolicy = COMMIT_BATCHED,
) -> int:
    def run(stop: threading.Event, mark_ready: Callable[[], None]) -> None:
        publisher = Publisher(settings.kafka_bootstrap, client_id=f"mtv-{service}")
        consumer = EventConsumer(
            settings.kafka_bootstrap,
            group_id,
            [t.name for t in topics],
            dispatcher(service, handlers),
            publisher,
            service=service,
            commit=commit,
            max_bytes=settings.max_message_bytes,
        )
        while not stop.is_set() and not consumer.assigned.is_set():
            consumer.poll_once(0.2)
        mark_ready()
        consumer.run(stop)

    return serve(service, settings, run)
