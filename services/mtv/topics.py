"""The one registry of Kafka topics, their keys and partition counts.

Topic names carry a version suffix; a breaking change to a topic's contract gets a new name
(`.v2`) and both run side by side during a migration. Four names are public contract and
never change: `mtv.plan.approvals.v1`, `mtv.transfer.requests.v1`,
`mtv.transfer.progress.v1` and `mtv.dlq.v1`.

Keys are chosen so that everything about one object lands in one partition and stays in order:
one provider, one (provider, object), one plan, one (plan, VM) or one disk transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from mtv.v1 import event_pb2


class KeyBy(Enum):
    """What a topic's message key identifies."""

    PROVIDER = "provider id"
    PROVIDER_OBJECT = "provider id/object id"
    PLAN = "plan id"
    PLAN_VM = "plan id/vm id"
    TRANSFER = "transfer id (plan id/vm id/disk key)"
    WORKER = "transfer worker name"
    ORIGINAL = "the original message's key"


@dataclass(frozen=True)
class Topic:
    name: str
    key: KeyBy
    partitions: int
    description: str
    compacted: bool = False
    public: bool = False

    def config(self) -> dict[str, str]:
        """Topic-level configuration for creation."""
        if self.compacted:
            # Compacted topics keep the latest value per key; tombstones (null value) delete.
            return {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"}
        return {"retention.ms": str(7 * 24 * 3600 * 1000)}


PROVIDER_EVENTS = Topic("mtv.provider.events.v1", KeyBy.PROVIDER, 3, "provider status, source power results")
PROVIDER_COMMANDS = Topic("mtv.provider.commands.v1", KeyBy.PROVIDER, 3, "source power requests")
INVENTORY_EVENTS = Topic("mtv.inventory.events.v1", KeyBy.PROVIDER_OBJECT, 6, "inventory added/updated/removed")
INVENTORY_STATE = Topic(
    "mtv.inventory.state.v1", KeyBy.PROVIDER_OBJECT, 6, "latest state of each object; tombstone on removal",
    compacted=True,
)
PLAN_COMMANDS = Topic("mtv.plan.commands.v1", KeyBy.PLAN, 6, "create/update/cancel/retry plans")
PLAN_APPROVALS = Topic(
    "mtv.plan.approvals.v1", KeyBy.PLAN, 6, "signed PlanApproved from mtvctl and other systems", public=True
)
PLAN_EVENTS = Topic("mtv.plan.events.v1", KeyBy.PLAN, 6, "validated/blocked/rejected/status/canceled")
VM_STATUS = Topic("mtv.vm.status.v1", KeyBy.PLAN_VM, 6, "per-VM phase pipeline", public=True)
TARGET_REQUESTS = Topic("mtv.target.requests.v1", KeyBy.PLAN_VM, 6, "prepare/convert/cleanup requests")
TARGET_RESULTS = Topic("mtv.target.results.v1", KeyBy.PLAN_VM, 6, "prepared/VM created/failed")
TRANSFER_REQUESTS = Topic(
    "mtv.transfer.requests.v1", KeyBy.TRANSFER, 12, "one message per disk: the scale-out unit", public=True
)
TRANSFER_CANCELS = Topic("mtv.transfer.cancels.v1", KeyBy.TRANSFER, 3, "cancel a disk copy; read by all workers")
TRANSFER_PROGRESS = Topic("mtv.transfer.progress.v1", KeyBy.TRANSFER, 12, "per-disk progress", public=True)
TRANSFER_RESULTS = Topic("mtv.transfer.results.v1", KeyBy.TRANSFER, 12, "completed/failed per disk")
TRANSFER_CHECKPOINTS = Topic(
    "mtv.transfer.checkpoints.v1", KeyBy.TRANSFER, 12, "resume point per disk", compacted=True
)
TRANSFER_WORKERS = Topic(
    "mtv.transfer.workers.v1", KeyBy.WORKER, 3, "what each transfer worker is doing (hand-off, mtvctl status)",
    compacted=True,
)
DLQ = Topic("mtv.dlq.v1", KeyBy.ORIGINAL, 3, "messages that could not be processed, with the reason", public=True)

ALL: tuple[Topic, ...] = (
    PROVIDER_EVENTS, PROVIDER_COMMANDS, INVENTORY_EVENTS, INVENTORY_STATE, PLAN_COMMANDS, PLAN_APPROVALS,
    PLAN_EVENTS, VM_STATUS, TARGET_REQUESTS, TARGET_RESULTS, TRANSFER_REQUESTS, TRANSFER_CANCELS,
    TRANSFER_PROGRESS, TRANSFER_RESULTS, TRANSFER_CHECKPOINTS, TRANSFER_WORKERS, DLQ,
)
BY_NAME: dict[str, Topic] = {t.name: t for t in ALL}


def provider_key(provider_id: str) -> str:
    return provider_id


def object_key(provider_id: str, object_id: str) -> str:
    return f"{provider_id}/{object_id}"


def plan_key(plan_id: str) -> str:
    return plan_id


def vm_key(plan_id: str, vm_id: str) -> str:
    return f"{plan_id}/{vm_id}"


def transfer_id(plan_id: str, vm_id: str, disk_key: int) -> str:
    """The id of one disk's transfer; also its message key."""
    return f"{plan_id}/{vm_id}/{disk_key}"


# Where each payload is published by default, and how its key is computed from the payload.
# Payloads with no entry (none today) must be published with an explicit topic and key.
_Route = tuple[Topic, Callable[[object], str]]
ROUTES: dict[str, _Route] = {
    "provider_status_changed": (PROVIDER_EVENTS, lambda p: p.provider.id),
    "source_power_requested": (PROVIDER_COMMANDS, lambda p: p.provider_id),
    "source_power_changed": (PROVIDER_EVENTS, lambda p: p.provider_id),
    "inventory_changed": (INVENTORY_EVENTS, lambda p: object_key(p.provider_id, p.object_id)),
    "inventory_synced": (INVENTORY_EVENTS, lambda p: object_key(p.provider_id, "")),
    "plan_created": (PLAN_COMMANDS, lambda p: p.plan_id),
    "cancel_plan_requested": (PLAN_COMMANDS, lambda p: p.plan_id),
    "retry_plan_requested": (PLAN_COMMANDS, lambda p: p.plan_id),
    "plan_approved": (PLAN_APPROVALS, lambda p: ""),  # key set by the signer: the plan id
    "plan_validated": (PLAN_EVENTS, lambda p: p.plan_id),
    "plan_rejected": (PLAN_EVENTS, lambda p: p.plan_id),
    "plan_status_changed": (PLAN_EVENTS, lambda p: p.plan_id),
    "plan_canceled": (PLAN_EVENTS, lambda p: p.plan_id),
    "vm_migration_status": (VM_STATUS, lambda p: vm_key(p.plan_id, p.vm_id)),
    "target_prepare_requested": (TARGET_REQUESTS, lambda p: vm_key(p.plan_id, p.vm.id)),
    "convert_requested": (TARGET_REQUESTS, lambda p: vm_key(p.plan_id, p.vm.id)),
    "target_cleanup_requested": (TARGET_REQUESTS, lambda p: vm_key(p.plan_id, p.vm_id)),
    "target_prepared": (TARGET_RESULTS, lambda p: vm_key(p.plan_id, p.vm_id)),
    "vm_created": (TARGET_RESULTS, lambda p: vm_key(p.plan_id, p.vm_id)),
    "target_failed": (TARGET_RESULTS, lambda p: vm_key(p.plan_id, p.vm_id)),
    "disk_transfer_requested": (TRANSFER_REQUESTS, lambda p: p.transfer_id),
    "disk_transfer_cancel_requested": (TRANSFER_CANCELS, lambda p: p.transfer_id),
    "disk_transfer_progress": (TRANSFER_PROGRESS, lambda p: p.transfer_id),
    "disk_transfer_completed": (TRANSFER_RESULTS, lambda p: p.transfer_id),
    "disk_transfer_failed": (TRANSFER_RESULTS, lambda p: p.transfer_id),
    "transfer_checkpoint": (TRANSFER_CHECKPOINTS, lambda p: p.transfer_id),
    "transfer_worker_status": (TRANSFER_WORKERS, lambda p: p.worker),
}


def route(event: event_pb2.Event) -> tuple[Topic, str]:
    """The default topic and key of an event, from its payload."""
    field = event.WhichOneof("payload")
    if field is None or field not in ROUTES:
        raise KeyError(f"no route for payload {field!r}; publish it with an explicit topic")
    topic, key_of = ROUTES[field]
    if field == "plan_approved":
        return topic, event.envelope.correlation_id
    return topic, key_of(getattr(event, field))
