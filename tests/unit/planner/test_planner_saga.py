"""The cold itinerary, one transition at a time: (record, input) -> (new record, commands)."""

from __future__ import annotations

from dataclasses import replace

from fixtures.planner_data import vm
from mtv.model import PowerState
from mtv.planner import saga
from mtv.planner.itinerary import COLD, STEPS
from mtv.planner.records import DiskPhase, Phase, VmRecord
from mtv.planner.vm_events import (
    Cancel,
    CancelTransfer,
    Created,
    Ctx,
    DiskDone,
    DiskFailed,
    PowerAction,
    PowerResult,
    Prepared,
    PreparedDisk,
    RequestCleanup,
    RequestConvert,
    RequestPower,
    RequestPrepare,
    RequestTransfer,
    Retry,
    Start,
    TargetError,
    Tick,
    Timeouts,
)

T = Timeouts(shutdown_seconds=30, power_off_seconds=120)
SOURCE = vm(7)  # powered on, disks 2000 and 2001


def ctx(now: float = 100.0) -> Ctx:
    return Ctx(now, T)


def queued() -> VmRecord:
    return VmRecord("plan-1", SOURCE.id, SOURCE.name, "vm-0007")


def started(source=SOURCE) -> VmRecord:  # noqa: ANN001
    return saga.step(queued(), Start(source, "prov-1"), ctx()).record


def prepared_disks(*keys: int, prefix: str = "/t") -> Prepared:
    return Prepared(tuple(PreparedDisk(k, f"{prefix}/{k}.img", f"v-{k}", 1) for k in keys))


def transferring() -> VmRecord:
    rec = started()
    rec = saga.step(rec, PowerResult(PowerAction.SHUTDOWN_GUEST, PowerState.OFF), ctx()).record
    return saga.step(rec, prepared_disks(2000, 2001), ctx()).record


def test_the_table_lists_every_active_phase_once_with_its_ui_step() -> None:
    assert [s.phase for s in COLD] == [Phase.STORE_POWER_STATE, Phase.POWER_OFF_SOURCE, Phase.WAIT_FOR_POWER_OFF,
                                       Phase.PREPARE_TARGET, Phase.TRANSFER_DISKS, Phase.CONVERT]
    assert [name for name, _ in STEPS] == ["Initialize", "DiskAllocation", "DiskTransfer", "VirtualMachineCreation"]


def test_start_stores_power_state_and_asks_for_a_guest_shutdown() -> None:
    out = saga.step(queued(), Start(SOURCE, "prov-1"), ctx())
    rec = out.record
    assert (rec.phase, rec.restore_power, rec.attempt, rec.provider_id) == (
        Phase.POWER_OFF_SOURCE, PowerState.ON, 1, "prov-1")
    assert out.commands == (RequestPower(PowerAction.SHUTDOWN_GUEST),)
    assert rec.deadline == 130.0 and rec.vm == SOURCE


def test_a_source_already_off_skips_both_power_phases() -> None:
    out = saga.step(queued(), Start(replace(SOURCE, power_state=PowerState.OFF), "prov-1"), ctx())
    assert out.record.phase is Phase.PREPARE_TARGET and out.commands == (RequestPrepare(),)
    assert out.record.restore_power is PowerState.OFF


def test_no_vmware_tools_falls_back_to_a_hard_power_off() -> None:
    out = saga.step(started(), PowerResult(PowerAction.SHUTDOWN_GUEST, PowerState.ON, "VMware Tools not running"),
                    ctx(101))
    assert out.record.phase is Phase.WAIT_FOR_POWER_OFF
    assert out.commands == (RequestPower(PowerAction.POWER_OFF),)
    assert out.record.deadline == 221.0 and "VMware Tools not running" in out.note
    off = saga.step(out.record, PowerResult(PowerAction.POWER_OFF, PowerState.OFF), ctx(102))
    assert off.record.phase is Phase.PREPARE_TARGET and off.record.source_off
    assert off.commands == (RequestPrepare(),)


def test_a_started_shutdown_waits_for_the_inventory_to_see_the_vm_off() -> None:
    waiting = saga.step(started(), PowerResult(PowerAction.SHUTDOWN_GUEST, PowerState.ON), ctx()).record
    assert waiting.phase is Phase.POWER_OFF_SOURCE and not waiting.power_request
    assert saga.step(waiting, Tick(PowerState.ON), ctx(110)).record == waiting
    assert saga.step(waiting, Tick(PowerState.OFF), ctx(111)).record.phase is Phase.PREPARE_TARGET


def test_a_shutdown_that_takes_too_long_becomes_a_power_off() -> None:
    out = saga.step(started(), Tick(PowerState.ON), ctx(130.5))
    assert out.record.phase is Phase.WAIT_FOR_POWER_OFF and out.commands == (RequestPower(PowerAction.POWER_OFF),)


def test_power_off_errors_and_silence_fail_the_vm() -> None:
    hard = saga.step(started(), Tick(), ctx(131)).record
    failed = saga.step(hard, PowerResult(PowerAction.POWER_OFF, PowerState.ON, "NoPermission"), ctx(132)).record
    assert failed.phase is Phase.FAILED and failed.stopped_phase is Phase.WAIT_FOR_POWER_OFF
    assert failed.error == "could not power off the source VM: NoPermission"
    silent = saga.step(hard, Tick(), ctx(131 + 120)).record
    assert silent.phase is Phase.FAILED and "is the inventory service running" in silent.error


def test_prepared_sinks_start_one_transfer_per_disk() -> None:
    rec = saga.step(started(), PowerResult(PowerAction.SHUTDOWN_GUEST, PowerState.OFF), ctx()).record
    out = saga.step(rec, prepared_disks(2000, 2001), ctx())
    assert out.record.phase is Phase.TRANSFER_DISKS
    assert out.commands == (RequestTransfer(2000, 1), RequestTransfer(2001, 1))
    assert [(d.key, d.phase, d.sink_uri) for d in out.record.disks] == [
        (2000, DiskPhase.RUNNING, "/t/2000.img"), (2001, DiskPhase.RUNNING, "/t/2001.img")]


def test_prepared_without_every_disk_or_with_a_strange_sink_fails() -> None:
    rec = saga.step(started(), PowerResult(PowerAction.SHUTDOWN_GUEST, PowerState.OFF), ctx()).record
    missing = saga.step(rec, prepared_disks(2000), ctx()).record
    assert missing.phase is Phase.FAILED and "[2001]" in missing.error
    odd = Prepared((PreparedDisk(2000, "s3://bucket/x"), PreparedDisk(2001, "cdi-upload://ns/dv-1")))
    assert "2000: 's3://bucket/x'" in saga.step(rec, odd, ctx()).record.error


def test_all_disks_done_asks_for_conversion_and_duplicates_change_nothing() -> None:
    rec = saga.step(transferring(), DiskDone(2000, "aa"), ctx()).record
    assert rec.phase is Phase.TRANSFER_DISKS
    duplicate = saga.step(rec, DiskDone(2000, "aa"), ctx())
    assert duplicate.record == rec and not duplicate.commands and "duplicate" in duplicate.note
    out = saga.step(rec, DiskDone(2001, "bb"), ctx())
    assert out.record.phase is Phase.CONVERT and out.commands == (RequestConvert(),)
    done = saga.step(out.record, Created("migrated", "vm-0007", "/t/migrated/vm-0007"), ctx(200)).record
    assert done.phase is Phase.COMPLETED and done.finished_at == 200 and done.location == "/t/migrated/vm-0007"


def test_an_unknown_disk_is_rejected_not_applied() -> None:
    out = saga.step(transferring(), DiskDone(9999, "aa"), ctx())
    assert out.rejected and out.record == transferring()


def test_a_failed_disk_fails_the_vm_and_cancels_its_other_copies() -> None:
    out = saga.step(transferring(), DiskFailed(2001, "404 on the datastore"), ctx())
    assert out.record.phase is Phase.FAILED
    assert out.record.error == "disk 2001 ([LocalDS_0] vm-0007/vm-0007_1.vmdk): 404 on the datastore"
    assert out.commands == (CancelTransfer(2000, "disk 2001 of the same VM failed"),)
    assert [d.phase for d in out.record.disks] == [DiskPhase.CANCELED, DiskPhase.FAILED]


def test_target_failures_fail_the_vm_with_the_step() -> None:
    rec = saga.step(started(), PowerResult(PowerAction.SHUTDOWN_GUEST, PowerState.OFF), ctx()).record
    out = saga.step(rec, TargetError("prepare", "storage_map[LocalDS_0].storage_class: no such class"), ctx())
    assert out.record.phase is Phase.FAILED and out.record.error.startswith("prepare on the target failed")


def test_cancel_while_copying_stops_disks_cleans_up_and_powers_the_source_on() -> None:
    rec = saga.step(transferring(), DiskDone(2000, "aa"), ctx()).record
    out = saga.step(rec, Cancel("operator request"), ctx(300))
    assert out.record.phase is Phase.CANCELED and out.record.stopped_phase is Phase.TRANSFER_DISKS
    assert out.commands == (CancelTransfer(2001, "operator request"), RequestCleanup(),
                            RequestPower(PowerAction.POWER_ON))


def test_cancel_of_a_source_that_was_off_does_not_power_it_on() -> None:
    rec = saga.step(queued(), Start(replace(SOURCE, power_state=PowerState.OFF), "prov-1"), ctx()).record
    assert saga.step(rec, Cancel(), ctx()).commands == (RequestCleanup(),)


def test_cancel_of_a_queued_vm_needs_no_undo_and_late_answers_are_ignored() -> None:
    out = saga.step(queued(), Cancel(), ctx())
    assert out.record.phase is Phase.CANCELED and out.commands == ()
    late = saga.step(out.record, DiskDone(2000, "aa"), ctx())
    assert late.record == out.record and "ignored" in late.note
    assert saga.step(out.record, Cancel(), ctx()).record == out.record


def test_retry_resumes_and_never_copies_a_completed_disk_again() -> None:
    rec = saga.step(transferring(), DiskDone(2000, "aa"), ctx()).record
    failed = saga.step(rec, DiskFailed(2001, "network"), ctx()).record
    requeued = saga.step(failed, Retry(), ctx()).record
    assert requeued.phase is Phase.QUEUED
    again = saga.step(requeued, Start(replace(SOURCE, power_state=PowerState.OFF), "prov-1"), ctx(500))
    assert again.record.attempt == 2 and again.record.restore_power is PowerState.ON  # from the first attempt
    assert again.commands == (RequestPrepare(),)
    out = saga.step(again.record, prepared_disks(2000, 2001), ctx(501))
    assert out.commands == (RequestTransfer(2001, 2),)
    # A different volume for a completed disk (the target was cleaned meanwhile) means copying it again.
    moved = saga.step(again.record, Prepared((PreparedDisk(2000, "/elsewhere/2000.img"),
                                              PreparedDisk(2001, "/t/2001.img"))), ctx())
    assert moved.commands == (RequestTransfer(2000, 2), RequestTransfer(2001, 2))


def test_retry_only_applies_to_failed_vms_and_cancel_after_retry_still_undoes() -> None:
    assert saga.step(transferring(), Retry(), ctx()).record.phase is Phase.TRANSFER_DISKS
    failed = saga.step(transferring(), DiskFailed(2001, "x"), ctx()).record
    requeued = saga.step(failed, Retry(), ctx()).record
    assert saga.step(requeued, Cancel(), ctx()).commands == (RequestCleanup(), RequestPower(PowerAction.POWER_ON))


def test_a_vm_without_disks_goes_from_prepare_to_conversion() -> None:
    rec = started(replace(SOURCE, disks=(), power_state=PowerState.OFF))
    out = saga.step(rec, Prepared(()), ctx())
    assert out.record.phase is Phase.CONVERT and out.commands == (RequestConvert(),)


def test_slots_and_outstanding_requests() -> None:
    assert saga.holds_slot(Phase.TRANSFER_DISKS) and not saga.holds_slot(Phase.CONVERT)
    assert not saga.holds_slot(Phase.QUEUED)
    rec = saga.step(transferring(), DiskDone(2000, "aa"), ctx()).record
    assert saga.outstanding(rec) == (RequestTransfer(2001, 1),)
    assert saga.outstanding(started()) == (RequestPower(PowerAction.SHUTDOWN_GUEST),)
    assert saga.outstanding(queued()) == ()
