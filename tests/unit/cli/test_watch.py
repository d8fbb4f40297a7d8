"""The watch view folds progress and status events correctly and renders failures visibly."""

from __future__ import annotations

from rich.console import Console

from mtv import events
from mtv.cli.watch import WatchState, render
from mtv.v1 import migration_pb2, plan_pb2, transfer_pb2


def _ev(payload: object) -> object:
    return events.make(payload, source="test")  # type: ignore[arg-type]


def _progress(tid: str, done: int, plan: str = "p1") -> object:
    return _ev(transfer_pb2.DiskTransferProgress(transfer_id=tid, plan_id=plan, vm_id="vm-1", bytes_done=done,
                                                 bytes_total=1000, rate_bytes_per_second=100, eta_seconds=9))


def test_progress_then_completion_and_failure() -> None:
    state = WatchState("p1")
    state.apply(_progress("p1/vm-1/2000", 100))
    state.apply(_progress("p1/vm-1/2001", 500))
    state.apply(_ev(transfer_pb2.DiskTransferCompleted(transfer_id="p1/vm-1/2000", plan_id="p1", vm_id="vm-1",
                                                       sha256="ab" * 32, bytes_total=1000, duration_seconds=4.0)))
    state.apply(_progress("p1/vm-1/2000", 300))  # late progress must not undo completion
    state.apply(_ev(transfer_pb2.DiskTransferFailed(transfer_id="p1/vm-1/2001", plan_id="p1", vm_id="vm-1",
                                                    reason="404 from datastore: file missing")))
    disks = state.plans["p1"].disks
    assert (disks["p1/vm-1/2000"].state, disks["p1/vm-1/2000"].done) == ("completed", 1000)
    assert disks["p1/vm-1/2000"].rate == 250.0  # average of the whole copy, not the last progress
    assert disks["p1/vm-1/2001"].state == "failed"
    assert not state.done()

    state.apply(_ev(migration_pb2.VmMigrationStatus(plan_id="p1", vm_id="vm-1", vm_name="web-01",
                                                    phase=migration_pb2.VM_PHASE_FAILED, error="disk 2001 failed")))
    state.apply(_ev(plan_pb2.PlanStatusChanged(plan_id="p1", phase=plan_pb2.PLAN_PHASE_FAILED, vms_total=1,
                                               vms_failed=1)))
    assert state.done()

    console = Console(record=True, width=160, color_system=None)
    console.print(render(state))
    text = console.export_text()
    assert "plan p1: failed" in text
    assert "web-01" in text and "disk 2001 failed" in text
    assert "404 from datastore" in text
    assert "sha256 abababababab" in text


def test_other_plans_are_ignored() -> None:
    state = WatchState("p1")
    state.apply(_progress("p2/vm-1/2000", 5, plan="p2"))
    assert state.plans == {}
    everything = WatchState()
    everything.apply(_progress("p2/vm-1/2000", 5, plan="p2"))
    assert list(everything.plans) == ["p2"]
