"""Which VMs of a plan start now: at most maxInFlight at once, the rest wait in plan order.

Forklift started one VM per 3-second reconcile until PR #1263 (200 VMs took ~10 min just to start)
and kept slots taken by finished disks. Here every free slot is filled in one pass, the moment one
frees, and the cost is O(VMs started + VMs skipped): a cursor walks the plan's VM list once over the
whole run, so scheduling 1,000 VMs is linear.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from mtv.planner.records import PlanRecord


def fill(plan: PlanRecord, order: Sequence[str], limit: int,
         startable: Callable[[str], bool]) -> tuple[PlanRecord, list[str]]:
    """Take VMs for the free slots: retries first, then the plan's list from the cursor.

    `startable(vm_id)` is False for VMs that must not start (canceled while queued); they are
    dropped from the queue, not retried later.
    """
    in_flight = list(plan.in_flight)
    busy = set(in_flight)
    requeued = list(plan.requeued)
    cursor = plan.cursor
    started: list[str] = []
    taken = 0
    while len(in_flight) < limit:
        if taken < len(requeued):
            vm_id = requeued[taken]
            taken += 1
        elif cursor < len(order):
            vm_id = order[cursor]
            cursor += 1
        else:
            break
        if vm_id in busy or not startable(vm_id):
            continue
        busy.add(vm_id)
        in_flight.append(vm_id)
        started.append(vm_id)
    updated = replace(plan, in_flight=tuple(in_flight), requeued=tuple(requeued[taken:]), cursor=cursor)
    return updated, started


def release(plan: PlanRecord, vm_id: str) -> PlanRecord:
    """Give back the slot of `vm_id` (no-op when it holds none)."""
    if vm_id not in plan.in_flight:
        return plan
    return replace(plan, in_flight=tuple(v for v in plan.in_flight if v != vm_id))


def requeue(plan: PlanRecord, vm_ids: Sequence[str]) -> PlanRecord:
    """Queue retried VMs ahead of the not-yet-started rest."""
    new = [v for v in vm_ids if v not in plan.requeued]
    return replace(plan, requeued=(*plan.requeued, *new)) if new else plan


def waiting(plan: PlanRecord, total: int) -> int:
    """VMs not started yet (some may turn out canceled when their turn comes)."""
    return max(total - plan.cursor, 0) + len(plan.requeued)
