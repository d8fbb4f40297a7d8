"""The planner's faust app: one agent reading its input topics, dispatching by payload type.

Events no handler knows, and messages that cannot be decoded, go to the dead-letter topic
with the reason; the agent goes on. Faust acknowledges (and later commits) an event only after
the agent has processed it (at_least_once), so a crash redelivers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import faust

from mtv import topics
from mtv.bus import faust_codec
from mtv.bus.faust_codec import Decoded
from mtv.runtime import metrics
from mtv.runtime.settings import ServiceSettings
from mtv.v1 import event_pb2

log = logging.getLogger(__name__)

SERVICE = "planner"
INPUTS = (topics.PLAN_COMMANDS, topics.PLAN_APPROVALS, topics.TARGET_RESULTS, topics.TRANSFER_RESULTS,
          topics.PROVIDER_EVENTS)

AsyncHandler = Callable[[event_pb2.Event], Awaitable[None]]


def faust_broker_url(bootstrap: str) -> str:
    return "kafka://" + ";".join(h.strip() for h in bootstrap.split(",") if h.strip())


def build_app(
    settings: ServiceSettings,
    handlers: Mapping[str, AsyncHandler],
    on_assigned: Callable[[], None] = lambda: None,
    app_id: str = "mtv-planner",
) -> faust.App:
    faust_codec.register()
    app = faust.App(
        app_id,
        broker=faust_broker_url(settings.kafka_bootstrap),
        web_enabled=False,
        topic_disable_leader=True,
        store="memory://",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
    )
    inputs = app.topic(*(t.name for t in INPUTS), key_serializer="raw", value_serializer=faust_codec.NAME)
    dlq = app.topic(topics.DLQ.name, key_serializer="raw", value_serializer="raw")

    async def dead_letter(ev: faust.types.EventT, reason: str, error: str) -> None:
        msg = ev.message
        log.warning("dead-lettering %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, error)
        headers = {
            "mtv-origin-topic": msg.topic.encode(),
            "mtv-origin-partition": str(msg.partition).encode(),
            "mtv-origin-offset": str(msg.offset).encode(),
            "mtv-error-reason": reason.encode(),
            "mtv-error": error[:2000].encode(),
            "mtv-consumer": SERVICE.encode(),
        }
        raw = ev.value.raw if isinstance(ev.value, Decoded) else None
        # Wait for the broker's ack: the original is acked only after its DLQ copy is durable.
        await (await dlq.send(key=msg.key, value=raw, headers=headers))
        metrics.DEAD_LETTERED.labels(SERVICE, msg.topic, reason).inc()

    @app.agent(inputs)
    async def planner(stream: faust.StreamT) -> None:
        async for ev in stream.events():
            decoded: Decoded = ev.value
            if decoded.event is None:
                error = decoded.error
                await dead_letter(ev, error.reason if error else "empty", str(error or "no value"))
                continue
            field = decoded.event.WhichOneof("payload") or ""
            handler = handlers.get(field)
            if handler is None:
                await dead_letter(ev, "rejected", f"{SERVICE} does not handle {field} on {ev.message.topic}")
                continue
            try:
                await handler(decoded.event)
                metrics.MESSAGES_PROCESSED.labels(SERVICE, ev.message.topic).inc()
            except Exception as exc:  # noqa: BLE001 — one bad event must not stop the saga
                log.exception("handler for %s failed", field)
                await dead_letter(ev, "handler_error", f"{type(exc).__name__}: {exc}")

    @app.on_partitions_assigned.connect
    async def _assigned(app: faust.App, assigned: object, **kwargs: object) -> None:
        on_assigned()

    return app
