"""Signed approvals: the public helper (sign/verify) and every reason the planner refuses one.

A refused approval publishes PlanRejected with the reason and starts nothing: no power request, no
target preparation, no transfer.
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fixtures.planner_data import KEY, OTHER_KEY, keys_file, plan_spec, vm
from fixtures.planner_harness import Harness
from mtv import approvals, events
from mtv.bus import codec
from mtv.planner.app import salvage_approval
from mtv.planner.records import PlanPhase
from mtv.planner.settings import ApproverKeys, read_keys
from mtv.v1 import plan_pb2

STARTS = ("source_power_requested", "target_prepare_requested", "disk_transfer_requested")


def test_sign_then_verify_returns_the_approval() -> None:
    approval = approvals.new_approval("plan-1", 3, "ci", comment="CHG-42")
    signed = approvals.sign(approval, KEY)
    assert signed.approval == approval.SerializeToString(deterministic=True)
    assert approvals.verify(signed, {"ci": KEY}) == approval
    assert approvals.verify(signed, lambda a: KEY if a == "ci" else None) == approval


@pytest.mark.parametrize(("mutate", "code"), [
    (lambda s: plan_pb2.PlanApproved(approval=s.approval), approvals.UNSIGNED),
    (lambda s: plan_pb2.PlanApproved(approval=b"\xff\xff", signature=s.signature), approvals.MALFORMED),
    (lambda s: plan_pb2.PlanApproved(approval=s.approval + b"\x28\x01", signature=s.signature),
     approvals.BAD_SIGNATURE),
    (lambda s: plan_pb2.PlanApproved(approval=s.approval, signature=bytes(32)), approvals.BAD_SIGNATURE),
])
def test_verify_refuses_tampering(mutate: object, code: str) -> None:
    signed = approvals.sign(approvals.new_approval("plan-1", 1, "ci"), KEY)
    with pytest.raises(approvals.ApprovalError) as err:
        approvals.verify(mutate(signed), {"ci": KEY})  # type: ignore[operator]
    assert err.value.code == code


def test_verify_refuses_unknown_approver_and_wrong_key() -> None:
    signed = approvals.sign(approvals.new_approval("plan-1", 1, "ci"), OTHER_KEY)
    with pytest.raises(approvals.ApprovalError, match="unknown_approver"):
        approvals.verify(signed, {"someone-else": KEY})
    with pytest.raises(approvals.ApprovalError, match="bad_signature"):
        approvals.verify(signed, {"ci": KEY})


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        approvals.sign(approvals.new_approval("p", 1, "ci"), b"short")


def _planned(blocked: bool = False) -> tuple[Harness, str]:
    vms = [vm(0, network="network-2" if blocked else "network-1"), vm(1)]
    h = Harness(vms)
    return h, h.create(plan_spec("p", "vcenter-1", [v.id for v in vms]))


def _rejections(h: Harness) -> list[str]:
    return [r.reason for r in h.of("plan_rejected")]


def _nothing_started(h: Harness) -> bool:
    return not any(h.of(kind) for kind in STARTS)


@pytest.mark.parametrize(("approve", "reason"), [
    (lambda h, p: h.send(plan_pb2.PlanApproved(approval=approvals.new_approval(p, 1, "ci").SerializeToString()),
                         key=p), "unsigned:"),
    (lambda h, p: h.approve(p, key=OTHER_KEY), "bad_signature:"),
    (lambda h, p: h.approve(p, approver="stranger"), "unknown_approver:"),
    (lambda h, p: h.approve("no-such-plan", revision=1), "unknown_plan:"),
    (lambda h, p: h.approve(p, revision=2), "stale_revision: the approval is for revision 2, the plan is at "
                                            "revision 1"),
])
def test_refused_approvals_publish_the_reason_and_start_nothing(approve: object, reason: str) -> None:
    h, plan_id = _planned()
    verdict = approve(h, plan_id)  # type: ignore[operator]
    assert verdict.startswith(reason)
    assert _rejections(h)[0].startswith(reason)
    assert _nothing_started(h)
    assert h.state.plan(plan_id).phase.value == "validated"  # type: ignore[union-attr]


def test_old_future_or_undated_approvals_have_expired() -> None:
    h, plan_id = _planned()
    old = approvals.new_approval(plan_id, 1, "ci", approved_at=datetime.now(UTC) - timedelta(days=2))
    future = approvals.new_approval(plan_id, 1, "ci", approved_at=datetime.now(UTC) + timedelta(hours=1))
    undated = approvals.new_approval(plan_id, 1, "ci")
    undated.ClearField("approved_at")
    for approval in (old, future, undated):
        assert h.send(approvals.sign(approval, KEY), key=plan_id).startswith("expired: ")
    assert _nothing_started(h)


def test_a_blocked_plan_cannot_be_approved() -> None:
    h, plan_id = _planned(blocked=True)
    assert h.approve(plan_id).startswith("blocked: critical concern(s) plan.network.unmapped")
    assert _nothing_started(h)


def test_an_older_revision_is_stale_after_the_plan_changed() -> None:
    h, plan_id = _planned()
    spec = plan_spec("p", "vcenter-1", ["vm-1000"])
    assert h.create(spec) == plan_id and h.state.plan(plan_id).revision == 2  # type: ignore[union-attr]
    assert h.approve(plan_id, revision=1).startswith("stale_revision:")
    assert _nothing_started(h)
    assert h.approve(plan_id) == "accepted"


def test_a_not_yet_validated_plan_is_refused() -> None:
    h, plan_id = _planned()
    # As right after PlanCreated while the inventory is still loading.
    h.state.put_plan(replace(h.state.plan(plan_id), phase=PlanPhase.CREATED, validated_revision=0))
    assert h.approve(plan_id).startswith("not_validated:")
    assert _nothing_started(h)


def test_duplicate_approvals_are_idempotent() -> None:
    h, plan_id = _planned()
    assert h.approve(plan_id, approval_id="a-1") == "accepted"
    started = len(h.of("source_power_requested"))
    assert started == 2
    assert h.approve(plan_id, approval_id="a-1").startswith("duplicate")  # redelivered
    assert h.approve(plan_id, approval_id="a-2").startswith("duplicate")  # a second approver, same revision
    assert len(h.of("source_power_requested")) == started and not _rejections(h)


def test_an_approval_refused_by_the_codec_for_its_missing_signature_is_answered_not_dropped() -> None:
    unsigned = plan_pb2.PlanApproved(approval=approvals.new_approval("p", 1, "ci").SerializeToString())
    raw = events.make(unsigned, source="x", correlation_id="p").SerializeToString()
    with pytest.raises(codec.CodecError, match="plan_approved.signature"):
        codec.decode(raw)
    salvaged = salvage_approval(raw)
    assert salvaged is not None and salvaged.plan_approved == unsigned
    assert salvage_approval(b"\x08\x96\x01 not an event") is None
    other = events.make(plan_pb2.PlanRejected(plan_id="p"), source="x").SerializeToString()
    assert salvage_approval(other) is None  # only approvals are salvaged: the rest is dead-lettered


def test_keys_file_is_read_checked_and_never_shows_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = keys_file(tmp_path, {"ci": KEY, "change-mgmt": OTHER_KEY})
    keys = ApproverKeys(path)
    assert keys("ci") == KEY and keys("nobody") is None
    assert base64.b64encode(KEY).decode() not in repr(keys) and "ci" in repr(keys)
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        read_keys(path)
    os.chmod(path, 0o600)
    path.write_text("ci: not-base64!!\n")
    os.chmod(path, 0o600)
    with pytest.raises(ValueError, match="'ci' is not base64"):
        read_keys(path)
    # A bad rewrite keeps the previous keys and says so, without printing any key.
    with caplog.at_level(logging.ERROR):
        assert keys("ci") == KEY
    assert "keeping the previous approver keys" in caplog.text
    assert base64.b64encode(KEY).decode() not in caplog.text


def test_keys_are_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    path = keys_file(tmp_path, {"ci": KEY})
    keys = ApproverKeys(path)
    path.write_text(f"ci: {base64.b64encode(OTHER_KEY).decode()}\nnew: {base64.b64encode(KEY).decode()}\n")
    assert keys("ci") == OTHER_KEY and keys("new") == KEY


def test_load_key_checks_mode(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text(base64.b64encode(KEY).decode() + "\n")
    os.chmod(path, 0o640)
    with pytest.raises(ValueError, match="readable by group or others"):
        approvals.load_key(path)
    os.chmod(path, 0o600)
    assert approvals.load_key(path) == KEY
