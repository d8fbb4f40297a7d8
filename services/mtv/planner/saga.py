"""One VM's saga: feed it an input, get the new record and the commands to publish.

The per-phase behaviour is the table in itinerary.py; this module adds what applies in any phase:
start, cancel, retry, which phases hold one of the plan's maxInFlight slots, and which requests are
still unanswered (re-sent after a restart, when the planner cannot know whether they left).

    QUEUED --start--> (itinerary) --> COMPLETED
                           |  any error      --> FAILED --retry--> QUEUED (completed disks are kept)
                           |  cancel         --> CANCELED: cancel running disks, clean up the target,
                                                 power the source back on if it was on
"""

from __future__ import annotations

from dataclasses import replace

from mtv.model import PowerState
from mtv.planner.itinerary import BY_PHASE, advance
from mtv.planner.records import DiskPhase, Phase, VmRecord
from mtv.planner.vm_events import (
    Cancel,
    CancelTransfer,
    Command,
    Ctx,
    Input,
    Outcome,
    PowerAction,
    RequestCleanup,
    RequestConvert,
    RequestPower,
    RequestPrepare,
    RequestTransfer,
    Retry,
    Start,
)

# A slot limits what loads the source (power operations, disk reads); conversion does not, so a VM
# gives its slot back when its disks are copied and the next VM starts (Forklift frees it later).
SLOT_PHASES = frozenset({Phase.STORE_POWER_STATE, Phase.POWER_OFF_SOURCE, Phase.WAIT_FOR_POWER_OFF,
                         Phase.PREPARE_TARGET, Phase.TRANSFER_DISKS})
# Phases after which the target may hold something of this VM, and the source may be off.
_TARGET_TOUCHED = frozenset({Phase.PREPARE_TARGET, Phase.TRANSFER_DISKS, Phase.CONVERT})
_POWER_TOUCHED = frozenset({Phase.POWER_OFF_SOURCE, Phase.WAIT_FOR_POWER_OFF}) | _TARGET_TOUCHED


def holds_slot(phase: Phase) -> bool:
    return phase in SLOT_PHASES


def step(rec: VmRecord, event: Input, ctx: Ctx) -> Outcome:
    """Apply one input. Inputs that do not fit the phase (duplicates, late answers) change nothing."""
    if isinstance(event, Start):
        return start(rec, event, ctx)
    if isinstance(event, Cancel):
        return cancel(rec, event, ctx)
    if isinstance(event, Retry):
        return retry(rec)
    name = type(event).__name__
    if rec.phase.terminal:
        return Outcome(rec, note=f"{name} after the VM {rec.phase.value}: ignored")
    spec = BY_PHASE.get(rec.phase)
    handler = spec.on.get(type(event)) if spec else None
    if handler is None:
        return Outcome(rec, note=f"{name} does not apply in phase {rec.phase.value}: ignored")
    return handler(rec, event, ctx)


def start(rec: VmRecord, ev: Start, ctx: Ctx) -> Outcome:
    if rec.phase is not Phase.QUEUED:
        return Outcome(rec, note=f"start in phase {rec.phase.value}: ignored")
    begun = replace(rec, vm=ev.vm, provider_id=ev.provider_id, attempt=rec.attempt + 1, started_at=ctx.now,
                    finished_at=0.0, error="", stopped_phase=None)
    return advance(begun, ctx)


def cancel(rec: VmRecord, ev: Cancel, ctx: Ctx) -> Outcome:
    """Stop the VM and undo what can be undone. A failed VM can be canceled too: that gives up on it,
    cleans the target and restores the source's power."""
    if rec.phase in (Phase.COMPLETED, Phase.CANCELED):
        return Outcome(rec, note=f"cancel after the VM {rec.phase.value}: ignored")
    # A failed VM, or one queued again by a retry, got as far as where it stopped.
    reached = rec.stopped_phase if rec.phase in (Phase.FAILED, Phase.QUEUED) else rec.phase
    commands: list[Command] = []
    disks = []
    for d in rec.disks:
        if d.phase is DiskPhase.RUNNING:
            commands.append(CancelTransfer(d.key, ev.reason or "VM canceled"))
            d = replace(d, phase=DiskPhase.CANCELED)
        disks.append(d)
    if reached in _TARGET_TOUCHED:
        commands.append(RequestCleanup())
    if reached in _POWER_TOUCHED and rec.restore_power is PowerState.ON:
        commands.append(RequestPower(PowerAction.POWER_ON))
    done = replace(rec, phase=Phase.CANCELED, stopped_phase=reached, disks=tuple(disks), deadline=0.0,
                   power_request="", error=ev.reason or "canceled", finished_at=ctx.now)
    return Outcome(done, tuple(commands))


def retry(rec: VmRecord) -> Outcome:
    if rec.phase is not Phase.FAILED:
        return Outcome(rec, note=f"retry in phase {rec.phase.value}: only failed VMs are retried")
    return Outcome(replace(rec, phase=Phase.QUEUED, deadline=0.0, power_request=""))


def outstanding(rec: VmRecord) -> tuple[Command, ...]:
    """The requests of the current phase that have no answer yet."""
    if rec.phase in (Phase.POWER_OFF_SOURCE, Phase.WAIT_FOR_POWER_OFF) and rec.power_request:
        return (RequestPower(PowerAction(rec.power_request)),)
    if rec.phase is Phase.PREPARE_TARGET:
        return (RequestPrepare(),)
    if rec.phase is Phase.TRANSFER_DISKS:
        return tuple(RequestTransfer(d.key, d.attempt) for d in rec.disks if d.phase is DiskPhase.RUNNING)
    if rec.phase is Phase.CONVERT:
        return (RequestConvert(),)
    return ()
