"""The planner's event handlers: `mtv.v1` events in, state changes and events (in the outbox) out.

Kafka-free and synchronous: the Kafka edge (app.py) calls `handle` for each consumed event and then
publishes the outbox; the unit tests call it directly with an in-memory store.

    payload                   from topic                 goes to
    plan_created              mtv.plan.commands.v1       plans.on_created
    cancel_plan_requested     mtv.plan.commands.v1       plans.on_cancel
    retry_plan_requested      mtv.plan.commands.v1       plans.on_retry
    plan_approved             mtv.plan.approvals.v1      plans.on_approved (signature checked first)
    provider_status_changed   mtv.provider.events.v1     plans.on_provider_status
    source_power_changed      mtv.provider.events.v1     the VM's saga (PowerResult)
    target_prepared / vm_created / target_failed         the VM's saga (Prepared / Created / TargetError)
    disk_transfer_completed / disk_transfer_failed       the VM's saga (DiskDone / DiskFailed)
    disk_transfer_progress    mtv.transfer.progress.v1   live bytes only (`on_progress`)
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mtv.model import PowerState, concern_to_proto, plan_to_proto
from mtv.planner import plans, runs, status
from mtv.planner.effects import POWER_FROM_PB
from mtv.planner.errors import PlanNotFound, Rejected
from mtv.planner.records import Phase, PlanRecord
from mtv.planner.state import PlannerState
from mtv.planner.vm_events import Created, DiskDone, DiskFailed, PowerResult, Prepared, PreparedDisk, TargetError
from mtv.v1 import common_pb2, event_pb2, inventory_pb2, planner_service_pb2

log = logging.getLogger(__name__)

_POWER = {common_pb2.POWER_STATE_ON: PowerState.ON, common_pb2.POWER_STATE_OFF: PowerState.OFF,
          common_pb2.POWER_STATE_SUSPENDED: PowerState.SUSPENDED}
IGNORED = "ignored"


def disk_of(transfer_id: str) -> tuple[str, str, int]:
    """(plan id, vm id, disk key) of a transfer id "<plan>/<vm>/<disk key>"."""
    parts = transfer_id.rsplit("/", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        raise Rejected(f"transfer id {transfer_id!r} is not <plan id>/<vm id>/<disk key>")
    return parts[0], parts[1], int(parts[2])


class Planner:
    """One instance per process; owns the state and dispatches events to the lifecycle and the sagas."""

    def __init__(self, state: PlannerState) -> None:
        self.st = state
        self._handlers: dict[str, Callable[[event_pb2.Event, str], str]] = {
            "plan_created": lambda e, k: plans.on_created(self.st, e.plan_created, e),
            "plan_approved": lambda e, k: plans.on_approved(self.st, e.plan_approved, e, k),
            "cancel_plan_requested": lambda e, k: plans.on_cancel(self.st, e.cancel_plan_requested, e),
            "retry_plan_requested": lambda e, k: plans.on_retry(self.st, e.retry_plan_requested, e),
            "provider_status_changed": lambda e, k: plans.on_provider_status(self.st, e.provider_status_changed),
            "source_power_changed": self._power,
            "target_prepared": self._prepared,
            "target_failed": self._target_failed,
            "vm_created": self._created,
            "disk_transfer_completed": self._disk_done,
            "disk_transfer_failed": self._disk_failed,
        }

    @property
    def payloads(self) -> frozenset[str]:
        return frozenset(self._handlers) | {"disk_transfer_progress"}

    def handle(self, event: event_pb2.Event, key: str = "") -> str:
        """Apply one event; return the verdict ("accepted", a rejection reason, "duplicate: ..."). Raises
        Rejected for events about plans, VMs or disks the planner does not know (dead-letter them)."""
        field = event.WhichOneof("payload") or ""
        if field == "disk_transfer_progress":
            self.on_progress(event)
            return IGNORED
        handler = self._handlers.get(field)
        if handler is None:
            raise Rejected(f"the planner does not handle {field or 'an empty payload'}")
        return handler(event, key)

    # -- VM answers --------------------------------------------------------------------------------

    def _power(self, e: event_pb2.Event, key: str) -> str:
        p = e.source_power_changed
        if not p.plan_id:
            return IGNORED  # someone else's power request (mtvctl, another tool): not part of a saga
        action = POWER_FROM_PB.get(p.action)
        if action is None:
            raise Rejected(f"unknown power action {p.action}")
        runs.vm_input(self.st, p.plan_id, p.vm_id,
                      PowerResult(action, _POWER.get(p.power_state, PowerState.UNKNOWN), p.error), e)
        return plans.ACCEPTED

    def _prepared(self, e: event_pb2.Event, key: str) -> str:
        p = e.target_prepared
        disks = tuple(PreparedDisk(d.disk_key, d.sink_uri, d.volume_name, d.size_bytes) for d in p.disks)
        runs.vm_input(self.st, p.plan_id, p.vm_id, Prepared(disks), e)
        return plans.ACCEPTED

    def _target_failed(self, e: event_pb2.Event, key: str) -> str:
        p = e.target_failed
        reason = f"{p.field}: {p.reason}" if p.field else p.reason
        if p.step == "cleanup":  # after a cancel: the VM already ended, the failure is only reported
            log.warning("cleanup of VM %s of plan %s failed: %s", p.vm_id, p.plan_id, reason)
            return IGNORED
        runs.vm_input(self.st, p.plan_id, p.vm_id, TargetError(p.step or "target", reason), e)
        return plans.ACCEPTED

    def _created(self, e: event_pb2.Event, key: str) -> str:
        p = e.vm_created
        runs.vm_input(self.st, p.plan_id, p.vm_id, Created(p.namespace, p.name, p.location), e)
        return plans.ACCEPTED

    def _disk_done(self, e: event_pb2.Event, key: str) -> str:
        p = e.disk_transfer_completed
        plan_id, vm_id, disk = disk_of(p.transfer_id)
        runs.vm_input(self.st, p.plan_id or plan_id, p.vm_id or vm_id, DiskDone(disk, p.sha256), e)
        return plans.ACCEPTED

    def _disk_failed(self, e: event_pb2.Event, key: str) -> str:
        p = e.disk_transfer_failed
        plan_id, vm_id, disk = disk_of(p.transfer_id)
        reason = f"{p.reason} ({p.code})" if p.code else p.reason
        runs.vm_input(self.st, p.plan_id or plan_id, p.vm_id or vm_id, DiskFailed(disk, reason), e)
        return plans.ACCEPTED

    def on_progress(self, e: event_pb2.Event) -> None:
        """Live bytes of a copying disk; published with the next throttled status. Progress of
        transfers the planner does not run (other planners, finished disks) is ignored: it is public."""
        p = e.disk_transfer_progress
        try:
            plan_id, vm_id, _ = disk_of(p.transfer_id)
        except Rejected:
            return
        rec = self.st.vm(plan_id, vm_id)
        if rec is None or rec.phase is not Phase.TRANSFER_DISKS:
            return
        self.st.live[plan_id][p.transfer_id] = p.bytes_done
        self.st.dirty_vms.add(rec.key)
        self.st.dirty_plans.add(plan_id)

    # -- inventory and time ------------------------------------------------------------------------

    def on_inventory(self, key: str, change: inventory_pb2.InventoryChanged | None) -> None:
        provider_id = self.st.inventory.apply(key, change)
        if self.st.inventory_ready:
            plans.inventory_changed(self.st, provider_id)

    def inventory_loaded(self) -> None:
        """The state topic was read up to its end once: validation and scheduling may trust it now."""
        if not self.st.inventory_ready:
            self.st.inventory_ready = True
            log.info("inventory loaded: %s", self.st.inventory.counts())

    def tick(self) -> None:
        runs.tick(self.st)
        plans.revalidate_due(self.st)
        runs.flush_statuses(self.st)

    def recovered(self) -> None:
        self.st.rebuild()

    # -- queries (gRPC) ----------------------------------------------------------------------------

    def find(self, name_or_id: str) -> PlanRecord:
        plan = self.st.plan_by_name(name_or_id)
        if plan is None:
            raise PlanNotFound(name_or_id)
        return plan

    def view(self, plan: PlanRecord, with_vms: bool = True) -> planner_service_pb2.PlanView:
        st = self.st
        view = planner_service_pb2.PlanView(plan_id=plan.plan_id, revision=plan.revision,
                                            spec=plan_to_proto(st.spec(plan.plan_id).spec), phase=plan.phase.pb)
        validation = st.store.validations.get(plan.plan_id)
        if validation is None:
            return view
        view.concerns.extend(concern_to_proto(c) for c in validation.concerns)
        if with_vms:
            live = st.live.get(plan.plan_id)
            for v in validation.vms:
                rec = st.vm(plan.plan_id, v.id)
                view.vms.append(status.vm_status(rec, live) if rec else
                                status.queued_status(plan.plan_id, v.id, v.name, v.target_name))
        return view

    def views(self) -> list[planner_service_pb2.PlanView]:
        return [self.view(p, with_vms=False) for p in sorted(self.st.store.plans.values(), key=lambda p: p.name)]
