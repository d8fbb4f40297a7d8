"""A plan's lifecycle: create (new revisions), validate, approve, cancel, retry.

    CREATED --validate--> VALIDATED | BLOCKED --signed approval of this revision--> EXECUTING
    EXECUTING --all VMs ended--> SUCCEEDED | FAILED | CANCELED --retry of failed VMs--> EXECUTING

A plan accepts new revisions until it is approved. Inventory changes re-validate open plans after a
short quiet period (debounce), and PlanValidated is published only when the result changes.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace

from mtv import approvals
from mtv.model import ConcernCategory, PlanSpec, concern_to_proto, plan_from_proto
from mtv.planner import runs, saga, scheduler, status
from mtv.planner.errors import PlanConflict, PlanSpecError, Rejected
from mtv.planner.plan_yaml import check_spec
from mtv.planner.records import Phase, PlanPhase, PlanRecord, SpecRecord, VmRecord, remember
from mtv.planner.state import PlannerState
from mtv.planner.validation import Validation, validate
from mtv.planner.vm_events import Cancel
from mtv.v1 import event_pb2, inventory_pb2, plan_pb2

log = logging.getLogger(__name__)

OPEN = frozenset({PlanPhase.CREATED, PlanPhase.VALIDATED, PlanPhase.BLOCKED})
ACCEPTED = "accepted"
CLOCK_SKEW = 300.0  # seconds an approval may come from the future (the approver's clock runs ahead)


# --- create ---------------------------------------------------------------------------------------

def prepare_create(st: PlannerState, spec: PlanSpec) -> tuple[str, int, bool]:
    """(plan id, revision, changed) for a CreatePlan: the same name updates the plan (a new revision)
    while it is open; an identical spec changes nothing. Raises PlanSpecError or PlanConflict."""
    problems = check_spec(spec)
    if problems:
        raise PlanSpecError(problems)
    plan_id = st.store.names.get(spec.name)
    plan = st.plan(plan_id) if plan_id else None
    if plan is None:
        return str(uuid.uuid4()), 1, True
    if plan.phase not in OPEN:
        raise PlanConflict(f"plan {spec.name!r} is {plan.phase.value}; it cannot change after approval. "
                           "Create a plan with another name")
    if st.spec(plan.plan_id).spec == spec:
        return plan.plan_id, plan.revision, False
    return plan.plan_id, plan.revision + 1, True


def on_created(st: PlannerState, p: plan_pb2.PlanCreated, cause: event_pb2.Event) -> str:
    spec = plan_from_proto(p.spec)
    problems = check_spec(spec)
    if problems:
        return reject(st, p.plan_id, p.revision, "", "invalid_spec: " + "; ".join(map(str, problems)), cause)
    plan = st.plan(p.plan_id)
    if plan is not None and p.revision <= plan.revision:
        return "duplicate: revision already known"
    if plan is not None and plan.phase not in OPEN:
        return reject(st, p.plan_id, p.revision, "", f"conflict: the plan is {plan.phase.value}; it cannot change "
                                                     "after approval", cause)
    other = st.store.names.get(spec.name)
    if other and other != p.plan_id:
        return reject(st, p.plan_id, p.revision, "", f"conflict: plan name {spec.name!r} is taken by plan {other}",
                      cause)
    now = st.now()
    st.store.specs[p.plan_id] = SpecRecord(p.plan_id, p.revision, spec, now)
    if plan is not None and plan.name != spec.name:
        st.store.names.pop(plan.name, None)
    st.store.names[spec.name] = p.plan_id
    new = PlanRecord(p.plan_id, spec.name, p.revision, PlanPhase.CREATED,
                     approval_ids=plan.approval_ids if plan else (),
                     created_at=plan.created_at if plan else now, updated_at=now)
    st.put_plan(new)
    runs.emit_plan_status(st, new, cause)
    log.info("plan %s revision %d created (%d VMs)", spec.name, p.revision, len(spec.vms))
    st.unvalidated[p.plan_id] = 0.0
    if st.inventory_ready:
        validate_plan(st, p.plan_id, cause)
    return ACCEPTED


# --- validate -------------------------------------------------------------------------------------

def validate_plan(st: PlannerState, plan_id: str, cause: event_pb2.Event | None = None,
                  force: bool = False) -> Validation | None:
    """Validate an open plan; publish PlanValidated when the result differs from the last (or `force`)."""
    plan = st.plan(plan_id)
    st.unvalidated.pop(plan_id, None)
    if plan is None or plan.phase not in OPEN:
        return st.store.validations.get(plan_id)
    spec = st.spec(plan_id)
    result = validate(spec.spec, spec.revision, st.inventory)
    previous = st.store.validations.get(plan_id)
    st.store.validations[plan_id] = result
    phase = PlanPhase.BLOCKED if result.blocked else PlanPhase.VALIDATED
    st.put_plan(replace(plan, phase=phase, validated_revision=spec.revision, provider_id=result.provider_id,
                        updated_at=st.now()))
    changed = previous is None or (previous.revision, previous.blocked, previous.concerns) != (
        result.revision, result.blocked, result.concerns)
    if changed or force:
        st.emit(validated_event(plan_id, result), plan_id, cause)
        log.info("plan %s revision %d %s (%d concern(s))", plan.name, spec.revision, phase.value,
                 len(result.concerns))
    if phase is not plan.phase:
        runs.emit_plan_status(st, st.plan(plan_id), cause)  # type: ignore[arg-type]
    return result


def validated_event(plan_id: str, result: Validation) -> plan_pb2.PlanValidated:
    return plan_pb2.PlanValidated(plan_id=plan_id, revision=result.revision, blocked=result.blocked,
                                  concerns=[concern_to_proto(c) for c in result.concerns])


def inventory_changed(st: PlannerState, provider_id: str) -> None:
    """Mark the open plans this provider's change may affect (plans whose provider is unknown too)."""
    now = st.now()
    name = st.inventory.provider_name(provider_id)
    for plan in st.store.plans.values():
        if plan.phase in OPEN and (plan.provider_id in ("", provider_id)
                                   or st.spec(plan.plan_id).spec.source_provider in (provider_id, name)):
            st.unvalidated[plan.plan_id] = now


def revalidate_due(st: PlannerState) -> None:
    if not st.inventory_ready:
        return
    now = st.now()
    for plan_id, since in list(st.unvalidated.items()):
        if now - since >= st.config.revalidate_debounce:
            validate_plan(st, plan_id)


def on_provider_status(st: PlannerState, p: inventory_pb2.ProviderStatusChanged) -> str:
    provider = p.provider
    if st.store.providers.get(provider.id) != provider.name:
        st.store.providers[provider.id] = provider.name
        st.inventory.set_provider(provider.id, provider.name)
        inventory_changed(st, provider.id)
    return ACCEPTED


# --- approve --------------------------------------------------------------------------------------

def reject(st: PlannerState, plan_id: str, revision: int, approver: str, reason: str,
           cause: event_pb2.Event | None) -> str:
    st.emit(plan_pb2.PlanRejected(plan_id=plan_id, revision=revision, approver_id=approver, reason=reason),
            plan_id, cause)
    log.warning("plan %s revision %d: rejected: %s", plan_id, revision, reason)
    return reason


def on_approved(st: PlannerState, p: plan_pb2.PlanApproved, cause: event_pb2.Event, key: str = "") -> str:
    """Start the plan if the approval is signed by a known approver for the current, validated,
    unblocked revision; otherwise publish PlanRejected with the reason. Returns the verdict."""
    try:
        approval = approvals.verify(p, st.keys)
    except approvals.ApprovalError as exc:
        plan_id, revision, approver = _unverified(p, key or cause.envelope.correlation_id)
        return reject(st, plan_id, revision, approver, str(exc), cause)
    plan_id, revision, approver = approval.plan_id, approval.plan_revision, approval.approver_id
    age = st.now() - approval.approved_at.ToSeconds()
    if not approval.HasField("approved_at") or not -CLOCK_SKEW <= age <= st.config.approval_max_age:
        return reject(st, plan_id, revision, approver, f"expired: approved_at must be within the last "
                                                       f"{st.config.approval_max_age / 3600:.0f} h; sign a new "
                                                       "approval", cause)
    plan = st.plan(plan_id)
    if plan is None:
        return reject(st, plan_id, revision, approver, f"unknown_plan: no plan has id {plan_id!r}", cause)
    if approval.approval_id in plan.approval_ids or (plan.approved_revision == revision and plan.phase not in OPEN):
        log.info("plan %s: approval %s by %s already applied", plan.name, approval.approval_id, approver)
        return "duplicate: already approved"
    if revision != plan.revision:
        return reject(st, plan_id, revision, approver, f"stale_revision: the approval is for revision {revision}, "
                                                       f"the plan is at revision {plan.revision}", cause)
    if plan.phase is PlanPhase.BLOCKED:
        critical = [c.id for c in st.store.validations[plan_id].concerns if c.category is ConcernCategory.CRITICAL]
        return reject(st, plan_id, revision, approver, f"blocked: critical concern(s) {', '.join(critical)}; "
                                                       "fix the plan or the inventory first", cause)
    if plan.phase is not PlanPhase.VALIDATED or plan.validated_revision != revision:
        return reject(st, plan_id, revision, approver, f"not_validated: the plan is {plan.phase.value}; wait for "
                                                       "its PlanValidated", cause)
    plan = replace(plan, phase=PlanPhase.EXECUTING, approved_revision=revision,
                   approval_ids=remember(plan.approval_ids, approval.approval_id), updated_at=st.now())
    st.put_plan(plan)
    log.info("plan %s revision %d approved by %s", plan.name, revision, approver)
    runs.emit_plan_status(st, plan, cause)
    for vm in st.store.validations[plan_id].vms:
        st.emit(status.queued_status(plan_id, vm.id, vm.name, vm.target_name), plan_id, cause)
    runs.schedule(st, plan_id, cause)
    return ACCEPTED


def _unverified(p: plan_pb2.PlanApproved, fallback_plan_id: str) -> tuple[str, int, str]:
    """Plan id, revision and approver as claimed by an approval that failed verification (for the
    rejection only: a reader must see which approval was refused)."""
    body = plan_pb2.Approval()
    try:
        body.ParseFromString(p.approval)
    except Exception:  # noqa: BLE001 — malformed bytes: report what we have
        return fallback_plan_id, 0, ""
    return body.plan_id or fallback_plan_id, body.plan_revision, body.approver_id


# --- cancel and retry -----------------------------------------------------------------------------

def _new_command(st: PlannerState, plan_id: str, cause: event_pb2.Event) -> PlanRecord | None:
    """The plan, remembering this command's id; None if the command was already applied."""
    plan = st.plan(plan_id)
    if plan is None:
        raise Rejected(f"unknown plan {plan_id!r}")
    if cause.envelope.event_id in plan.command_ids:
        return None
    plan = replace(plan, command_ids=remember(plan.command_ids, cause.envelope.event_id), updated_at=st.now())
    st.put_plan(plan)
    return plan


def on_cancel(st: PlannerState, p: plan_pb2.CancelPlanRequested, cause: event_pb2.Event) -> str:
    plan = _new_command(st, p.plan_id, cause)
    if plan is None:
        return "duplicate"
    if plan.phase in OPEN:  # never approved: nothing runs, the plan itself ends
        plan = replace(plan, phase=PlanPhase.CANCELED, cancel_requested=True)
        st.put_plan(plan)
        runs.emit_plan_status(st, plan, cause)
        st.emit(plan_pb2.PlanCanceled(plan_id=plan.plan_id), plan.plan_id, cause)
        return ACCEPTED
    resolved = st.resolved(plan.plan_id)
    unknown = [v for v in p.vm_ids if v not in resolved.by_id]
    if not p.vm_ids:  # first stop the scheduler, or canceling a running VM would start the next one
        st.put_plan(replace(plan, cancel_requested=True))
    canceled = []
    for vm_id in (v for v in (p.vm_ids or resolved.order) if v in resolved.by_id):
        old = st.vm(plan.plan_id, vm_id)
        rec = old or VmRecord(plan.plan_id, vm_id, resolved.by_id[vm_id].name, resolved.by_id[vm_id].target_name)
        out = saga.cancel(rec, Cancel(p.reason or "canceled"), runs.ctx(st))
        if old is not None and out.record == old:
            continue  # already ended: nothing to undo
        if out.record.phase is Phase.CANCELED:
            canceled.append(vm_id)
        runs.apply(st, old, out, cause)
    st.emit(plan_pb2.PlanCanceled(plan_id=plan.plan_id, vm_ids=canceled), plan.plan_id, cause)
    log.info("plan %s: canceled %d VM(s)", plan.name, len(canceled))
    if unknown:
        raise Rejected(f"plan {plan.name} has no VM(s) {', '.join(unknown)}; the others were canceled")
    return ACCEPTED


def on_retry(st: PlannerState, p: plan_pb2.RetryPlanRequested, cause: event_pb2.Event) -> str:
    plan = _new_command(st, p.plan_id, cause)
    if plan is None:
        return "duplicate"
    if plan.phase in OPEN or plan.plan_id not in st.store.validations:
        raise Rejected(f"plan {plan.name} has not run; approve it instead of retrying")
    ids = list(p.vm_ids) or [v for v in st.resolved(plan.plan_id).order
                             if (r := st.vm(plan.plan_id, v)) is not None and r.phase is Phase.FAILED]
    retried = []
    for vm_id in ids:
        old = st.vm(plan.plan_id, vm_id)
        if old is None or old.phase is not Phase.FAILED:
            continue
        runs.apply(st, old, saga.retry(old), cause, reschedule=False)
        retried.append(vm_id)
    if not retried:
        return "nothing to retry: no failed VM among " + (", ".join(p.vm_ids) or "the plan's VMs")
    plan = st.plan(plan.plan_id)
    assert plan is not None
    plan = replace(scheduler.requeue(plan, retried), phase=PlanPhase.EXECUTING, cancel_requested=False)
    st.put_plan(plan)
    log.info("plan %s: retrying %d VM(s)", plan.name, len(retried))
    runs.emit_plan_status(st, plan, cause)
    runs.schedule(st, plan.plan_id, cause)
    return ACCEPTED
