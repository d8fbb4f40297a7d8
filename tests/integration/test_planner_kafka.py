"""The planner against a real broker (and the vSphere simulator for power): validation, approvals from
other systems, a whole migration, and canceling one VM. The planner is the real service process; the
services it talks to are played by a responder publishing their real reply events."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import grpc
import pytest
from confluent_kafka import Consumer, Producer
from pyVim.connect import SmartConnect

from fixtures.planner_data import KEY, OTHER_KEY, keys_file, plan_spec, publish_inventory, vm, vms_from_manifest
from fixtures.planner_kafka import PlannerProcess, Responder
from mtv import approvals, events, topics
from mtv import model as m
from mtv.bus import EventConsumer, Publisher, admin, dlq
from mtv.inventory.power import change_power, power_handler, power_state
from mtv.provider_store import ProviderRecord, ProviderStore
from mtv.runtime.event_service import dispatcher
from mtv.v1 import common_pb2, inventory_pb2, migration_pb2, plan_pb2, planner_service_pb2, transfer_pb2

pytestmark = pytest.mark.kafka
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PlannerProcess, Responder]]:
    admin.ensure_topics(kafka_bootstrap)
    root = tmp_path_factory.mktemp("planner")
    planner = PlannerProcess(kafka_bootstrap, keys_file(root, {"ci": KEY, "change-mgmt": KEY}), root / "planner.log")
    responder = Responder(kafka_bootstrap, root / "target")
    responder.start()
    planner.start()
    try:
        yield planner, responder
    finally:
        planner.stop()
        responder.stop()


def _inventory(bootstrap: str, vms: list[m.Vm]) -> tuple[str, str]:
    """A provider of our own with these VMs on the state topic, as the inventory would publish it."""
    provider_id, name = str(uuid.uuid4()), f"vc-{uuid.uuid4().hex[:6]}"
    publisher = Publisher(bootstrap, "planner-test")
    publish_inventory(publisher, provider_id, name, vms)
    publisher.flush()
    return provider_id, name


def _create(planner: PlannerProcess, responder: Responder, spec: m.PlanSpec) -> tuple[str, int]:
    # The planner follows the inventory topic: a just-published inventory may need a moment.
    created = planner.stub().CreatePlan(planner_service_pb2.CreatePlanRequest(spec=m.plan_to_proto(spec)), timeout=60)
    responder.plans.add(created.plan_id)
    return created.plan_id, created.revision


def _validated(responder: Responder, plan_id: str, blocked: bool | None = None, concern: str = "") -> Any:
    """The latest PlanValidated once it matches. A plan created right after its inventory was published
    may first be validated before the planner read that inventory (provider not found), then again."""
    def check() -> Any:
        results = responder.of(plan_id, "plan_validated")
        last = results[-1] if results else None
        return last is not None and (blocked is None or last.blocked == blocked) and (
            not concern or any(c.id == concern for c in last.concerns)) and last

    return responder.wait(check, 60, f"PlanValidated of {plan_id}")


def test_unmapped_networks_block_the_plan_with_a_concern_naming_them(stack: tuple[PlannerProcess, Responder],
                                                                     kafka_bootstrap: str) -> None:
    planner, responder = stack
    vms = [vm(0, network="network-2"), vm(1, network="network-2"), vm(2)]
    _, provider = _inventory(kafka_bootstrap, vms)
    plan_id, _ = _create(planner, responder, plan_spec(f"blocked-{uuid.uuid4().hex[:6]}", provider,
                                                       [v.id for v in vms]))
    result = _validated(responder, plan_id, blocked=True, concern="plan.network.unmapped")
    unmapped = [c for c in result.concerns if c.id == "plan.network.unmapped"]
    assert unmapped and "'backup' (network-2) used by vm-0000, vm-0001" in unmapped[0].assessment
    view = planner.stub().GetPlan(planner_service_pb2.GetPlanRequest(name=plan_id), timeout=30).plan
    assert view.phase == plan_pb2.PLAN_PHASE_BLOCKED


def test_unsigned_and_wrong_key_approvals_are_rejected_and_nothing_runs(
        stack: tuple[PlannerProcess, Responder], kafka_bootstrap: str) -> None:
    planner, responder = stack
    vms = [vm(0), vm(1)]
    _, provider = _inventory(kafka_bootstrap, vms)
    plan_id, revision = _create(planner, responder, plan_spec(f"guarded-{uuid.uuid4().hex[:6]}", provider,
                                                              [v.id for v in vms]))
    _validated(responder, plan_id, blocked=False)
    unsigned = plan_pb2.PlanApproved(approval=approvals.new_approval(plan_id, revision, "ci").SerializeToString())
    wrong_key = approvals.sign(approvals.new_approval(plan_id, revision, "ci"), OTHER_KEY)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    for approved in (unsigned, wrong_key):
        event = events.make(approved, source="change-mgmt", correlation_id=plan_id)
        producer.produce("mtv.plan.approvals.v1", key=plan_id.encode(), value=event.SerializeToString())
    assert producer.flush(10) == 0
    reasons = responder.wait(lambda: len(responder.of(plan_id, "plan_rejected")) >= 2 and [
        r.reason for r in responder.of(plan_id, "plan_rejected")], 60, "two PlanRejected")
    assert reasons[0].startswith("unsigned: ") and reasons[1].startswith("bad_signature: ")
    time.sleep(3)  # give a wrongly started saga time to show itself
    for kind in ("source_power_requested", "target_prepare_requested", "disk_transfer_requested"):
        assert responder.of(plan_id, kind) == [], kind
    view = planner.stub().GetPlan(planner_service_pb2.GetPlanRequest(name=plan_id), timeout=30).plan
    assert view.phase == plan_pb2.PLAN_PHASE_VALIDATED


def _readme_approve() -> Any:
    """The README's copy-paste example, run as written."""
    text = README.read_text()
    section = text[text.index("### Approving a plan from another system"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    namespace: dict[str, Any] = {}
    exec(compile(textwrap.dedent(code), str(README), "exec"), namespace)  # noqa: S102 — our own README
    return namespace["approve"]


def test_a_signed_approval_from_a_plain_producer_runs_the_migration(
        stack: tuple[PlannerProcess, Responder], kafka_bootstrap: str) -> None:
    planner, responder = stack
    vms = [vm(i) for i in range(5)]
    _, provider = _inventory(kafka_bootstrap, vms)
    plan_id, revision = _create(planner, responder, plan_spec(f"signed-{uuid.uuid4().hex[:6]}", provider,
                                                              [v.id for v in vms], max_in_flight=2))
    _validated(responder, plan_id, blocked=False)
    started = time.monotonic()
    _readme_approve()(kafka_bootstrap, plan_id, revision, "change-mgmt", KEY)
    responder.wait(lambda: responder.plan_phase(plan_id) == plan_pb2.PLAN_PHASE_SUCCEEDED, 120, "plan succeeded")
    print(f"5 VMs migrated through the planner in {time.monotonic() - started:.1f} s")
    requests = Counter(r.transfer_id for r in responder.of(plan_id, "disk_transfer_requested"))
    assert len(requests) == 10 and set(requests.values()) == {1}
    # Statuses and plan events are different topics: the last VM status may arrive after the plan's.
    responder.wait(lambda: all(responder.vm_phase(plan_id, v.id) == migration_pb2.VM_PHASE_COMPLETED for v in vms),
                   30, "every VM completed")
    final = responder.of(plan_id, "plan_status_changed")[-1]
    assert (final.vms_succeeded, final.vms_total, final.bytes.done) == (5, 5, final.bytes.total)
    assert final.bytes.total == 5 * 48 * (1 << 20)
    # No VMware Tools: every guest shutdown was refused and the VM powered off instead.
    actions = Counter(r.action for r in responder.of(plan_id, "source_power_requested"))
    assert actions == {inventory_pb2.POWER_ACTION_SHUTDOWN_GUEST: 5, inventory_pb2.POWER_ACTION_POWER_OFF: 5}


def test_mtvctl_plan_create_names_field_and_line_and_creates(stack: tuple[PlannerProcess, Responder],
                                                             kafka_bootstrap: str, tmp_path: Path) -> None:
    planner, _ = stack
    _, provider = _inventory(kafka_bootstrap, [vm(0)])
    name = f"cli-{uuid.uuid4().hex[:6]}"
    body = (f"name: {name}\nprovider: {{source: {provider}}}\ntargetNamespace: migrated\nvms:\n  - id: vm-1000\n"
            "map:\n  network:\n    - source: {name: VM Network}\n      destination: {type: pod}\n"
            "  storage:\n    - source: LocalDS_0\n      destination: {storageClass: standard}\n")
    bad, good = tmp_path / "bad.yaml", tmp_path / "good.yaml"
    bad.write_text(body.replace("targetNamespace", "targetNamespcae"))
    good.write_text(body)
    env = {"MTV_PLANNER_GRPC": f"127.0.0.1:{planner.grpc_port}", "PATH": "/usr/bin:/bin"}

    def mtvctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mtv.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    nowhere = tmp_path / "nowhere.yaml"
    nowhere.write_text(body.replace(f"source: {provider}", "source: no-such-vcenter").replace(name, f"{name}-x"))
    unknown = mtvctl("plan", "create", "-f", str(nowhere))
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert f"{nowhere}: line 2: provider.source: provider 'no-such-vcenter' is not known" in unknown.stderr
    failed = mtvctl("plan", "create", "-f", str(bad))
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert f"{bad}: line 3: targetNamespcae: unknown field" in failed.stderr
    assert f"{bad}: line 1: targetNamespace: required" in failed.stderr
    created = mtvctl("plan", "create", "-f", str(good))
    assert created.returncode == 0, created.stderr
    assert re.match(rf"plan {name} revision 1 \(.+\): (validated|created)", created.stdout)
    missing = mtvctl("plan", "show", "no-such-plan")
    assert missing.returncode == 1 and missing.stderr.strip() == (
        "mtvctl: plan 'no-such-plan' not found; `mtvctl plan ls` lists the plans")
    listed = mtvctl("plan", "ls")
    assert listed.returncode == 0 and re.search(rf"^{name} +1 ", listed.stdout, re.M)

    key_file = tmp_path / "ci.key"
    key_file.write_text(base64.b64encode(KEY).decode())
    key_file.chmod(0o644)
    env.update(MTV_APPROVER_ID="ci", MTV_APPROVER_KEY_FILE=str(key_file))
    loose = mtvctl("plan", "approve", name)
    assert loose.returncode == 1 and "chmod 600" in loose.stderr and "Traceback" not in loose.stderr
    key_file.chmod(0o600)
    env["MTV_APPROVER_ID"] = "someone"
    refused = mtvctl("plan", "approve", name)
    assert refused.returncode == 1 and "rejected: unknown_approver:" in refused.stderr
    env["MTV_APPROVER_ID"] = "ci"
    approved = mtvctl("plan", "approve", name, "--comment", "CHG-7")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"plan {name} revision 1 approved by ci"
    # Nobody answers this plan's power requests here: cancel it, which must say so and end the plan.
    canceled = mtvctl("plan", "cancel", name)
    assert canceled.returncode == 0 and "canceled every VM not finished" in canceled.stdout
    shown = mtvctl("plan", "show", name)
    assert f"plan {name} revision 1" in shown.stdout and ": canceled" in shown.stdout
    assert re.search(r"vm-0000 +vm-0000 +canceled", shown.stdout)


class SimulatorPower:
    """The inventory side of power requests (mtv.inventory.power) on the simulator, fed from Kafka."""

    def __init__(self, bootstrap: str, sim: Any, root: Path, provider_id: str, name: str) -> None:
        self.store = ProviderStore(root)
        self.store.add(ProviderRecord(id=provider_id, name=name, type="vsphere", url=sim.url, username=sim.username,
                                      insecure_skip_verify=True), sim.password)
        self.provider_id = provider_id
        self._si: Any = None
        self.publisher = Publisher(bootstrap, "planner-test-inventory")
        handler = power_handler(self.service_instance, self.publisher)

        def only_ours(event: Any, msg: Any) -> None:  # the topic carries other tests' requests too
            if event.source_power_requested.provider_id == provider_id:
                handler(event, msg)

        self.consumer = EventConsumer(bootstrap, f"power-{uuid.uuid4()}", [topics.PROVIDER_COMMANDS.name],
                                      dispatcher("inventory", {"source_power_requested": only_ours}),
                                      self.publisher, service="inventory")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.consumer.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def service_instance(self, provider_id: str) -> Any:
        if self._si is None:
            record = self.store.get(provider_id)
            url = urlparse(record.url)
            self._si = SmartConnect(host=url.hostname, port=url.port, user=record.username,
                                    pwd=self.store.password(record), disableSslCertValidation=True)
        return self._si

    def state(self, vm_id: str) -> str:
        return "on" if power_state(self.service_instance(self.provider_id), vm_id) == common_pb2.POWER_STATE_ON \
            else "off"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)  # run() closes the consumer and flushes the publisher
        del self.consumer, self.publisher  # no producer left to log reconnects once the broker stops


@pytest.mark.vsphere
def test_cancel_of_one_vm_powers_it_back_on_and_leaves_the_others_running(
        stack: tuple[PlannerProcess, Responder], kafka_bootstrap: str, vsphere_sim: Any, tmp_path: Path) -> None:
    planner, responder = stack
    vms = [v for v in vms_from_manifest(vsphere_sim.load_manifest()) if v.power_state is m.PowerState.ON][:3]
    assert len(vms) == 3
    provider_id, provider = _inventory(kafka_bootstrap, vms)
    power = SimulatorPower(kafka_bootstrap, vsphere_sim, tmp_path / "providers", provider_id, provider)
    networks = (m.NetworkMapping("VM Network", m.NetworkDestination.POD),
                *(m.NetworkMapping(n, m.NetworkDestination.IGNORED) for n in ("DC0_DVPG0", "DC0_DVPG1", "DC0_PG1")))
    spec = replace(plan_spec(f"cancel-{uuid.uuid4().hex[:6]}", provider, [v.id for v in vms], networks=networks),
                   storage_map=(m.StorageMapping("LocalDS_0", "standard"), m.StorageMapping("LocalDS_1", "standard")))
    try:
        plan_id, revision = _create(planner, responder, spec)
        responder.no_power.add(plan_id)
        responder.hold = lambda r: r.plan_id == plan_id
        _validated(responder, plan_id, blocked=False)
        approvals.publish_signed_approval(kafka_bootstrap, plan_id, revision, "ci", KEY)
        disks = sum(len(v.disks) for v in vms)
        responder.wait(lambda: len(responder.held) >= disks and all(t.startswith(plan_id) for t in responder.held),
                       120, "every disk of the three VMs requested")
        assert [power.state(v.id) for v in vms] == ["off", "off", "off"]  # the real power-off ran
        canceled = vms[0]
        planner.stub().CancelPlan(planner_service_pb2.CancelPlanRequest(name=plan_id, vm_ids=[canceled.id]),
                                  timeout=60)
        responder.wait(lambda: [p for p in responder.of(plan_id, "source_power_changed")
                                if p.vm_id == canceled.id and p.action == inventory_pb2.POWER_ACTION_POWER_ON
                                and p.power_state == common_pb2.POWER_STATE_ON], 60, "the canceled VM powered on")
        stopped = {c.transfer_id for c in responder.of(plan_id, "disk_transfer_cancel_requested")}
        assert stopped == {f"{plan_id}/{canceled.id}/{d.key}" for d in canceled.disks}
        assert [c.vm_id for c in responder.of(plan_id, "target_cleanup_requested")] == [canceled.id]
        assert [power.state(v.id) for v in vms] == ["on", "off", "off"]
        responder.release({t for t in list(responder.held) if not t.startswith(f"{plan_id}/{canceled.id}/")})
        responder.wait(lambda: responder.plan_phase(plan_id) == plan_pb2.PLAN_PHASE_SUCCEEDED, 120, "the others done")
        phases = [migration_pb2.VM_PHASE_CANCELED] + [migration_pb2.VM_PHASE_COMPLETED] * 2
        responder.wait(lambda: [responder.vm_phase(plan_id, v.id) for v in vms] == phases, 30, "final VM phases")
        final = responder.of(plan_id, "plan_status_changed")[-1]
        assert (final.vms_succeeded, final.vms_canceled, final.vms_failed) == (2, 1, 0)
    finally:
        responder.hold = lambda r: False
        for v in vms:  # the simulator is shared by the session: leave its VMs as we found them
            change_power(power.service_instance, inventory_pb2.SourcePowerRequested(
                provider_id=provider_id, vm_id=v.id, action=inventory_pb2.POWER_ACTION_POWER_ON))
        power.close()


def test_bad_requests_are_refused_and_unknown_events_dead_lettered(stack: tuple[PlannerProcess, Responder],
                                                                 kafka_bootstrap: str) -> None:
    planner, _ = stack
    bad = m.PlanSpec(name="Not A Label", source_provider="", target_namespace="ns", vms=())
    with pytest.raises(grpc.RpcError) as err:
        planner.stub().CreatePlan(planner_service_pb2.CreatePlanRequest(spec=m.plan_to_proto(bad)), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "name: 'Not A Label' is not a DNS-1123 label" in err.value.details()
    assert "provider.source: required" in err.value.details() and "vms: list at least one VM" in err.value.details()

    transfer_id = f"{uuid.uuid4()}/vm-1/2000"  # a plan the planner never heard of
    publisher = Publisher(kafka_bootstrap, "planner-test-bad")
    publisher.publish(events.make(transfer_pb2.DiskTransferCompleted(transfer_id=transfer_id, sha256="ab" * 32),
                                  source="transfer"))
    publisher.flush()
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"dlq-{uuid.uuid4()}",
                       "auto.offset.reset": "earliest"})
    reader.subscribe([topics.DLQ.name])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = reader.poll(0.5)
            if msg is None or msg.error() or msg.key() != transfer_id.encode():
                continue
            headers = dlq.headers_dict(msg)
            if headers[dlq.CONSUMER] != "planner":
                continue
            assert headers[dlq.ERROR_REASON] == "rejected" and "unknown plan" in headers[dlq.ERROR]
            assert headers[dlq.ORIGIN_TOPIC] == topics.TRANSFER_RESULTS.name
            break
        else:
            raise AssertionError("the event about an unknown plan was not dead-lettered")
    finally:
        reader.close()
    # ... and the planner goes on.
    assert planner.proc is not None and planner.proc.poll() is None
    assert planner.stub().ListPlans(planner_service_pb2.ListPlansRequest(), timeout=30).plans
