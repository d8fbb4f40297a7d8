"""Driving the VM sagas of executing plans: start VMs into free slots, apply each outcome, finish plans.

Every function reads the state, computes with the pure saga, writes the state, then queues the
resulting events in the outbox; the caller publishes them. `apply` is the single place where a VM's
record changes, so slots, counts, statuses and plan completion can never drift from the records.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from mtv.planner import effects, saga, scheduler, status
from mtv.planner.errors import Rejected
from mtv.planner.itinerary import fail
from mtv.planner.records import Phase, PlanPhase, PlanRecord, VmRecord
from mtv.planner.state import PlannerState
from mtv.planner.vm_events import Ctx, Input, Outcome, Start, Tick
from mtv.runtime import metrics
from mtv.v1 import event_pb2

log = logging.getLogger(__name__)


def ctx(st: PlannerState) -> Ctx:
    return Ctx(st.now(), st.config.timeouts)


def apply(st: PlannerState, old: VmRecord | None, out: Outcome, cause: event_pb2.Event | None = None,
          reschedule: bool = True) -> None:
    """Store a saga outcome, queue its commands and statuses, free its slot, finish the plan if it ended."""
    new = out.record
    if out.note:
        log.info("VM %s (%s): %s", new.vm_id, new.name, out.note, extra={"vm_id": new.vm_id})
    spec = st.spec(new.plan_id).spec
    try:
        payloads = [effects.payload(cmd, new, spec, st.config.cdi) for cmd in out.commands]
    except ValueError as exc:  # e.g. a disk whose backing file names no datastore: the VM cannot go on
        out = fail(new, ctx(st), str(exc))
        new, payloads = out.record, []
    if new != old:
        st.put_vm(old, new)
    for p in payloads:
        st.emit(p, new.plan_id, cause)
    if old is None or old.phase is not new.phase:
        st.emit(status.vm_status(new, st.live.get(new.plan_id)), new.plan_id, cause)
        st.dirty_plans.add(new.plan_id)
        if new.phase is Phase.FAILED:
            log.warning("VM %s (%s) failed: %s", new.vm_id, new.name, new.error, extra={"vm_id": new.vm_id})
    elif new != old:
        st.dirty_vms.add(new.key)
    plan = st.plan(new.plan_id)
    assert plan is not None
    if new.vm_id in plan.in_flight and not saga.holds_slot(new.phase):
        st.put_plan(scheduler.release(plan, new.vm_id))
        if reschedule:
            schedule(st, new.plan_id, cause)
    if new.phase.terminal and (old is None or not old.phase.terminal):
        metrics.MIGRATIONS.labels(new.phase.value).inc()
        check_finished(st, new.plan_id, cause)
    if out.rejected:
        raise Rejected(out.rejected)


def vm_input(st: PlannerState, plan_id: str, vm_id: str, inp: Input, cause: event_pb2.Event | None) -> None:
    if st.plan(plan_id) is None:
        raise Rejected(f"unknown plan {plan_id!r}")
    rec = st.vm(plan_id, vm_id)
    if rec is None:
        raise Rejected(f"plan {plan_id} has not started a VM {vm_id!r}")
    apply(st, rec, saga.step(rec, inp, ctx(st)), cause)


def schedule(st: PlannerState, plan_id: str, cause: event_pb2.Event | None = None) -> None:
    """Start queued VMs while the plan has free slots (after the inventory is loaded: it gives the snapshot)."""
    if not st.inventory_ready:
        st.to_schedule.add(plan_id)
        return
    plan = st.plan(plan_id)
    if plan is None or plan.phase is not PlanPhase.EXECUTING or plan.cancel_requested:
        return
    limit = st.spec(plan_id).spec.max_in_flight
    resolved = st.resolved(plan_id)

    def startable(vm_id: str) -> bool:
        rec = st.vm(plan_id, vm_id)
        return rec is None or rec.phase is Phase.QUEUED

    while True:
        plan, started = scheduler.fill(plan, resolved.order, limit, startable)
        st.put_plan(plan)
        for vm_id in started:
            old = st.vm(plan_id, vm_id)
            rv = resolved.by_id[vm_id]
            rec = old or VmRecord(plan_id, vm_id, rv.name, rv.target_name)
            source = st.inventory.vm(plan.provider_id, vm_id)
            out = saga.step(rec, Start(source, plan.provider_id), ctx(st)) if source is not None else \
                fail(rec, ctx(st), f"VM {vm_id} is no longer in the inventory of provider {plan.provider_id}")
            apply(st, old, out, cause, reschedule=False)
        plan = st.plan(plan_id)  # type: ignore[assignment]  # apply() released slots of VMs that ended at once
        if not started or len(plan.in_flight) >= limit:
            break
    check_finished(st, plan_id, cause)


def plan_counts(st: PlannerState, plan_id: str) -> status.PlanCounts:
    return status.counts(st.tallies[plan_id], len(st.resolved(plan_id).order))


def plan_status(st: PlannerState, plan: PlanRecord) -> object:
    if plan.plan_id not in st.store.validations:
        return status.plan_status(plan, status.PlanCounts(0, 0, 0, 0, 0), 0, 0)
    done = st.tallies[plan.plan_id].bytes_done + sum(st.live.get(plan.plan_id, {}).values())
    total = st.store.validations[plan.plan_id].total_bytes
    return status.plan_status(plan, plan_counts(st, plan.plan_id), done, total)


def emit_plan_status(st: PlannerState, plan: PlanRecord, cause: event_pb2.Event | None = None) -> None:
    st.emit(plan_status(st, plan), plan.plan_id, cause)  # type: ignore[arg-type]
    st.dirty_plans.discard(plan.plan_id)


def check_finished(st: PlannerState, plan_id: str, cause: event_pb2.Event | None = None) -> None:
    plan = st.plan(plan_id)
    if plan is None or plan.phase is not PlanPhase.EXECUTING:
        return
    # Every VM of the plan is waiting (no record or QUEUED), active, or ended: the tally knows which.
    outcome = plan_counts(st, plan_id).outcome(canceled_by_user=plan.cancel_requested)
    if outcome is None:
        return
    plan = replace(plan, phase=outcome, updated_at=st.now())
    st.put_plan(plan)
    log.info("plan %s %s", plan.name, outcome.value)
    emit_plan_status(st, plan, cause)


def tick(st: PlannerState) -> None:
    """Deadlines and power observations of VMs in a power phase, deferred scheduling, re-sends."""
    for key in list(st.power_waiting):
        rec = st.store.vms.get(key)
        if rec is None:
            continue
        source = st.inventory.vm(rec.provider_id, rec.vm_id)
        out = saga.step(rec, Tick(source.power_state) if source else Tick(), ctx(st))
        if out.record != rec or out.commands:
            apply(st, rec, out)
    if st.inventory_ready:
        for plan_id in list(st.to_schedule):
            st.to_schedule.discard(plan_id)
            schedule(st, plan_id)
    if st.resend and st.now() >= st.resend_at:
        resend(st)


def resend(st: PlannerState) -> None:
    """After a restart, re-send the requests still unanswered: one may have been lost with the process.
    Receivers are idempotent; a disk whose completion was recorded is never among them."""
    count = 0
    for key in sorted(st.resend):
        rec = st.store.vms.get(key)
        if rec is None or rec.phase.terminal:
            continue
        spec = st.spec(rec.plan_id).spec
        for cmd in saga.outstanding(rec):
            st.emit(effects.payload(cmd, rec, spec, st.config.cdi), rec.plan_id)
            count += 1
    st.resend.clear()
    if count:
        log.info("re-sent %d unanswered request(s) after the restart", count)


def flush_statuses(st: PlannerState, force: bool = False) -> None:
    """Progress-only changes: at most one status per VM and plan per `status_interval`."""
    now = st.now()
    if not force and now - st.last_status_flush < st.config.status_interval:
        return
    st.last_status_flush = now
    for key in sorted(st.dirty_vms):
        rec = st.store.vms.get(key)
        if rec is not None:
            st.emit(status.vm_status(rec, st.live.get(rec.plan_id)), rec.plan_id)
    st.dirty_vms.clear()
    for plan_id in sorted(st.dirty_plans):
        plan = st.plan(plan_id)
        if plan is not None:
            emit_plan_status(st, plan)
    st.dirty_plans.clear()
