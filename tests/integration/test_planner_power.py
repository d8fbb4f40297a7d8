"""mtv.inventory.power against the vSphere simulator: every power answer the planner relies on, and the
handler's round trip over Kafka (request in, SourcePowerChanged out, caused by the request)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from confluent_kafka import Consumer
from pyVim.connect import SmartConnect

from mtv import events, topics
from mtv.bus import EventConsumer, Publisher, admin, codec
from mtv.devstack.vsphere_sim import SimHandle
from mtv.inventory.power import TOOLS_NOT_RUNNING, change_power, power_handler, power_state
from mtv.provider_store import ProviderRecord, ProviderStore
from mtv.runtime.event_service import dispatcher
from mtv.v1 import common_pb2, inventory_pb2

ON, OFF = common_pb2.POWER_STATE_ON, common_pb2.POWER_STATE_OFF
SHUTDOWN, POWER_OFF, POWER_ON = (inventory_pb2.POWER_ACTION_SHUTDOWN_GUEST, inventory_pb2.POWER_ACTION_POWER_OFF,
                                 inventory_pb2.POWER_ACTION_POWER_ON)


@pytest.fixture
def provider(vsphere_sim: SimHandle, tmp_path: Any) -> Iterator[tuple[str, Any, str]]:
    """(provider id, service_instance_for, a VM id): credentials come from a ProviderStore, as in the inventory."""
    store = ProviderStore(tmp_path / "providers")
    record = store.add(ProviderRecord(id=str(uuid.uuid4()), name="sim", type="vsphere", url=vsphere_sim.url,
                                      username=vsphere_sim.username, insecure_skip_verify=True), vsphere_sim.password)
    sessions: dict[str, Any] = {}

    def service_instance_for(provider_id: str) -> Any:
        if provider_id not in sessions:
            rec = store.get(provider_id)
            url = urlparse(rec.url)
            sessions[provider_id] = SmartConnect(host=url.hostname, port=url.port, user=rec.username,
                                                 pwd=store.password(rec), disableSslCertValidation=True)
        return sessions[provider_id]

    vm_id = vsphere_sim.load_manifest()["vms"][-1]["moref"]  # the planner tests use the first ones
    si = service_instance_for(record.id)
    before = power_state(si, vm_id)
    yield record.id, service_instance_for, vm_id
    if power_state(si, vm_id) != before:  # the simulator is shared by the session
        change_power(service_instance_for, inventory_pb2.SourcePowerRequested(
            provider_id=record.id, vm_id=vm_id, action=POWER_ON if before == ON else POWER_OFF))


def _req(provider_id: str, vm_id: str, action: int) -> inventory_pb2.SourcePowerRequested:
    return inventory_pb2.SourcePowerRequested(provider_id=provider_id, vm_id=vm_id, action=action, plan_id="plan-x")


@pytest.mark.vsphere
def test_power_answers_on_the_simulator(provider: tuple[str, Any, str]) -> None:
    provider_id, si_for, vm_id = provider
    change_power(si_for, _req(provider_id, vm_id, POWER_ON))
    # The simulator runs no VMware Tools: the guest cannot shut itself down, and says so.
    refused = change_power(si_for, _req(provider_id, vm_id, SHUTDOWN))
    assert refused.error == TOOLS_NOT_RUNNING and power_state(si_for(provider_id), vm_id) == ON
    off = change_power(si_for, _req(provider_id, vm_id, POWER_OFF))
    assert (off.error, off.power_state, off.plan_id, off.action) == ("", OFF, "plan-x", POWER_OFF)
    # Already off: vSphere's InvalidPowerState means the request is fulfilled.
    assert (change_power(si_for, _req(provider_id, vm_id, POWER_OFF)).error,
            change_power(si_for, _req(provider_id, vm_id, SHUTDOWN)).error) == ("", "")
    on = change_power(si_for, _req(provider_id, vm_id, POWER_ON))
    assert (on.error, on.power_state) == ("", ON)
    assert change_power(si_for, _req(provider_id, vm_id, POWER_ON)).power_state == ON
    missing = change_power(si_for, _req(provider_id, "vm-99999", POWER_OFF))
    assert missing.error == f"VM vm-99999 not found on provider {provider_id}"
    unknown = change_power(si_for, _req("no-such-provider", vm_id, POWER_OFF))
    assert "no-such-provider" in unknown.error


@pytest.mark.kafka
@pytest.mark.vsphere
def test_power_handler_answers_a_request_over_kafka(provider: tuple[str, Any, str], kafka_bootstrap: str) -> None:
    provider_id, si_for, vm_id = provider
    admin.ensure_topics(kafka_bootstrap)
    publisher = Publisher(kafka_bootstrap, "power-test")
    handler = power_handler(si_for, publisher)
    consumer = EventConsumer(kafka_bootstrap, f"power-{uuid.uuid4()}", [topics.PROVIDER_COMMANDS.name],
                             dispatcher("inventory", {"source_power_requested": lambda e, m: handler(e, m) if
                                                      e.source_power_requested.provider_id == provider_id else None}),
                             publisher, service="inventory")
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"power-reader-{uuid.uuid4()}",
                       "auto.offset.reset": "earliest"})
    reader.subscribe([topics.PROVIDER_EVENTS.name])
    try:
        request = events.make(_req(provider_id, vm_id, POWER_OFF), source="planner", correlation_id="plan-x")
        publisher.publish(request)
        publisher.flush()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = reader.poll(0.5)
            if msg is None or msg.error() or msg.value() is None:
                continue
            event = codec.decode(msg.value())
            if event.envelope.causation_id == request.envelope.event_id:
                answer = event.source_power_changed
                assert (answer.vm_id, answer.power_state, answer.error) == (vm_id, OFF, "")
                assert event.envelope.correlation_id == "plan-x" and msg.key() == provider_id.encode()
                return
        raise AssertionError("no SourcePowerChanged for the request")
    finally:
        stop.set()
        thread.join(10)  # run() commits, flushes and closes the consumer
        reader.close()
