"""The planner's durable state: plain frozen dataclasses, stored in changelog-backed tables (tables.py).

    plans        plan id  -> PlanRecord   lifecycle, approvals seen, the scheduler's cursor and slots
    specs        plan id  -> SpecRecord   the current revision of the spec (written on create only)
    validations  plan id  -> Validation   last result: concerns, resolved VMs and their target names
    vms          "plan/vm" -> VmRecord    one VM's saga: phase, power, disks, error
    names        plan name -> plan id
    providers    provider id -> name      from ProviderStatusChanged (names in plans resolve through it)

Big, rarely changing parts (spec, validation) live apart from the hot run state, so a VM finishing
rewrites a small record, not the 1,000-VM spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mtv.model import Concern, PlanSpec, PowerState, Vm
from mtv.v1 import migration_pb2, plan_pb2


class Phase(Enum):
    """Where one VM is; the order of the cold itinerary (planner/itinerary.py)."""

    QUEUED = "queued"
    STORE_POWER_STATE = "store_power_state"
    POWER_OFF_SOURCE = "power_off_source"
    WAIT_FOR_POWER_OFF = "wait_for_power_off"
    PREPARE_TARGET = "prepare_target"
    TRANSFER_DISKS = "transfer_disks"
    CONVERT = "convert"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED, Phase.CANCELED)

    @property
    def pb(self) -> int:
        return int(migration_pb2.VmPhase.Value(f"VM_PHASE_{self.name}"))


class DiskPhase(Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


@dataclass(frozen=True)
class DiskState:
    """One disk of a VM: where it goes (from TargetPrepared) and how its copy went."""

    key: int
    file: str  # "[LocalDS_0] vm1/vm1.vmdk"
    size: int
    sink_uri: str = ""
    volume_name: str = ""
    phase: DiskPhase = DiskPhase.PENDING
    attempt: int = 0  # DiskTransferRequested.attempt of the latest request
    sha256: str = ""
    error: str = ""


@dataclass(frozen=True)
class VmRecord:
    plan_id: str
    vm_id: str
    name: str
    target_name: str
    phase: Phase = Phase.QUEUED
    attempt: int = 0  # 1 on the first run, +1 per retry
    vm: Vm | None = None  # inventory snapshot taken at start: what is migrated
    provider_id: str = ""
    restore_power: PowerState = PowerState.UNKNOWN  # the source's power state before we touched it
    source_off: bool = False  # we saw the source powered off
    power_request: str = ""  # the power action awaiting an answer ("" = none)
    deadline: float = 0.0  # epoch seconds when the current wait gives up (0 = no deadline)
    disks: tuple[DiskState, ...] = ()
    error: str = ""
    stopped_phase: Phase | None = None  # where it failed or was canceled (cancel and retry need it)
    location: str = ""  # VmCreated.location
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def key(self) -> str:
        return vm_key(self.plan_id, self.vm_id)

    def disk(self, key: int) -> DiskState | None:
        return next((d for d in self.disks if d.key == key), None)


def vm_key(plan_id: str, vm_id: str) -> str:
    return f"{plan_id}/{vm_id}"


class PlanPhase(Enum):
    CREATED = "created"
    VALIDATED = "validated"
    BLOCKED = "blocked"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def pb(self) -> int:
        return int(plan_pb2.PlanPhase.Value(f"PLAN_PHASE_{self.name}"))

    @property
    def running(self) -> bool:
        return self is PlanPhase.EXECUTING


# Approvals and commands remembered per plan for deduplication; older ids fall out (a redelivery
# comes within seconds, not after 64 newer commands of the same plan).
REMEMBERED_IDS = 64


@dataclass(frozen=True)
class PlanRecord:
    plan_id: str
    name: str
    revision: int
    phase: PlanPhase = PlanPhase.CREATED
    provider_id: str = ""
    validated_revision: int = 0
    approved_revision: int = 0
    approval_ids: tuple[str, ...] = ()
    command_ids: tuple[str, ...] = ()
    # The scheduler: VMs of the validation's list before `cursor` were started; `requeued` are
    # retries waiting for a slot; `in_flight` hold the slots (at most the spec's maxInFlight).
    cursor: int = 0
    requeued: tuple[str, ...] = ()
    in_flight: tuple[str, ...] = ()
    cancel_requested: bool = False  # the whole plan was canceled
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class SpecRecord:
    plan_id: str
    revision: int
    spec: PlanSpec
    created_at: float = 0.0


def remember(ids: tuple[str, ...], new: str) -> tuple[str, ...]:
    return (*ids, new)[-REMEMBERED_IDS:]


__all__ = ["Concern", "DiskPhase", "DiskState", "Phase", "PlanPhase", "PlanRecord", "SpecRecord", "VmRecord",
           "remember", "vm_key"]
