"""Everything the planner holds: the durable tables, the inventory, and indexes derived from them.

`Store` is six mappings. In the service they are changelog-backed tables (tables.py: a restarted planner
gets them back); in unit tests plain dicts. What is derived (counts per plan, VMs waiting on a
deadline, live transfer bytes, what must be re-published) is rebuilt by `rebuild()` after a restart,
never persisted twice.

Outputs are collected in `outbox` and published by the caller after the state was written, so a
handler is synchronous end to end: no other handler can interleave between reading and writing.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

from google.protobuf.message import Message

from mtv import events, topics
from mtv.approvals import KeyLookup
from mtv.planner.effects import CdiUpload
from mtv.planner.inventory import Inventory
from mtv.planner.records import DiskPhase, Phase, PlanPhase, PlanRecord, SpecRecord, VmRecord, vm_key
from mtv.planner.status import Tally
from mtv.planner.validation import ResolvedVm, Validation
from mtv.planner.vm_events import Timeouts
from mtv.runtime import metrics
from mtv.v1 import event_pb2

log = logging.getLogger(__name__)
SERVICE = "planner"

_POWER_PHASES = frozenset({Phase.POWER_OFF_SOURCE, Phase.WAIT_FOR_POWER_OFF})


@dataclass
class Store:
    plans: MutableMapping[str, PlanRecord]
    specs: MutableMapping[str, SpecRecord]
    validations: MutableMapping[str, Validation]
    vms: MutableMapping[str, VmRecord]
    names: MutableMapping[str, str]  # plan name -> plan id
    providers: MutableMapping[str, str]  # provider id -> name

    @classmethod
    def in_memory(cls) -> Store:
        return cls({}, {}, {}, {}, {}, {})


@dataclass(frozen=True)
class Config:
    timeouts: Timeouts = Timeouts()
    cdi: CdiUpload = CdiUpload()
    revalidate_debounce: float = 0.5  # inventory changes arrive in bursts: validate once after the burst
    status_interval: float = 1.0  # progress-only status updates, at most this often
    resend_grace: float = 10.0  # after a restart: let redelivered answers arrive before re-sending requests
    # A signed approval is valid this long: an old one replayed (or re-read by a planner that lost its
    # state) must not start a migration again.
    approval_max_age: float = 24 * 3600.0


@dataclass(frozen=True)
class Resolved:
    order: tuple[str, ...]
    by_id: dict[str, ResolvedVm]


@dataclass
class Outgoing:
    event: event_pb2.Event
    topic: topics.Topic
    key: str


@dataclass
class PlannerState:
    store: Store
    inventory: Inventory
    keys: KeyLookup
    config: Config = Config()
    clock: Callable[[], float] = time.time
    inventory_ready: bool = False
    outbox: list[Outgoing] = field(default_factory=list)
    # -- derived, rebuilt after a restart --
    tallies: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    power_waiting: set[str] = field(default_factory=set)  # VM keys in a power phase (ticks check them)
    live: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))  # plan -> transfer -> bytes
    dirty_vms: set[str] = field(default_factory=set)
    dirty_plans: set[str] = field(default_factory=set)
    unvalidated: dict[str, float] = field(default_factory=dict)  # plan id -> when its inputs last changed
    to_schedule: set[str] = field(default_factory=set)
    resend: set[str] = field(default_factory=set)  # VM keys whose open requests are re-sent after the grace
    resend_at: float = 0.0
    last_status_flush: float = 0.0
    _resolved: dict[str, tuple[Validation, Resolved]] = field(default_factory=dict)

    # -- reading --------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock()

    def plan(self, plan_id: str) -> PlanRecord | None:
        return self.store.plans.get(plan_id)

    def spec(self, plan_id: str) -> SpecRecord:
        return self.store.specs[plan_id]

    def vm(self, plan_id: str, vm_id: str) -> VmRecord | None:
        return self.store.vms.get(vm_key(plan_id, vm_id))

    def resolved(self, plan_id: str) -> Resolved:
        """The validated VMs of a plan, in order and by id (cached until the validation is replaced)."""
        validation = self.store.validations[plan_id]
        cached = self._resolved.get(plan_id)
        if cached is None or cached[0] is not validation:
            cached = (validation, Resolved(tuple(v.id for v in validation.vms), {v.id: v for v in validation.vms}))
            self._resolved[plan_id] = cached
        return cached[1]

    def plan_by_name(self, name_or_id: str) -> PlanRecord | None:
        return self.plan(self.store.names.get(name_or_id, name_or_id))

    # -- writing --------------------------------------------------------------------------------

    def put_plan(self, plan: PlanRecord) -> None:
        old = self.store.plans.get(plan.plan_id)
        # The one place a plan's slots change, so the gauge follows every start and release.
        metrics.VMS_IN_FLIGHT.inc(len(plan.in_flight) - (len(old.in_flight) if old else 0))
        self.store.plans[plan.plan_id] = plan

    def put_vm(self, old: VmRecord | None, new: VmRecord) -> None:
        """Store a VM record and keep the derived indexes in step with it."""
        self.store.vms[new.key] = new
        self.tallies[new.plan_id].update(old, new)
        if new.phase in _POWER_PHASES:
            self.power_waiting.add(new.key)
        else:
            self.power_waiting.discard(new.key)
        live = self.live.get(new.plan_id)
        if live:  # bytes of disks no longer copying are counted by the tally (completed) or not at all
            for d in new.disks:
                if d.phase is not DiskPhase.RUNNING:
                    live.pop(topics.transfer_id(new.plan_id, new.vm_id, d.key), None)

    def emit(self, payload: Message, plan_id: str, cause: event_pb2.Event | None = None) -> None:
        event = events.make(payload, source=SERVICE, correlation_id=plan_id,
                            causation_id=cause.envelope.event_id if cause else "")
        topic, key = topics.route(event)
        self.outbox.append(Outgoing(event, topic, key))

    def take_outbox(self) -> list[Outgoing]:
        out, self.outbox = self.outbox, []
        return out

    # -- after a restart ------------------------------------------------------------------------

    def rebuild(self) -> None:
        """Derive the in-memory indexes from the recovered tables; one pass over the VM records."""
        self.tallies.clear()
        self.power_waiting.clear()
        self.live.clear()
        active: set[str] = set()
        for key, rec in self.store.vms.items():
            self.tallies[rec.plan_id].update(None, rec)
            if rec.phase in _POWER_PHASES:
                self.power_waiting.add(key)
            if not rec.phase.terminal and rec.phase is not Phase.QUEUED:
                active.add(key)
        for plan in self.store.plans.values():
            if plan.phase in (PlanPhase.CREATED, PlanPhase.VALIDATED, PlanPhase.BLOCKED):
                self.unvalidated[plan.plan_id] = 0.0
            elif plan.phase is PlanPhase.EXECUTING:
                self.to_schedule.add(plan.plan_id)
        for provider_id, name in self.store.providers.items():
            self.inventory.set_provider(provider_id, name)
        self.resend = active
        self.resend_at = self.now() + self.config.resend_grace
        log.info("state recovered: %d plan(s), %d VM record(s), %d VM(s) in flight",
                 len(self.store.plans), len(self.store.vms), len(active))
