"""A 1,000-VM plan through the real planner process, against a 1,000-VM inventory on the state topic.

A small responder plays the other services (inventory power answers without VMware Tools, so every
VM goes guest-shutdown -> refused -> hard power-off; converter prepare/convert; transfer workers
completing each disk at once), publishing their real reply events. Nothing in the planner is faked.

Prints:
  plan_1000_validated_seconds=         CreatePlan call -> PlanValidated on mtv.plan.events.v1
  plan_1000_first_transfers_seconds=   signed approval published -> DiskTransferRequested for every disk of
                                       the first maxInFlight (10) VMs
  plan_1000_completed_seconds=         signed approval published -> PlanStatusChanged SUCCEEDED (all 1,000 VMs)
  plan_1000_vms_per_second=            1,000 / completed
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
from confluent_kafka import Consumer, TopicPartition

from mtv import approvals, events, topics
from mtv import model as m
from mtv.bus import Publisher, admin, codec
from mtv.devstack.process import free_port
from mtv.v1 import (
    common_pb2,
    inventory_pb2,
    plan_pb2,
    planner_service_pb2,
    planner_service_pb2_grpc,
    target_pb2,
    transfer_pb2,
)

VMS = int(os.environ.get("MTV_BENCH_PLAN_VMS", "1000"))
IN_FLIGHT = 10
DISKS = 2
KEY = os.urandom(32)


def publish_inventory(bootstrap: str, provider_id: str) -> list[str]:
    pub = Publisher(bootstrap, "bench-inventory")

    def put(object_id: str, obj: inventory_pb2.InventoryObject) -> None:
        change = inventory_pb2.InventoryChanged(provider_id=provider_id, change=inventory_pb2.CHANGE_KIND_ADDED,
                                                object_id=object_id, object=obj)
        pub.publish(events.make(change, source="inventory", correlation_id=provider_id), topics.INVENTORY_STATE,
                    topics.object_key(provider_id, object_id))

    put("network-1", inventory_pb2.InventoryObject(network=inventory_pb2.Network(id="network-1", name="VM Network")))
    put("datastore-1", inventory_pb2.InventoryObject(datastore=inventory_pb2.Datastore(id="datastore-1",
                                                                                        name="LocalDS_0")))
    ids = []
    for i in range(VMS):
        name = f"bench-vm-{i:04d}"
        vm = m.Vm(id=f"vm-{10_000 + i}", name=name, power_state=m.PowerState.ON,
                  disks=tuple(m.Disk(key=2000 + d, file=f"[LocalDS_0] {name}/{name}_{d}.vmdk", capacity_bytes=1 << 30,
                                     datastore_id="datastore-1", datastore_name="LocalDS_0", datacenter_path="DC0")
                              for d in range(DISKS)),
                  nics=(m.Nic(mac=f"00:50:56:01:{i // 256:02x}:{i % 256:02x}", network_id="network-1",
                              network_name="VM Network"),))
        put(vm.id, inventory_pb2.InventoryObject(vm=m.vm_to_proto(vm)))
        ids.append(vm.id)
    pub.flush()
    return ids


class Responder(threading.Thread):
    """Answers power, prepare, transfer and convert requests of one plan; notes the times that matter."""

    def __init__(self, bootstrap: str, plan_id: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.plan_id = bootstrap, plan_id
        self.pub = Publisher(bootstrap, "bench-responder", {"linger.ms": 1})
        self.halt = threading.Event()
        self.assigned = threading.Event()
        self.first_transfers_at = self.completed_at = 0.0
        self.validated: dict[str, float] = {}  # every plan's: ours is known only when CreatePlan returns
        self.transfers_by_vm: dict[str, int] = {}
        self.first_vms: list[str] = []

    def run(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                             "auto.offset.reset": "latest", "fetch.wait.max.ms": 10})
        consumer.subscribe([t.name for t in (topics.PROVIDER_COMMANDS, topics.TARGET_REQUESTS,
                                             topics.TRANSFER_REQUESTS, topics.PLAN_EVENTS)],
                           on_assign=lambda c, p: self.assigned.set())
        while not self.halt.is_set():
            msg = consumer.poll(0.05)  # returns as soon as a message is there: no batching delay
            if msg is None:
                self.pub.flush()  # idle: make sure every answer left (linger.ms=1 sends them anyway)
                continue
            if msg.error() or msg.value() is None:
                continue
            event = codec.decode(msg.value())
            if event.WhichOneof("payload") == "plan_validated":
                self.validated.setdefault(event.plan_validated.plan_id, time.monotonic())
            elif event.envelope.correlation_id == self.plan_id:
                self.answer(event)
        consumer.close()

    def reply(self, cause: object, payload: object, source: str) -> None:
        self.pub.publish(events.child_of(cause, payload, source=source))  # type: ignore[arg-type]

    def answer(self, e: object) -> None:  # noqa: C901 — one branch per request type
        kind = e.WhichOneof("payload")  # type: ignore[attr-defined]
        if kind == "plan_status_changed" and e.plan_status_changed.phase == plan_pb2.PLAN_PHASE_SUCCEEDED:  # type: ignore[attr-defined]
            self.completed_at = time.monotonic()
        elif kind == "source_power_requested":
            r = e.source_power_requested  # type: ignore[attr-defined]
            answer = inventory_pb2.SourcePowerChanged(provider_id=r.provider_id, vm_id=r.vm_id, action=r.action,
                                                      plan_id=r.plan_id, power_state=common_pb2.POWER_STATE_OFF)
            if r.action == inventory_pb2.POWER_ACTION_SHUTDOWN_GUEST:
                answer.error, answer.power_state = "VMware Tools not running", common_pb2.POWER_STATE_ON
            self.reply(e, answer, "inventory")
        elif kind == "target_prepare_requested":
            r = e.target_prepare_requested  # type: ignore[attr-defined]
            self.reply(e, target_pb2.TargetPrepared(plan_id=r.plan_id, vm_id=r.vm.id, disks=[
                target_pb2.PreparedDisk(disk_key=d.key, sink_uri=f"/bench/{r.target_name}/{d.key}.img",
                                        size_bytes=d.capacity_bytes) for d in r.vm.disks]), "converter")
        elif kind == "disk_transfer_requested":
            r = e.disk_transfer_requested  # type: ignore[attr-defined]
            self.transfers_by_vm[r.vm_id] = self.transfers_by_vm.get(r.vm_id, 0) + 1
            if r.vm_id not in self.first_vms and len(self.first_vms) < IN_FLIGHT:
                self.first_vms.append(r.vm_id)
            if (not self.first_transfers_at and len(self.first_vms) == IN_FLIGHT
                    and all(self.transfers_by_vm[v] >= DISKS for v in self.first_vms)):
                self.first_transfers_at = time.monotonic()
            self.reply(e, transfer_pb2.DiskTransferCompleted(transfer_id=r.transfer_id, plan_id=r.plan_id,
                                                             vm_id=r.vm_id, sha256="0" * 64,
                                                             bytes_total=r.size_bytes), "transfer")
        elif kind == "convert_requested":
            r = e.convert_requested  # type: ignore[attr-defined]
            self.reply(e, target_pb2.VmCreated(plan_id=r.plan_id, vm_id=r.vm.id, namespace="bench",
                                               name=r.target_name), "converter")


def start_planner(bootstrap: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    keys = tmp / "approvers.yaml"
    keys.write_text(f"bench: {base64.b64encode(KEY).decode()}\n")
    keys.chmod(0o600)
    http, grpc_port, app_id = free_port(), free_port(), f"bench-planner-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "MTV_KAFKA_BOOTSTRAP": bootstrap, "MTV_HTTP_PORT": str(http),
           "MTV_PLANNER_GRPC_PORT": str(grpc_port), "MTV_PLANNER_APP_ID": app_id,
           "MTV_APPROVER_KEYS_FILE": str(keys), "MTV_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "mtv.planner"], env=env, stdout=subprocess.DEVNULL,
                            stderr=(tmp / "planner.log").open("wb"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"planner exited: {(tmp / 'planner.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2):
                return proc, grpc_port, app_id
        except OSError:
            time.sleep(0.3)
    raise SystemExit("planner not ready within 120 s")


def wait_caught_up(bootstrap: str, group: str, timeout: float = 300.0) -> None:
    """Wait until the planner has committed everything on its input topics: on a broker with history a
    new planner first works through it, and that is not what this benchmark measures."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    names = [t.name for t in (topics.PLAN_COMMANDS, topics.PLAN_APPROVALS, topics.TARGET_RESULTS,
                              topics.TRANSFER_RESULTS, topics.PROVIDER_EVENTS)]
    tps = [TopicPartition(t, p) for t in names for p in probe.list_topics(t, timeout=10).topics[t].partitions]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            committed = probe.committed(tps, timeout=10)
            if all(max(c.offset, 0) >= probe.get_watermark_offsets(c, timeout=10)[1] for c in committed):
                return
            time.sleep(0.5)
    finally:
        probe.close()
    raise SystemExit("the planner did not catch up with the topics' history")


def wait_for(check: object, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()  # type: ignore[operator]
        if value:
            return float(value)
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    bootstrap = os.environ["MTV_KAFKA_BOOTSTRAP"]
    admin.ensure_topics(bootstrap)
    provider_id = str(uuid.uuid4())
    vm_ids = publish_inventory(bootstrap, provider_id)
    with tempfile.TemporaryDirectory(prefix="mtv-bench-planner-") as tmp:
        proc, port, app_id = start_planner(bootstrap, Path(tmp))
        try:
            wait_caught_up(bootstrap, app_id)
            stub = planner_service_pb2_grpc.PlannerServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
            spec = m.PlanSpec(name=f"bench-{uuid.uuid4().hex[:6]}", source_provider=provider_id,
                              target_namespace="bench", vms=tuple(m.PlanVm(id=v) for v in vm_ids),
                              network_map=(m.NetworkMapping("VM Network", m.NetworkDestination.POD),),
                              storage_map=(m.StorageMapping("LocalDS_0", "standard"),), max_in_flight=IN_FLIGHT)
            responder = Responder(bootstrap, "")  # reads from "latest": only what happens from now on
            responder.start()
            responder.assigned.wait(30)
            time.sleep(1.0)
            started = time.monotonic()
            created = stub.CreatePlan(planner_service_pb2.CreatePlanRequest(spec=m.plan_to_proto(spec)), timeout=60)
            responder.plan_id = created.plan_id
            validated = wait_for(lambda: responder.validated.get(created.plan_id), 60, "PlanValidated") - started
            approved = time.monotonic()
            approvals.publish_signed_approval(bootstrap, created.plan_id, created.revision, "bench", KEY)
            first = wait_for(lambda: responder.first_transfers_at, 60, "the first transfers") - approved
            completed = wait_for(lambda: responder.completed_at, 900, "plan completion") - approved
            responder.halt.set()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    print(f"plan_{VMS}_validated_seconds={validated:.2f}")
    print(f"plan_{VMS}_first_transfers_seconds={first:.2f}")
    print(f"plan_{VMS}_completed_seconds={completed:.1f}")
    print(f"plan_{VMS}_vms_per_second={VMS / completed:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
