"""The planner's handlers end to end without Kafka: a real Planner, an in-memory store, a fake clock and
a responder answering its requests as the inventory, converter and transfer workers would."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

import pytest

from fixtures.planner_data import inventory_records, plan_spec, vm
from fixtures.planner_harness import PROVIDER_ID, Harness
from mtv.planner.errors import Rejected
from mtv.planner.records import Phase, PlanPhase
from mtv.planner.service import Planner
from mtv.planner.state import Config, PlannerState, Store
from mtv.v1 import inventory_pb2, plan_pb2, transfer_pb2


def _run_plan(n: int, limit: int = 10, disks: int = 2) -> tuple[Harness, str]:
    vms = [vm(i, disks=disks) for i in range(n)]
    h = Harness(vms)
    plan_id = h.create(plan_spec("p", "vcenter-1", [v.id for v in vms], max_in_flight=limit))
    return h, plan_id


def _slots(h: Harness, plan_id: str) -> int:
    return sum(1 for r in h.state.store.vms.values() if r.plan_id == plan_id and r.phase in (
        Phase.STORE_POWER_STATE, Phase.POWER_OFF_SOURCE, Phase.WAIT_FOR_POWER_OFF, Phase.PREPARE_TARGET,
        Phase.TRANSFER_DISKS))


def test_a_plan_runs_every_vm_with_at_most_max_in_flight_at_once() -> None:
    h, plan_id = _run_plan(25, limit=4)
    assert h.approve(plan_id) == "accepted"
    assert len(h.of("source_power_requested")) == 4  # the first four start, the rest queue
    peak = []
    h.run(each=lambda: peak.append(_slots(h, plan_id)))
    assert max(peak) <= 4
    plan = h.state.plan(plan_id)
    assert plan.phase is PlanPhase.SUCCEEDED and plan.in_flight == () and plan.cursor == 25  # type: ignore[union-attr]
    requested = Counter(r.transfer_id for r in h.of("disk_transfer_requested"))
    assert len(requested) == 50 and set(requested.values()) == {1}  # every disk exactly once
    actions = Counter(r.action for r in h.of("source_power_requested"))
    # No VMware Tools (as in the simulator): every guest shutdown is refused, then powered off hard.
    assert actions == {inventory_pb2.POWER_ACTION_SHUTDOWN_GUEST: 25, inventory_pb2.POWER_ACTION_POWER_OFF: 25}
    h.tick(1.0)
    last = h.of("plan_status_changed")[-1]
    assert (last.phase, last.vms_succeeded, last.vms_total) == (plan_pb2.PLAN_PHASE_SUCCEEDED, 25, 25)
    assert last.bytes.done == last.bytes.total == 25 * (16 + 32) * (1 << 20)


def test_a_thousand_vm_plan_is_scheduled_and_run_in_seconds() -> None:
    h, plan_id = _run_plan(1000, limit=10, disks=1)
    started = time.perf_counter()
    h.approve(plan_id)
    first = time.perf_counter() - started
    h.run()
    total = time.perf_counter() - started
    assert h.state.plan(plan_id).phase is PlanPhase.SUCCEEDED  # type: ignore[union-attr]
    assert len(h.of("disk_transfer_requested")) == 1000
    assert first < 1.0, f"approving and starting the first 10 took {first:.2f} s"
    assert total < 30.0, f"running 1,000 VMs through the planner took {total:.1f} s"


def test_cancel_of_one_vm_undoes_it_and_the_others_go_on() -> None:
    h, plan_id = _run_plan(3, limit=2)
    h.hold_transfers = True
    h.approve(plan_id)
    h.run()
    assert {r.phase for r in h.state.store.vms.values()} == {Phase.TRANSFER_DISKS}
    mark = len(h.published)
    h.send(plan_pb2.CancelPlanRequested(plan_id=plan_id, vm_ids=["vm-1000"], reason="not this one"))
    assert h.state.vm(plan_id, "vm-1000").phase is Phase.CANCELED  # type: ignore[union-attr]
    cancels = {c.transfer_id for c in h.of("disk_transfer_cancel_requested", mark)}
    assert cancels == {f"{plan_id}/vm-1000/2000", f"{plan_id}/vm-1000/2001"}
    assert [c.vm_id for c in h.of("target_cleanup_requested", mark)] == ["vm-1000"]
    power_on = h.of("source_power_requested", mark)
    assert [(p.vm_id, p.action) for p in power_on if p.action == inventory_pb2.POWER_ACTION_POWER_ON] == [
        ("vm-1000", inventory_pb2.POWER_ACTION_POWER_ON)]
    # Its slot went to the queued third VM at once.
    assert h.state.vm(plan_id, "vm-1002") is not None
    assert h.of("plan_canceled", mark)[0].vm_ids == ["vm-1000"]
    h.hold_transfers = False
    for r in h.of("disk_transfer_requested"):
        if not r.vm_id.endswith("1000"):
            h.send(h.transfer_result(r))
    h.run()
    assert h.state.plan(plan_id).phase is PlanPhase.SUCCEEDED  # type: ignore[union-attr]
    assert h.state.vm(plan_id, "vm-1001").phase is Phase.COMPLETED  # type: ignore[union-attr]


def test_cancel_of_the_whole_plan_starts_nothing_new() -> None:
    h, plan_id = _run_plan(5, limit=2)
    h.hold_transfers = True
    h.approve(plan_id)
    h.run()
    h.send(plan_pb2.CancelPlanRequested(plan_id=plan_id))
    assert {r.phase for r in h.state.store.vms.values()} == {Phase.CANCELED}
    assert len(h.of("target_prepare_requested")) == 2
    assert h.state.plan(plan_id).phase is PlanPhase.CANCELED  # type: ignore[union-attr]


def test_retry_of_a_failed_vm_copies_only_what_is_missing() -> None:
    h, plan_id = _run_plan(2, limit=2)
    h.fail_disks = {f"{plan_id}/vm-1000/2001"}
    h.approve(plan_id)
    h.run()
    assert h.state.vm(plan_id, "vm-1000").phase is Phase.FAILED  # type: ignore[union-attr]
    assert h.state.plan(plan_id).phase is PlanPhase.FAILED  # type: ignore[union-attr]
    h.fail_disks = set()
    mark = len(h.published)
    assert h.send(plan_pb2.RetryPlanRequested(plan_id=plan_id)) == "accepted"
    h.run()
    again = [(r.transfer_id, r.attempt) for r in h.of("disk_transfer_requested", mark)]
    # 2000 may have been canceled mid-copy when 2001 failed (then it is copied again); 2001 is retried.
    assert (f"{plan_id}/vm-1000/2001", 2) in again and all(t.startswith(f"{plan_id}/vm-1000") for t, _ in again)
    assert h.state.plan(plan_id).phase is PlanPhase.SUCCEEDED  # type: ignore[union-attr]
    assert h.send(plan_pb2.RetryPlanRequested(plan_id=plan_id)).startswith("nothing to retry")


def test_events_for_unknown_plans_vms_and_disks_are_rejected() -> None:
    h, plan_id = _run_plan(1)
    with pytest.raises(Rejected, match="unknown plan"):
        h.send(transfer_pb2.DiskTransferCompleted(transfer_id="nope/vm-1/2000", sha256="a"))
    with pytest.raises(Rejected, match="has not started"):
        h.send(transfer_pb2.DiskTransferCompleted(transfer_id=f"{plan_id}/vm-1000/2000", sha256="a"))
    h.hold_transfers = True
    h.approve(plan_id)
    h.run()
    with pytest.raises(Rejected, match="has no disk 7"):
        h.send(transfer_pb2.DiskTransferCompleted(transfer_id=f"{plan_id}/vm-1000/7", sha256="a"))
    with pytest.raises(Rejected, match="transfer id"):
        h.send(transfer_pb2.DiskTransferCompleted(transfer_id="garbage", sha256="a"))
    # Progress is public: progress of unknown transfers is ignored, never an error.
    h.send(transfer_pb2.DiskTransferProgress(transfer_id="other/vm/1", bytes_total=1))


def test_inventory_changes_revalidate_open_plans_after_a_quiet_period() -> None:
    source = vm(0, network="network-2")
    h = Harness([source])
    plan_id = h.create(plan_spec("p", "vcenter-1", [source.id]))
    assert h.state.plan(plan_id).phase is PlanPhase.BLOCKED  # type: ignore[union-attr]
    fixed = replace(source, nics=(replace(source.nics[0], network_id="network-1", network_name="VM Network"),))
    for key, change in inventory_records(PROVIDER_ID, [fixed])[-1:]:
        h.planner.on_inventory(key, change)
    h.tick(0.1)
    assert h.state.plan(plan_id).phase is PlanPhase.BLOCKED  # type: ignore[union-attr]  # debounce
    h.tick(1.0)
    assert h.state.plan(plan_id).phase is PlanPhase.VALIDATED  # type: ignore[union-attr]
    results = h.of("plan_validated")
    assert [r.blocked for r in results] == [True, False]
    h.tick(5.0)  # nothing changed: nothing published
    assert len(h.of("plan_validated")) == 2


def test_a_new_revision_replaces_the_spec_until_approval() -> None:
    h, plan_id = _run_plan(2)
    assert h.create(plan_spec("p", "vcenter-1", ["vm-1000"])) == plan_id
    assert h.state.plan(plan_id).revision == 2  # type: ignore[union-attr]
    h.approve(plan_id)
    with pytest.raises(Exception, match="cannot change after approval"):
        h.create(plan_spec("p", "vcenter-1", ["vm-1001"]))


def test_a_restarted_planner_resends_only_unanswered_requests() -> None:
    h, plan_id = _run_plan(2, limit=2)
    h.hold_transfers = True
    h.approve(plan_id)
    h.run()
    first = next(r for r in h.of("disk_transfer_requested") if r.transfer_id.endswith("vm-1000/2000"))
    h.send(h.transfer_result(first))
    # A new process: the tables come back from their changelogs, the indexes are derived again.
    store = Store(*(dict(t) for t in (h.state.store.plans, h.state.store.specs, h.state.store.validations,
                                     h.state.store.vms, h.state.store.names, h.state.store.providers)))
    state = PlannerState(store, h.state.inventory, h.keys, replace(h.config, resend_grace=5.0), h.clock)
    planner = Planner(state)
    planner.recovered()
    planner.inventory_loaded()
    planner.tick()
    assert not [o for o in state.take_outbox() if o.event.WhichOneof("payload") == "disk_transfer_requested"]
    h.clock.advance(6.0)
    planner.tick()
    resent = [o.event.disk_transfer_requested.transfer_id for o in state.take_outbox()
              if o.event.WhichOneof("payload") == "disk_transfer_requested"]
    assert sorted(resent) == sorted([f"{plan_id}/vm-1000/2001", f"{plan_id}/vm-1001/2000", f"{plan_id}/vm-1001/2001"])


def test_unsigned_and_wrong_payloads_never_reach_the_saga() -> None:
    h, plan_id = _run_plan(1)
    with pytest.raises(Rejected, match="does not handle"):
        h.send(transfer_pb2.DiskTransferRequested(transfer_id="x"))
    assert h.send(inventory_pb2.SourcePowerChanged(provider_id=PROVIDER_ID, vm_id="vm-1000")) == "ignored"
    assert h.state.vm(plan_id, "vm-1000") is None  # the VM was not touched


def test_live_progress_reaches_vm_and_plan_status_throttled() -> None:
    vms = [vm(0, disks=1)]
    h = Harness(vms, config=Config(resend_grace=0.0, status_interval=1.0))
    plan_id = h.create(plan_spec("p", "vcenter-1", [v.id for v in vms]))
    h.hold_transfers = True
    h.approve(plan_id)
    h.run()
    transfer_id = f"{plan_id}/vm-1000/2000"
    mark = len(h.published)
    h.send(transfer_pb2.DiskTransferProgress(transfer_id=transfer_id, plan_id=plan_id, vm_id="vm-1000",
                                             bytes_done=5 << 20, bytes_total=16 << 20))
    h.send(transfer_pb2.DiskTransferProgress(transfer_id=transfer_id, plan_id=plan_id, vm_id="vm-1000",
                                             bytes_done=9 << 20, bytes_total=16 << 20))
    assert not h.of("vm_migration_status", mark)  # progress alone is throttled: nothing yet
    h.tick(1.0)
    status = h.of("vm_migration_status", mark)
    assert len(status) == 1 and status[0].pipeline[2].tasks[0].bytes.done == 9 << 20
    plan = h.of("plan_status_changed", mark)
    assert (plan[-1].bytes.done, plan[-1].bytes.total) == (9 << 20, 16 << 20)
