"""The planner's Kafka edge around the synchronous `Planner` (service.py).

    start:   create topics; read the table changelogs back (tables.py); derive indexes (Planner.recovered)
    threads: consumer   the input topics and transfer progress, consumer group = MTV_PLANNER_APP_ID
             inventory  mtv.inventory.state.v1, all partitions, from the beginning (inventory_reader.py)
             ticker     every 0.5 s: deadlines, debounced re-validation, throttled statuses
             gRPC       PlannerService (grpc_api.py)
    The Planner is not thread-safe: every thread holds `lock` while it calls it and publishes its outbox.

At least once, with nothing lost: a handler writes its state (table records) and queues its events on
the one producer; input offsets are committed only after that producer was flushed, so a crash at any
point redelivers the input to a planner that either has not seen it or ignores it as a duplicate.
Undecodable or unknown messages, and events about unknown plans, VMs or disks, go to the DLQ with the
reason; an approval without a signature is answered with a PlanRejected instead.

This edge replaced a faust worker (the skeleton's): its consumer stalled reproducibly when the planner
started with a backlog and table changelogs to recover (fetching stopped, flow active, queues empty,
nothing paused). The tables keep faust's semantics: compacted changelogs, memory store rebuilt on start.

The planner runs as ONE instance per installation: its state is global (plans, the inventory).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from mtv import events, topics
from mtv.approvals import KeyLookup
from mtv.bus import Publisher, dlq
from mtv.bus.codec import CodecError, decode
from mtv.planner import grpc_api, tables
from mtv.planner.errors import Rejected
from mtv.planner.inventory import Inventory
from mtv.planner.inventory_reader import InventoryReader, Record
from mtv.planner.service import Planner
from mtv.planner.settings import PlannerSettings
from mtv.planner.state import SERVICE, PlannerState, Store
from mtv.runtime import logging as mtv_logging
from mtv.runtime import metrics
from mtv.v1 import event_pb2

log = logging.getLogger(__name__)

INPUTS = (topics.PLAN_COMMANDS, topics.PLAN_APPROVALS, topics.TARGET_RESULTS, topics.TRANSFER_RESULTS,
          topics.PROVIDER_EVENTS, topics.TRANSFER_PROGRESS)
TABLES = ("plans", "specs", "validations", "vms", "names", "providers")
TICK_SECONDS = 0.5
COMMIT_SECONDS = 0.5
SUBMIT_TIMEOUT = 30.0


def salvage_approval(raw: bytes | None) -> event_pb2.Event | None:
    """An approval the codec refused only for its missing signature or body: the planner must answer it
    with a PlanRejected (the sender needs the reason), not silently dead-letter it."""
    event = event_pb2.Event()
    try:
        event.ParseFromString(raw or b"")
    except Exception:  # noqa: BLE001 — not protobuf at all: dead-letter
        return None
    missing = set(events.missing_fields(event))
    if event.WhichOneof("payload") == "plan_approved" and missing <= {"plan_approved.approval",
                                                                      "plan_approved.signature"}:
        return event
    return None


def _poll_batch(consumer: Consumer, limit: int, timeout: float = 0.1) -> list[Message]:
    """What is fetched already, up to `limit`, waiting at most `timeout` for the first message.
    (consume(n, t) would wait for n messages or the full timeout: a 100 ms delay on every step.)"""
    batch: list[Message] = []
    msg = consumer.poll(timeout)
    while msg is not None:
        batch.append(msg)
        msg = consumer.poll(0) if len(batch) < limit else None
    return batch


@dataclass
class _Waiter:
    done: threading.Event = field(default_factory=threading.Event)
    verdict: str = ""


class PlannerApp:
    def __init__(self, settings: PlannerSettings, keys: KeyLookup) -> None:
        self.settings = settings
        self.publisher = Publisher(settings.kafka_bootstrap, f"mtv-{SERVICE}", {"linger.ms": 2})
        self.tables = {name: tables.ChangelogTable(name, tables.changelog_topic(settings.planner_app_id, name),
                                                   self.publisher) for name in TABLES}
        state = PlannerState(Store(**self.tables), Inventory(), keys, settings.config())  # type: ignore[arg-type]
        self.planner = Planner(state)
        self.lock = threading.RLock()
        self.flags: dict[str, bool] = {}
        self.grpc_port = 0
        self._waiters: dict[str, _Waiter] = {}

    def ready(self) -> bool:
        return all(self.flags.get(k) for k in ("recovered", "assigned", "inventory", "grpc"))

    # -- outputs ----------------------------------------------------------------------------------

    def flush_outbox(self) -> None:
        """Publish what the planner decided (the caller holds the lock: outputs keep their order)."""
        for item in self.planner.st.take_outbox():
            self.publisher.publish(item.event, item.topic, item.key)

    def submit(self, event: event_pb2.Event) -> str:
        """Publish a command as any client would and wait until the consumer has applied it."""
        waiter = self._waiters[event.envelope.event_id] = _Waiter()
        try:
            self.publisher.publish(event)
            if not waiter.done.wait(SUBMIT_TIMEOUT):
                return f"timeout: the planner did not apply the command within {SUBMIT_TIMEOUT:.0f} s"
            return waiter.verdict
        finally:
            self._waiters.pop(event.envelope.event_id, None)

    # -- the consumer -----------------------------------------------------------------------------

    def _process(self, msg: Message) -> None:
        """Apply one input message (the caller holds the lock)."""
        try:
            event = decode(msg.value(), self.settings.max_message_bytes)
        except CodecError as exc:
            salvaged = salvage_approval(msg.value()) if exc.reason == "missing_fields" else None
            if salvaged is None:
                self._dead_letter(msg, exc.reason, str(exc))
                return
            event = salvaged
        token = mtv_logging.correlation_id.set(event.envelope.correlation_id)
        failure: tuple[str, str] | None = None
        try:
            verdict = self.planner.handle(event, (msg.key() or b"").decode(errors="replace"))
        except Rejected as exc:
            verdict, failure = f"rejected: {exc}", ("rejected", str(exc))
        except Exception as exc:  # noqa: BLE001 — one bad event must not stop the saga
            log.exception("handling %s failed", event.WhichOneof("payload"))
            verdict, failure = f"error: {exc}", ("handler_error", f"{type(exc).__name__}: {exc}")
        finally:
            mtv_logging.correlation_id.reset(token)
        self.flush_outbox()  # what was decided is published even when the event is dead-lettered
        if failure:
            self._dead_letter(msg, *failure)
        else:
            metrics.MESSAGES_PROCESSED.labels(SERVICE, msg.topic() or "").inc()
        waiter = self._waiters.get(event.envelope.event_id)
        if waiter is not None:
            waiter.verdict = verdict
            waiter.done.set()

    def _dead_letter(self, msg: Message, reason: str, error: str) -> None:
        log.warning("dead-lettering %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), error)
        # Durable before the original's offset is committed: commits follow a producer flush.
        dlq.send(self.publisher, msg, reason=reason, error=error, service=SERVICE)
        metrics.DEAD_LETTERED.labels(SERVICE, msg.topic() or "", reason).inc()

    def _consume(self, stop: threading.Event) -> None:
        app_id = self.settings.planner_app_id
        consumer = Consumer({"bootstrap.servers": self.settings.kafka_bootstrap, "group.id": app_id,
                             # Static membership: a restarted planner takes its partitions back at once
                             # (no wait for the old session to expire), and a second planner started with
                             # the same app id fences the first instead of splitting the work.
                             "group.instance.id": f"{app_id}-0", "session.timeout.ms": 10_000,
                             "enable.auto.commit": False, "enable.auto.offset.store": False,
                             "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100})

        def commit(*_: object) -> None:
            self.publisher.flush()  # changelog records, events and DLQ copies first, then the offsets
            try:
                consumer.commit(asynchronous=False)
            except Exception as exc:  # noqa: BLE001 — nothing stored yet is not an error
                if "NO_OFFSET" not in str(exc):
                    raise

        consumer.subscribe([t.name for t in INPUTS], on_assign=lambda c, p: self.flags.update(assigned=True),
                           on_revoke=commit)
        last_commit, pending = time.monotonic(), 0
        try:
            while not stop.is_set():
                good = [m for m in _poll_batch(consumer, 500) if self._usable(m)]
                if good:
                    with self.lock:
                        for msg in good:
                            self._process(msg)
                    for msg in good:
                        consumer.store_offsets(message=msg)
                    pending += len(good)
                if pending and time.monotonic() - last_commit >= COMMIT_SECONDS:
                    commit()
                    last_commit, pending = time.monotonic(), 0
        finally:
            if pending:
                commit()
            consumer.close()

    @staticmethod
    def _usable(msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.fatal():  # e.g. fenced: another planner took over this app id; end, do not compete
            raise KafkaException(err)
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", err.str())
        return False

    # -- the other threads ------------------------------------------------------------------------

    def _tick(self, stop: threading.Event) -> None:
        while not stop.wait(TICK_SECONDS):
            with self.lock:
                try:
                    self.planner.tick()
                except Exception:  # noqa: BLE001 — a bug in one tick must not end the ticks
                    log.exception("tick failed")
                self.flush_outbox()

    def _inventory(self, stop: threading.Event) -> None:
        def apply(batch: list[Record]) -> None:
            with self.lock:
                for key, change in batch:
                    self.planner.on_inventory(key, change)

        def loaded() -> None:
            with self.lock:
                self.planner.inventory_loaded()
            self.flags["inventory"] = True

        InventoryReader(self.settings.kafka_bootstrap, apply, loaded, self.settings.max_message_bytes).run(stop)

    def run(self, stop: threading.Event, mark_ready: Callable[[], None]) -> None:
        s = self.settings
        tables.ensure_topics(s.kafka_bootstrap, [t.topic for t in self.tables.values()])
        started = time.monotonic()
        records = tables.recover(s.kafka_bootstrap, list(self.tables.values()))
        with self.lock:
            self.planner.recovered()
        self.flags["recovered"] = True
        log.info("tables recovered from %d changelog record(s) in %.1f s", records, time.monotonic() - started)
        threads = [threading.Thread(target=f, args=(stop,), name=n, daemon=True)
                   for n, f in (("inventory", self._inventory), ("ticker", self._tick), ("consumer", self._consume))]
        for t in threads:
            t.start()
        servicer = grpc_api.PlannerServicer(self.planner, self.lock, self.submit, self.flush_outbox)
        server, self.grpc_port = grpc_api.start_server(servicer, s.planner_grpc_host, s.planner_grpc_port)
        self.flags["grpc"] = True
        log.info("grpc endpoint on %s:%d", s.planner_grpc_host, self.grpc_port, extra={"event_type": "grpc_endpoint"})
        try:
            while not stop.wait(0.2):
                if self.ready():
                    mark_ready()
                if not all(t.is_alive() for t in threads):
                    raise RuntimeError("a planner thread ended; see the log above")
        finally:
            stop.set()
            server.stop(2.0)
            for t in threads:
                t.join(30)
            self.publisher.flush()
