"""Scheduling (maxInFlight, queue), status aggregation, the state codec and the request builders."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from fixtures.planner_data import plan_spec, vm
from mtv.model import Concern, ConcernCategory, PowerState
from mtv.planner import codec, effects, scheduler, status
from mtv.planner.records import DiskPhase, DiskState, Phase, PlanPhase, PlanRecord, SpecRecord, VmRecord
from mtv.planner.validation import ResolvedVm, Validation
from mtv.planner.vm_events import RequestConvert, RequestPrepare, RequestTransfer
from mtv.v1 import migration_pb2

ORDER = tuple(f"vm-{i}" for i in range(10))


def plan() -> PlanRecord:
    return PlanRecord("p", "plan", 1, PlanPhase.EXECUTING)


def test_fill_takes_at_most_the_limit_in_plan_order() -> None:
    p, started = scheduler.fill(plan(), ORDER, 3, lambda v: True)
    assert started == ["vm-0", "vm-1", "vm-2"] and p.in_flight == tuple(started) and p.cursor == 3
    assert scheduler.fill(p, ORDER, 3, lambda v: True)[1] == []
    assert scheduler.waiting(p, len(ORDER)) == 7


def test_a_released_slot_is_filled_at_once_retries_first_and_canceled_vms_skipped() -> None:
    p, _ = scheduler.fill(plan(), ORDER, 3, lambda v: True)
    p = scheduler.requeue(scheduler.release(scheduler.release(p, "vm-0"), "vm-1"), ["vm-0"])
    p, started = scheduler.fill(p, ORDER, 3, lambda v: v != "vm-3")
    assert started == ["vm-0", "vm-4"] and p.in_flight == ("vm-2", "vm-0", "vm-4") and p.requeued == ()


def test_release_of_a_vm_without_a_slot_changes_nothing() -> None:
    assert scheduler.release(plan(), "vm-9") == plan()


def test_scheduling_a_thousand_vms_is_linear() -> None:
    order = tuple(f"vm-{i}" for i in range(1000))
    p, started_at = plan(), time.perf_counter()
    total = 0
    while True:
        p, started = scheduler.fill(p, order, 10, lambda v: True)
        if not started:
            break
        total += len(started)
        for vm_id in started:
            p = scheduler.release(p, vm_id)
    assert total == 1000 and time.perf_counter() - started_at < 0.5


def _rec(phase: Phase, **kw: object) -> VmRecord:
    return VmRecord("p", "vm-1", "web", "web", phase=phase, **kw)  # type: ignore[arg-type]


def _steps(rec: VmRecord) -> list[tuple[str, int]]:
    return [(s.name, s.phase) for s in status.vm_status(rec).pipeline]


def test_pipeline_follows_the_phase() -> None:
    P, R, C, F = (migration_pb2.STEP_PHASE_PENDING, migration_pb2.STEP_PHASE_RUNNING,
                  migration_pb2.STEP_PHASE_COMPLETED, migration_pb2.STEP_PHASE_FAILED)
    assert [p for _, p in _steps(_rec(Phase.QUEUED))] == [P, P, P, P]
    assert [p for _, p in _steps(_rec(Phase.WAIT_FOR_POWER_OFF))] == [R, P, P, P]
    assert [p for _, p in _steps(_rec(Phase.TRANSFER_DISKS))] == [C, C, R, P]
    assert [p for _, p in _steps(_rec(Phase.COMPLETED))] == [C, C, C, C]
    failed = status.vm_status(_rec(Phase.FAILED, stopped_phase=Phase.PREPARE_TARGET, error="no class"))
    assert [s.phase for s in failed.pipeline] == [C, F, P, P] and failed.pipeline[1].error == "no class"
    assert failed.phase == migration_pb2.VM_PHASE_FAILED and failed.error == "no class"


def test_disk_tasks_carry_bytes_from_completion_and_live_progress() -> None:
    disks = (DiskState(2000, "f", 100, phase=DiskPhase.COMPLETED), DiskState(2001, "g", 300, phase=DiskPhase.RUNNING))
    rec = _rec(Phase.TRANSFER_DISKS, disks=disks, restore_power=PowerState.ON)
    msg = status.vm_status(rec, {"p/vm-1/2001": 120})
    step = msg.pipeline[2]
    assert [(t.disk_id, t.bytes.done, t.bytes.total) for t in step.tasks] == [("p/vm-1/2000", 100, 100),
                                                                              ("p/vm-1/2001", 120, 300)]
    assert (step.progress.done, step.progress.total) == (220, 400)
    assert msg.restore_power_state == 1


def test_tally_counts_and_plan_outcome() -> None:
    tally = status.Tally()
    a = _rec(Phase.TRANSFER_DISKS, disks=(DiskState(1, "f", 10, phase=DiskPhase.COMPLETED),))
    tally.update(None, a)
    tally.update(None, replace(a, vm_id="vm-2", phase=Phase.COMPLETED))
    c = status.counts(tally, 3)
    assert (c.running, c.succeeded, c.waiting, tally.bytes_done, c.outcome()) == (1, 1, 1, 20, None)
    tally.update(a, replace(a, phase=Phase.FAILED))
    tally.update(None, replace(a, vm_id="vm-3", phase=Phase.CANCELED))
    assert status.counts(tally, 3).outcome() is PlanPhase.FAILED
    only_canceled = status.Tally()
    only_canceled.update(None, replace(a, phase=Phase.CANCELED))
    assert status.counts(only_canceled, 1).outcome() is PlanPhase.CANCELED
    done = status.Tally()
    done.update(None, replace(a, phase=Phase.COMPLETED))
    assert status.counts(done, 1).outcome() is PlanPhase.SUCCEEDED
    assert status.counts(done, 1).outcome(canceled_by_user=True) is PlanPhase.CANCELED


@pytest.mark.parametrize("value", [
    VmRecord("p", "vm-1", "web", "web", Phase.TRANSFER_DISKS, 2, vm(3), "prov", PowerState.ON, True, "power_off",
             12.5, (DiskState(2000, "[ds] a/a.vmdk", 5, "/x", "v", DiskPhase.COMPLETED, 1, "ab"),), "boom",
             Phase.CONVERT, "loc", 1.0, 2.0),
    PlanRecord("p", "plan", 3, PlanPhase.EXECUTING, "prov", 3, 3, ("a1",), ("c1",), 4, ("vm-1",), ("vm-2",), True),
    SpecRecord("p", 2, plan_spec("plan", "v", ["vm-1", "vm-2"]), 5.0),
    Validation(1, "prov", True, (Concern("x", ConcernCategory.CRITICAL, "l", "a"),), (ResolvedVm("vm-1", "a", "a"),),
               42),
    "a-plan-id",
])
def test_state_survives_the_changelog_codec(value: object) -> None:
    assert codec.loads(codec.dumps(value)) == value


def test_flat_file_of_a_backing_path() -> None:
    disk = vm(1).disks[1]
    assert disk.file == "[LocalDS_0] vm-0001/vm-0001_1.vmdk"
    assert effects.flat_file(disk) == ("LocalDS_0", "vm-0001/vm-0001_1-flat.vmdk")
    with pytest.raises(ValueError, match="not"):
        effects.flat_file(replace(disk, file="vm.vmdk"))


def _transferring(sink: str) -> VmRecord:
    source = vm(1)
    return VmRecord("p", source.id, source.name, "vm-0001", Phase.TRANSFER_DISKS, 1, source, "prov-1",
                    disks=(DiskState(2000, source.disks[0].file, 16 << 20, sink, "v0", DiskPhase.RUNNING, 1),))


def test_transfer_requests_name_the_flat_file_and_the_sink() -> None:
    cdi = effects.CdiUpload("https://cdi.example/v1beta1/upload", "upload-token", insecure_skip_verify=True)
    spec = plan_spec("plan", "v", ["vm-1001"])
    local = effects.payload(RequestTransfer(2000, 1), _transferring("/target/migrated/vm-0001/disk0.img"), spec, cdi)
    assert local.transfer_id == "p/vm-1001/2000" and local.attempt == 1 and local.size_bytes == 16 << 20
    src = local.source.vsphere
    assert (src.provider_id, src.datacenter_path, src.datastore_name, src.path) == (
        "prov-1", "DC0", "LocalDS_0", "vm-0001/vm-0001-flat.vmdk")
    assert local.sink.file.path == "/target/migrated/vm-0001/disk0.img"
    cluster = replace(spec, target_context="prod-east")
    upload = effects.payload(RequestTransfer(2000, 2), _transferring("cdi-upload://migrated/vm-0001-disk-0"), cluster,
                             cdi)
    c = upload.sink.cdi_upload
    assert (c.url, c.token_ref, c.namespace, c.pvc_name, c.insecure_skip_verify, c.context) == (
        "https://cdi.example/v1beta1/upload", "upload-token", "migrated", "vm-0001-disk-0", True, "prod-east")


def test_target_requests_carry_the_plan_with_only_this_vm() -> None:
    spec = plan_spec("plan", "v", [f"vm-{i}" for i in range(1000)])
    rec = _transferring("/t/0.img")
    prepare = effects.payload(RequestPrepare(), rec, spec, effects.CdiUpload())
    assert [v.id for v in prepare.plan.vms] == ["vm-1001"] and prepare.target_name == "vm-0001"
    assert prepare.plan.storage_map[0].storage_class == "standard" and prepare.vm.id == "vm-1001"
    convert = effects.payload(RequestConvert(), rec, spec, effects.CdiUpload())
    assert [(d.disk_key, d.sink_uri) for d in convert.disks] == [(2000, "/t/0.img")]
