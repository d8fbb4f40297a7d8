"""Status for people and tools: VmMigrationStatus per VM, PlanStatusChanged per plan (public topics).

A VM's pipeline is derived from the itinerary's steps (Initialize, DiskAllocation, DiskTransfer with one
task per disk, VirtualMachineCreation), so the table in itinerary.py is the only place that says
which phase belongs to which step. Plan counts come from a `Tally` kept up to date per record change
(O(1)), never by scanning the plan's VMs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from mtv import topics
from mtv.model import PowerState
from mtv.planner.itinerary import COLD, STEPS
from mtv.planner.records import DiskPhase, Phase, PlanPhase, PlanRecord, VmRecord
from mtv.v1 import common_pb2, migration_pb2, plan_pb2

_INDEX = {spec.phase: i for i, spec in enumerate(COLD)}
_STEP_PHASES = {name: [_INDEX[s.phase] for s in COLD if s.step == name] for name, _ in STEPS}
_DISK_STEP = {DiskPhase.PENDING: migration_pb2.STEP_PHASE_PENDING,
              DiskPhase.RUNNING: migration_pb2.STEP_PHASE_RUNNING,
              DiskPhase.COMPLETED: migration_pb2.STEP_PHASE_COMPLETED,
              DiskPhase.FAILED: migration_pb2.STEP_PHASE_FAILED,
              DiskPhase.CANCELED: migration_pb2.STEP_PHASE_SKIPPED}
_POWER_PB = {PowerState.ON: common_pb2.POWER_STATE_ON, PowerState.OFF: common_pb2.POWER_STATE_OFF,
             PowerState.SUSPENDED: common_pb2.POWER_STATE_SUSPENDED}


def completed_bytes(rec: VmRecord) -> int:
    return sum(d.size for d in rec.disks if d.phase is DiskPhase.COMPLETED)


@dataclass
class Tally:
    """Counts of a plan's VM records by phase, and bytes of completed disks."""

    phases: Counter[Phase] = field(default_factory=Counter)
    bytes_done: int = 0

    def update(self, old: VmRecord | None, new: VmRecord) -> None:
        if old is not None:
            self.phases[old.phase] -= 1
            self.bytes_done -= completed_bytes(old)
        self.phases[new.phase] += 1
        self.bytes_done += completed_bytes(new)

    def active(self) -> int:
        """Started and not ended."""
        return sum(n for p, n in self.phases.items() if not p.terminal and p is not Phase.QUEUED)


def transfer_key(rec: VmRecord, disk_key: int) -> str:
    return topics.transfer_id(rec.plan_id, rec.vm_id, disk_key)


def vm_status(rec: VmRecord, live: Mapping[str, int] | None = None) -> migration_pb2.VmMigrationStatus:
    """`live` maps transfer ids to bytes copied so far (from DiskTransferProgress)."""
    live = live or {}
    status = migration_pb2.VmMigrationStatus(
        plan_id=rec.plan_id, vm_id=rec.vm_id, vm_name=rec.name, phase=rec.phase.pb, error=rec.error,
        restore_power_state=_POWER_PB.get(rec.restore_power, common_pb2.POWER_STATE_UNSPECIFIED),
        target_name=rec.target_name)
    if rec.phase is Phase.COMPLETED:
        at = len(COLD)
    elif rec.phase in (Phase.FAILED, Phase.CANCELED):
        at = _INDEX.get(rec.stopped_phase, -1) if rec.stopped_phase else -1
    else:
        at = _INDEX.get(rec.phase, -1)  # QUEUED: before the first step
    for name, description in STEPS:
        indexes = _STEP_PHASES[name]
        step = status.pipeline.add(name=name, description=description)
        if at > max(indexes):
            step.phase = migration_pb2.STEP_PHASE_COMPLETED
        elif at in indexes:
            step.phase = migration_pb2.STEP_PHASE_RUNNING
            if rec.phase in (Phase.FAILED, Phase.CANCELED):
                step.phase = migration_pb2.STEP_PHASE_FAILED
                step.error = rec.error
        else:
            step.phase = migration_pb2.STEP_PHASE_PENDING
        if name == "DiskTransfer":
            _disk_tasks(step, rec, live)
    return status


def _disk_tasks(step: migration_pb2.PipelineStep, rec: VmRecord, live: Mapping[str, int]) -> None:
    done_total = size_total = 0
    if rec.disks:
        for d in rec.disks:
            tid = transfer_key(rec, d.key)
            done = d.size if d.phase is DiskPhase.COMPLETED else min(live.get(tid, 0), d.size)
            step.tasks.add(disk_id=tid, phase=_DISK_STEP[d.phase],
                           bytes=common_pb2.ByteProgress(done=done, total=d.size))
            done_total, size_total = done_total + done, size_total + d.size
    elif rec.vm is not None:
        for d in rec.vm.disks:
            step.tasks.add(disk_id=transfer_key(rec, d.key), phase=migration_pb2.STEP_PHASE_PENDING,
                           bytes=common_pb2.ByteProgress(done=0, total=d.capacity_bytes))
            size_total += d.capacity_bytes
    step.progress.done, step.progress.total = done_total, size_total


def queued_status(plan_id: str, vm_id: str, name: str, target_name: str) -> migration_pb2.VmMigrationStatus:
    """Status of a VM that has no record yet: waiting for a slot."""
    return vm_status(VmRecord(plan_id, vm_id, name, target_name))


@dataclass(frozen=True)
class PlanCounts:
    total: int
    succeeded: int
    failed: int
    canceled: int
    running: int

    @property
    def waiting(self) -> int:
        return self.total - self.succeeded - self.failed - self.canceled - self.running

    def outcome(self, canceled_by_user: bool = False) -> PlanPhase | None:
        """The plan's final phase once every VM ended, else None. Any failed VM fails the plan; a plan
        canceled as a whole, or with nothing migrated, is canceled."""
        if self.running or self.waiting > 0:
            return None
        if self.failed:
            return PlanPhase.FAILED
        return PlanPhase.CANCELED if canceled_by_user or not self.succeeded else PlanPhase.SUCCEEDED


def counts(tally: Tally, total: int) -> PlanCounts:
    p = tally.phases
    return PlanCounts(total, p[Phase.COMPLETED], p[Phase.FAILED], p[Phase.CANCELED], tally.active())


def plan_status(plan: PlanRecord, c: PlanCounts, bytes_done: int, bytes_total: int) -> plan_pb2.PlanStatusChanged:
    return plan_pb2.PlanStatusChanged(
        plan_id=plan.plan_id, revision=plan.revision, phase=plan.phase.pb, vms_total=c.total,
        vms_succeeded=c.succeeded, vms_failed=c.failed, vms_canceled=c.canceled, vms_running=c.running,
        bytes=common_pb2.ByteProgress(done=min(bytes_done, bytes_total) if bytes_total else bytes_done,
                                      total=bytes_total))
