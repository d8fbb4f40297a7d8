"""What happens to a VM in a cold migration: the itinerary as a table of phases.

  phase               step (UI)           applies when          asks for (enter)            waits for
  ------------------  ------------------  --------------------  --------------------------  ---------------------------
  STORE_POWER_STATE   Initialize          always                - (records power state)     -
  POWER_OFF_SOURCE    Initialize          source not yet off    SourcePowerRequested        SourcePowerChanged, or the
                                                                SHUTDOWN_GUEST              inventory seeing it off;
                                                                                            error/timeout: next phase
  WAIT_FOR_POWER_OFF  Initialize          source not yet off    SourcePowerRequested        SourcePowerChanged
                                                                POWER_OFF (hard)            (error/timeout: VM fails)
  PREPARE_TARGET      DiskAllocation      always                TargetPrepareRequested      TargetPrepared (sinks)
  TRANSFER_DISKS      DiskTransfer        a disk is not copied  DiskTransferRequested/disk  DiskTransferCompleted/disk
                                                                                            (any Failed: VM fails)
  CONVERT             VirtualMachine-     always                ConvertRequested            VmCreated
                      Creation
  then COMPLETED. TargetFailed in PREPARE_TARGET or CONVERT fails the VM. Cancel and retry: saga.py.

Each phase is a row: a predicate, an `enter` function issuing the phase's request, and one small
function per input it reacts to, each (record, input, ctx) -> Outcome. `advance` moves to the next
row that applies, so skipping (an already-off source, disks copied by an earlier attempt) is data,
not branching. Nothing here touches Kafka or a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from mtv.model import PowerState
from mtv.planner.records import DiskPhase, DiskState, Phase, VmRecord
from mtv.planner.vm_events import CancelTransfer as CancelDisk
from mtv.planner.vm_events import (
    Command,
    Created,
    Ctx,
    DiskDone,
    DiskFailed,
    Outcome,
    PowerAction,
    PowerResult,
    Prepared,
    RequestConvert,
    RequestPower,
    RequestPrepare,
    RequestTransfer,
    TargetError,
    Tick,
    parse_sink,
)

Handler = Callable[[VmRecord, Any, Ctx], Outcome]


@dataclass(frozen=True)
class PhaseSpec:
    phase: Phase
    step: str  # the user-visible pipeline step (forklift-reference §6)
    description: str
    applies: Callable[[VmRecord], bool]
    enter: Callable[[VmRecord, Ctx], Outcome]
    on: Mapping[type, Handler]


def advance(rec: VmRecord, ctx: Ctx, note: str = "", commands: tuple[Command, ...] = ()) -> Outcome:
    """Leave the current phase for the next row that applies and enter it; COMPLETED after the last."""
    start = next((i + 1 for i, spec in enumerate(COLD) if spec.phase is rec.phase), 0)
    for spec in COLD[start:]:
        if spec.applies(rec):
            out = spec.enter(replace(rec, phase=spec.phase, deadline=0.0, power_request=""), ctx)
            return replace(out, commands=commands + out.commands, note=note or out.note)
    return Outcome(replace(rec, phase=Phase.COMPLETED, finished_at=ctx.now, deadline=0.0), commands, note)


def fail(rec: VmRecord, ctx: Ctx, reason: str, commands: tuple[Command, ...] = ()) -> Outcome:
    failed = replace(rec, phase=Phase.FAILED, stopped_phase=rec.phase, error=reason, finished_at=ctx.now,
                     deadline=0.0, power_request="")
    return Outcome(failed, commands)


def _same(rec: VmRecord, note: str) -> Outcome:
    return Outcome(rec, note=note)


# --- STORE_POWER_STATE ----------------------------------------------------------------------------

def store_power_state(rec: VmRecord, ctx: Ctx) -> Outcome:
    assert rec.vm is not None, "start() stores the VM snapshot before the first phase"
    # A retry finds the source off (we turned it off): keep what it was before the first attempt.
    restore = rec.restore_power if rec.restore_power is not PowerState.UNKNOWN else rec.vm.power_state
    off = rec.source_off or rec.vm.power_state is PowerState.OFF
    return advance(replace(rec, restore_power=restore, source_off=off), ctx)


def _source_on(rec: VmRecord) -> bool:
    return not rec.source_off


# --- POWER_OFF_SOURCE: graceful ---------------------------------------------------------------------

def request_shutdown(rec: VmRecord, ctx: Ctx) -> Outcome:
    waiting = replace(rec, power_request=PowerAction.SHUTDOWN_GUEST.value,
                      deadline=ctx.now + ctx.timeouts.shutdown_seconds)
    return Outcome(waiting, (RequestPower(PowerAction.SHUTDOWN_GUEST),))


def shutdown_result(rec: VmRecord, ev: PowerResult, ctx: Ctx) -> Outcome:
    if ev.action is not PowerAction.SHUTDOWN_GUEST:
        return _same(rec, f"{ev.action.value} result while shutting down: ignored")
    if ev.error:
        # Typically "VMware Tools not running": the guest cannot shut itself down; do it the hard way.
        return advance(rec, ctx, note=f"guest shutdown refused ({ev.error}); powering off")
    if ev.power_state is PowerState.OFF:
        return advance(replace(rec, source_off=True), ctx)
    return _same(replace(rec, power_request=""), "guest shutdown started; waiting for the VM to be off")


def shutdown_tick(rec: VmRecord, ev: Tick, ctx: Ctx) -> Outcome:
    if ev.observed_power is PowerState.OFF:
        return advance(replace(rec, source_off=True), ctx)
    if rec.deadline and ctx.now >= rec.deadline:
        return advance(rec, ctx, note=f"guest not off after {ctx.timeouts.shutdown_seconds:.0f} s; powering off")
    return _same(rec, "")


# --- WAIT_FOR_POWER_OFF: hard ------------------------------------------------------------------------

def request_power_off(rec: VmRecord, ctx: Ctx) -> Outcome:
    waiting = replace(rec, power_request=PowerAction.POWER_OFF.value,
                      deadline=ctx.now + ctx.timeouts.power_off_seconds)
    return Outcome(waiting, (RequestPower(PowerAction.POWER_OFF),))


def power_off_result(rec: VmRecord, ev: PowerResult, ctx: Ctx) -> Outcome:
    if ev.action is PowerAction.POWER_OFF and ev.error:
        return fail(rec, ctx, f"could not power off the source VM: {ev.error}")
    if ev.action is PowerAction.POWER_OFF or ev.power_state is PowerState.OFF:
        return advance(replace(rec, source_off=True), ctx)
    return _same(rec, f"{ev.action.value} result while powering off: ignored")


def power_off_tick(rec: VmRecord, ev: Tick, ctx: Ctx) -> Outcome:
    if ev.observed_power is PowerState.OFF:
        return advance(replace(rec, source_off=True), ctx)
    if rec.deadline and ctx.now >= rec.deadline:
        return fail(rec, ctx, f"no answer to the power-off request within {ctx.timeouts.power_off_seconds:.0f} s; "
                              "is the inventory service running?")
    return _same(rec, "")


# --- PREPARE_TARGET ------------------------------------------------------------------------------

def request_prepare(rec: VmRecord, ctx: Ctx) -> Outcome:
    return Outcome(rec, (RequestPrepare(),))


def prepared(rec: VmRecord, ev: Prepared, ctx: Ctx) -> Outcome:
    assert rec.vm is not None
    sinks = {d.key: d for d in ev.disks}
    missing = [d.key for d in rec.vm.disks if d.key not in sinks]
    if missing:
        return fail(rec, ctx, f"the target prepared no volume for disk(s) {missing}; see the converter's log")
    unusable = [f"{s.key}: {s.sink_uri!r}" for s in ev.disks if parse_sink(s.sink_uri) is None]
    if unusable:
        return fail(rec, ctx, f"the target gave sinks that are neither an absolute path nor cdi-upload://: "
                              f"{', '.join(unusable)}")
    disks = []
    for d in rec.vm.disks:
        sink, old = sinks[d.key], rec.disk(d.key)
        if old is not None and old.phase is DiskPhase.COMPLETED and old.sink_uri == sink.sink_uri:
            disks.append(old)  # copied by an earlier attempt into the same volume: never copy it again
            continue
        disks.append(DiskState(d.key, d.file, d.capacity_bytes, sink.sink_uri, sink.volume_name,
                               attempt=old.attempt if old else 0))
    return advance(replace(rec, disks=tuple(disks)), ctx)


def target_failed(rec: VmRecord, ev: TargetError, ctx: Ctx) -> Outcome:
    return fail(rec, ctx, f"{ev.step} on the target failed: {ev.reason}")


# --- TRANSFER_DISKS ------------------------------------------------------------------------------

def _not_copied(rec: VmRecord) -> bool:
    return any(d.phase is not DiskPhase.COMPLETED for d in rec.disks)


def request_transfers(rec: VmRecord, ctx: Ctx) -> Outcome:
    disks, commands = [], []
    for d in rec.disks:
        if d.phase is DiskPhase.COMPLETED:
            disks.append(d)
            continue
        disks.append(replace(d, phase=DiskPhase.RUNNING, attempt=d.attempt + 1, error=""))
        commands.append(RequestTransfer(d.key, d.attempt + 1))
    return Outcome(replace(rec, disks=tuple(disks)), tuple(commands))


def _with_disk(rec: VmRecord, disk: DiskState) -> VmRecord:
    return replace(rec, disks=tuple(disk if d.key == disk.key else d for d in rec.disks))


def disk_done(rec: VmRecord, ev: DiskDone, ctx: Ctx) -> Outcome:
    disk = rec.disk(ev.key)
    if disk is None:
        return Outcome(rec, rejected=f"VM {rec.vm_id} of plan {rec.plan_id} has no disk {ev.key}")
    if disk.phase is not DiskPhase.RUNNING:
        return _same(rec, f"disk {ev.key} already {disk.phase.value}: duplicate completion ignored")
    rec = _with_disk(rec, replace(disk, phase=DiskPhase.COMPLETED, sha256=ev.sha256))
    return advance(rec, ctx) if not _not_copied(rec) else Outcome(rec)


def disk_failed(rec: VmRecord, ev: DiskFailed, ctx: Ctx) -> Outcome:
    disk = rec.disk(ev.key)
    if disk is None:
        return Outcome(rec, rejected=f"VM {rec.vm_id} of plan {rec.plan_id} has no disk {ev.key}")
    if disk.phase is not DiskPhase.RUNNING:
        return _same(rec, f"disk {ev.key} already {disk.phase.value}: failure ignored")
    rec = _with_disk(rec, replace(disk, phase=DiskPhase.FAILED, error=ev.reason))
    # The VM cannot finish: free the workers still copying its other disks.
    others = [d for d in rec.disks if d.phase is DiskPhase.RUNNING]
    for d in others:
        rec = _with_disk(rec, replace(d, phase=DiskPhase.CANCELED))
    cancels = tuple(CancelDisk(d.key, f"disk {ev.key} of the same VM failed") for d in others)
    return fail(rec, ctx, f"disk {ev.key} ({disk.file}): {ev.reason}", cancels)


# --- CONVERT -------------------------------------------------------------------------------------

def request_convert(rec: VmRecord, ctx: Ctx) -> Outcome:
    return Outcome(rec, (RequestConvert(),))


def created(rec: VmRecord, ev: Created, ctx: Ctx) -> Outcome:
    done = replace(rec, location=ev.location or f"{ev.namespace}/{ev.name}")
    return advance(done, ctx)


def _always(rec: VmRecord) -> bool:
    return True


COLD: tuple[PhaseSpec, ...] = (
    PhaseSpec(Phase.STORE_POWER_STATE, "Initialize", "Store the power state and power off the source VM",
              _always, store_power_state, {}),
    PhaseSpec(Phase.POWER_OFF_SOURCE, "Initialize", "", _source_on, request_shutdown,
              {PowerResult: shutdown_result, Tick: shutdown_tick}),
    PhaseSpec(Phase.WAIT_FOR_POWER_OFF, "Initialize", "", _source_on, request_power_off,
              {PowerResult: power_off_result, Tick: power_off_tick}),
    PhaseSpec(Phase.PREPARE_TARGET, "DiskAllocation", "Create the target volumes", _always, request_prepare,
              {Prepared: prepared, TargetError: target_failed}),
    PhaseSpec(Phase.TRANSFER_DISKS, "DiskTransfer", "Copy the disks", _not_copied, request_transfers,
              {DiskDone: disk_done, DiskFailed: disk_failed}),
    PhaseSpec(Phase.CONVERT, "VirtualMachineCreation", "Convert the disks and create the VirtualMachine",
              _always, request_convert, {Created: created, TargetError: target_failed}),
)
BY_PHASE: Mapping[Phase, PhaseSpec] = {spec.phase: spec for spec in COLD}
# The user-visible steps in order, with the description of their first phase.
STEPS: tuple[tuple[str, str], ...] = tuple(
    (spec.step, spec.description) for i, spec in enumerate(COLD) if i == 0 or COLD[i - 1].step != spec.step)
