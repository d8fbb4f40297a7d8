"""End to end: the `make demo` flow in pytest — real Kafka, simulator, the four services with two
transfer worker processes — migrating every simulator VM (2 disks, 2 NICs each) to the local target."""

from __future__ import annotations

import os
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer
from prometheus_client.parser import text_string_to_metric_families

from mtv import topics
from mtv.bus.codec import decode
from mtv.devstack import demo, stack
from mtv.devstack.process import free_port
from mtv.v1 import migration_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.vsphere]


def _history(bootstrap: str, plan_id: str) -> dict[str, list[str]]:
    """Every VM's phases in the order they were published on mtv.vm.status.v1."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.partition.eof": True})
    consumer.subscribe([topics.VM_STATUS.name])
    phases: dict[str, list[str]] = defaultdict(list)
    eof: set[int] = set()
    while len(eof) < topics.VM_STATUS.partitions:
        msg = consumer.poll(2.0)
        if msg is None:
            continue
        if msg.error():
            eof.add(msg.partition())
            continue
        status = decode(msg.value()).vm_migration_status
        if status.plan_id == plan_id:
            name = migration_pb2.VmPhase.Name(status.phase)
            if not phases[status.vm_id] or phases[status.vm_id][-1] != name:
                phases[status.vm_id].append(name)
    consumer.close()
    return dict(phases)


def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_cold_migration_of_every_simulator_vm(tmp_path: Path) -> None:
    layout = stack.Layout(tmp_path / "run")
    env_vars = {var: str(free_port()) for var in stack.PORT_VARS}
    old = {k: os.environ.get(k) for k in env_vars}
    os.environ.update({**env_vars, "MTV_TRANSFER_WORKERS": "2"})
    try:
        env = stack.up(layout)
        try:
            result = demo.migrate(env, layout, timeout=600)
            history = _history(env["MTV_KAFKA_BOOTSTRAP"], result.plan_id)
            planner_metrics = _metrics(env["MTV_PLANNER_URL"])
            transfer_metrics = [_metrics(env["MTV_TRANSFER_URL"]), _metrics(env["MTV_TRANSFER_2_URL"])]
        finally:
            stack.down(layout)
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        os.environ.pop("MTV_TRANSFER_WORKERS", None)

    # Byte-identical disks: source (simulator manifest) == reported by the worker == image on disk.
    assert len(result.rows) == 3 * 2
    bad = [r for r in result.rows if not r.ok]
    assert not bad, bad
    assert not result.state.failed()
    plan = result.state.plans[result.plan_id]
    assert {d.state for d in plan.disks.values()} == {"completed"}

    # Manifests: per VM one VirtualMachine with its two disks and two NICs, two DataVolumes.
    kinds: dict[str, list[dict]] = defaultdict(list)
    for f in result.target.rglob("*.yaml"):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                kinds[doc["kind"]].append(doc)
    assert len(kinds["VirtualMachine"]) == 3
    assert len(kinds["DataVolume"]) == 6
    for vm in kinds["VirtualMachine"]:
        spec = vm["spec"]["template"]["spec"]
        assert len(spec["domain"]["devices"]["disks"]) == 2
        nics = spec["domain"]["devices"]["interfaces"]
        assert len(nics) == 2 and all(n.get("macAddress") for n in nics)
        assert sum("pod" in n for n in spec["networks"]) <= 1 and any("multus" in n for n in spec["networks"])
        assert vm["metadata"]["annotations"]["mtv.konveyor.io/source-vm-id"]
    assert {dv["metadata"]["namespace"] for dv in kinds["DataVolume"]} == {result.target.name}

    # Metrics: three migrations completed, none in flight, every disk's bytes counted by the workers.
    assert planner_metrics[("mtv_migrations_total", (("status", "completed"),))] == 3
    assert planner_metrics[("mtv_vms_in_flight", ())] == 0
    copied = sum(m.get(("mtv_disk_transfer_bytes_total", (("result", "completed"),)), 0) for m in transfer_metrics)
    assert copied == sum(d.total for d in plan.disks.values())

    # A complete event history per VM, in itinerary order.
    assert len(history) == 3
    for vm_id, phases in history.items():
        assert phases[-1] == "VM_PHASE_COMPLETED", (vm_id, phases)
        order = [p for p in ("VM_PHASE_POWER_OFF_SOURCE", "VM_PHASE_PREPARE_TARGET", "VM_PHASE_TRANSFER_DISKS",
                             "VM_PHASE_COMPLETED") if p in phases]
        assert order == ["VM_PHASE_POWER_OFF_SOURCE", "VM_PHASE_PREPARE_TARGET", "VM_PHASE_TRANSFER_DISKS",
                         "VM_PHASE_COMPLETED"], (vm_id, phases)
        assert [phases.index(p) for p in order] == sorted(phases.index(p) for p in order)
