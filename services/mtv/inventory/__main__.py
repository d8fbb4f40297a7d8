"""`mtv-inventory` / `python -m mtv.inventory`: providers, vSphere discovery, live updates, queries.

Start-up: restore the last published inventory from the compacted state topic, start a collector
per stored provider, serve gRPC on MTV_GRPC_HOST:MTV_GRPC_PORT, and consume provider commands.
Ready (/readyz) once gRPC listens and the consumer has its partitions; providers report their own
status on mtv.provider.events.v1, so an unreachable vCenter does not make the service unready.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from pydantic import Field

from mtv import topics
from mtv.bus import EventConsumer, Publisher
from mtv.inventory import grpc_server, power, state_log
from mtv.inventory.discovery import Backoff, CollectorOptions
from mtv.inventory.errors import RedactFilter
from mtv.inventory.providers import ProviderManager
from mtv.inventory.publish import EventSink
from mtv.provider_store import ProviderStore
from mtv.runtime.event_service import dispatcher
from mtv.runtime.lifecycle import serve
from mtv.runtime.settings import ServiceSettings, load

SERVICE = "inventory"
log = logging.getLogger("mtv.inventory")  # not "__main__": logs name the package


class InventorySettings(ServiceSettings):
    grpc_host: str = Field("127.0.0.1", description="address of the gRPC InventoryService (plaintext)")
    grpc_port: int = Field(0, description="port of the gRPC InventoryService (0 = any free port, logged)")
    provider_dir: Path = Field(Path(".run/providers"), description="provider records and private password files")
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 30.0
    auth_retry_seconds: float = Field(600.0, description="retry a rejected password this often (or on change)")
    update_wait_seconds: int = Field(5, description="WaitForUpdatesEx maxWaitSeconds")
    sync_wait_seconds: float = Field(10.0, description="how long a query waits for a provider's first discovery")
    restore_state: bool = Field(True, description="rebuild the last state from mtv.inventory.state.v1 at start")


def collector_options(settings: InventorySettings) -> CollectorOptions:
    return CollectorOptions(
        backoff=Backoff(initial=settings.retry_initial_seconds, maximum=settings.retry_max_seconds,
                        auth_retry=settings.auth_retry_seconds),
        wait_seconds=settings.update_wait_seconds,
    )


def main() -> int:
    settings = load(InventorySettings, SERVICE)

    def run(stop: threading.Event, mark_ready: Callable[[], None]) -> None:
        for handler in logging.getLogger().handlers:  # set up by serve(); scrub passwords from every line
            handler.addFilter(RedactFilter())
        store = ProviderStore(settings.provider_dir)
        publisher = Publisher(settings.kafka_bootstrap, client_id=f"mtv-{SERVICE}")
        restored = {}
        if settings.restore_state:
            restored = state_log.read_state(settings.kafka_bootstrap, [r.id for r in store.list()])
            log.info("restored %d object(s) of %d provider(s) from %s", sum(map(len, restored.values())),
                     len(restored), topics.INVENTORY_STATE.name)
        manager = ProviderManager(store, EventSink(publisher), collector_options(settings), restored)
        server, port = grpc_server.serve(manager, settings.grpc_host, settings.grpc_port, settings.sync_wait_seconds)
        # Logged in a fixed form so `make up` and tests can find the port of a port-0 service.
        log.info("grpc endpoint on %s:%d", settings.grpc_host, port, extra={"event_type": "grpc_endpoint"})
        manager.start()
        # Source power requests from the planner, run with the provider's credentials (power.py).
        handlers = {"source_power_requested": power.power_handler(manager.service_instance, publisher, SERVICE)}
        consumer = EventConsumer(settings.kafka_bootstrap, "mtv-inventory", [topics.PROVIDER_COMMANDS.name],
                                 dispatcher(SERVICE, handlers), publisher, service=SERVICE,
                                 max_bytes=settings.max_message_bytes)
        try:
            while not stop.is_set() and not consumer.assigned.is_set():
                consumer.poll_once(0.2)
            mark_ready()
            consumer.run(stop)
        finally:
            server.stop(grace=2).wait(5)
            manager.stop()
            publisher.flush()

    return serve(SERVICE, settings, run)


if __name__ == "__main__":
    sys.exit(main())
