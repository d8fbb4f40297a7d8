"""Durability: SIGKILL the planner mid-plan, start it again, and the plan completes with no step lost and
no finished disk requested twice (the saga state comes back from the table changelogs)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from fixtures.planner_data import KEY, keys_file, plan_spec, publish_inventory, vm
from fixtures.planner_kafka import PlannerProcess, Responder
from mtv import approvals
from mtv import model as m
from mtv.bus import Publisher, admin
from mtv.v1 import migration_pb2, plan_pb2, planner_service_pb2


def _recorded_done(responder: Responder, plan_id: str, transfer_ids: set[str]) -> bool:
    """The planner published statuses showing these disks completed (so it applied their completion)."""
    done = {t.disk_id for s in responder.of(plan_id, "vm_migration_status") for step in s.pipeline
            for t in step.tasks if t.phase == migration_pb2.STEP_PHASE_COMPLETED}
    return transfer_ids <= done


@pytest.mark.kafka
def test_a_killed_planner_resumes_and_never_requests_a_finished_disk_again(kafka_bootstrap: str,
                                                                           tmp_path: Path) -> None:
    admin.ensure_topics(kafka_bootstrap)
    vms = [vm(i) for i in range(6)]  # two disks each; three migrate at once
    provider_id, name = str(uuid.uuid4()), f"vc-{uuid.uuid4().hex[:6]}"
    publisher = Publisher(kafka_bootstrap, "planner-restart-test")
    publish_inventory(publisher, provider_id, name, vms)
    publisher.flush()
    planner = PlannerProcess(kafka_bootstrap, keys_file(tmp_path, {"ci": KEY}), tmp_path / "planner.log")
    responder = Responder(kafka_bootstrap, tmp_path / "target")
    responder.hold = lambda r: True  # the test decides when each disk finishes
    responder.start()
    planner.start()
    try:
        spec = plan_spec(f"restart-{uuid.uuid4().hex[:6]}", name, [v.id for v in vms], max_in_flight=3)
        created = planner.stub().CreatePlan(planner_service_pb2.CreatePlanRequest(spec=m.plan_to_proto(spec)),
                                            timeout=60)
        plan_id = created.plan_id
        responder.plans.add(plan_id)
        responder.wait(lambda: responder.of(plan_id, "plan_validated"), 60, "validation")
        approvals.publish_signed_approval(kafka_bootstrap, plan_id, created.revision, "ci", KEY)
        responder.wait(lambda: len(responder.held) == 6, 90, "the disks of the first three VMs requested")

        finished = set(sorted(responder.held)[:3])  # VM 1 entirely, and one disk of VM 2
        responder.release(finished)
        responder.wait(lambda: _recorded_done(responder, plan_id, finished), 60, "the planner recording them")
        time.sleep(1.5)  # past the commit interval: the kill tests recovery from the changelog, not redelivery
        planner.kill()

        responder.hold = lambda r: False
        responder.release()  # the workers finish what they had while the planner is down
        planner.start()
        responder.wait(lambda: responder.plan_phase(plan_id) == plan_pb2.PLAN_PHASE_SUCCEEDED, 180,
                       f"the plan to finish after the restart; planner log:\n{planner.tail()}")
        # Statuses and plan events are different topics: the last VM status may come a moment later.
        responder.wait(lambda: all(responder.vm_phase(plan_id, v.id) == migration_pb2.VM_PHASE_COMPLETED
                                   for v in vms), 30, "every VM completed")
    finally:
        planner.stop()
        responder.stop()

    requests = Counter(r.transfer_id for r in responder.of(plan_id, "disk_transfer_requested"))
    assert len(requests) == 12
    for transfer_id in finished:
        assert requests[transfer_id] == 1, f"{transfer_id} was finished before the kill but requested again"
    # Requests still unanswered at the kill may be sent once more (receivers are idempotent), never more.
    assert max(requests.values()) <= 2
    assert [responder.vm_phase(plan_id, v.id) for v in vms] == [migration_pb2.VM_PHASE_COMPLETED] * 6
    final = responder.of(plan_id, "plan_status_changed")[-1]
    assert (final.vms_succeeded, final.vms_failed, final.bytes.done) == (6, 0, final.bytes.total)
    conversions = Counter(c.vm.id for c in responder.of(plan_id, "convert_requested"))
    assert set(conversions) == {v.id for v in vms}
