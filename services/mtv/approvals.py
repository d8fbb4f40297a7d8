"""Signed plan approvals: the public contract for systems that approve MTV plans.

A change-management system, a CI pipeline or `mtvctl plan approve` publishes a `PlanApproved` on
`mtv.plan.approvals.v1`, keyed by the plan id. It carries

    approval   the serialized `mtv.v1.Approval` bytes (plan id, plan revision, approver id, ...)
    signature  HMAC-SHA256(key of the approver, approval bytes)

The signature covers the bytes exactly as carried, so verifying never re-serializes a message (two
protobuf libraries may serialize the same message differently; the bytes on the wire are the truth).
The planner holds one key per approver id (`MTV_APPROVER_KEYS_FILE`) and refuses, with a
`PlanRejected` naming the reason, anything unsigned, wrongly signed, from an unknown approver, for an
unknown plan, for a plan that is not validated or is blocked, or for an older plan revision.

Usage from Python (see the README section "Approving a plan from another system" for a version that
needs nothing but confluent-kafka and the generated protobuf classes):

    from mtv import approvals
    key = approvals.load_key("/etc/mtv/approver.key")
    approvals.publish_signed_approval("kafka:9092", plan_id, revision, "change-mgmt", key)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf.message import DecodeError

from mtv import events, topics
from mtv.v1 import event_pb2, plan_pb2

__all__ = [
    "ApprovalError",
    "BAD_SIGNATURE",
    "MALFORMED",
    "MIN_KEY_BYTES",
    "UNKNOWN_APPROVER",
    "UNSIGNED",
    "approval_event",
    "load_key",
    "new_approval",
    "publish_signed_approval",
    "sign",
    "verify",
]

# Reason codes of a refused signature; the planner adds plan-level ones (unknown_plan, stale_revision, ...).
UNSIGNED = "unsigned"
MALFORMED = "malformed"
UNKNOWN_APPROVER = "unknown_approver"
BAD_SIGNATURE = "bad_signature"

# Shorter HMAC keys are guessable; 32 random bytes (`head -c32 /dev/urandom | base64`) is the advice.
MIN_KEY_BYTES = 16


class ApprovalError(ValueError):
    """An approval that cannot be trusted; `code` is one of the reason codes above."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {super().__str__()}"


def new_approval(plan_id: str, revision: int, approver_id: str, comment: str = "",
                 approval_id: str | None = None, approved_at: datetime | None = None) -> plan_pb2.Approval:
    """An Approval with a fresh approval id (the planner treats a repeated id as a duplicate)."""
    approval = plan_pb2.Approval(plan_id=plan_id, plan_revision=revision, approver_id=approver_id,
                                 comment=comment, approval_id=approval_id or str(uuid.uuid4()))
    approval.approved_at.FromDatetime(approved_at or datetime.now(UTC))
    return approval


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()


def sign(approval: plan_pb2.Approval, key: bytes) -> plan_pb2.PlanApproved:
    """Serialize `approval` once and sign exactly those bytes."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"approver key is {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes")
    body = approval.SerializeToString(deterministic=True)
    return plan_pb2.PlanApproved(approval=body, signature=_mac(key, body))


KeyLookup = Mapping[str, bytes] | Callable[[str], bytes | None]


def verify(approved: plan_pb2.PlanApproved, keys: KeyLookup) -> plan_pb2.Approval:
    """The Approval inside `approved` if its signature is valid; raise ApprovalError otherwise.

    `keys` maps an approver id to its key (a mapping, or a function returning None when unknown).
    The approver id is read from the not-yet-verified bytes only to pick the key; nothing else in
    them is trusted before the HMAC matches.
    """
    if not approved.signature:
        raise ApprovalError(UNSIGNED, "the approval carries no signature; sign it with the approver's key")
    if not approved.approval:
        raise ApprovalError(MALFORMED, "the approval body is empty")
    approval = plan_pb2.Approval()
    try:
        approval.ParseFromString(approved.approval)
    except DecodeError:
        raise ApprovalError(MALFORMED, "the approval body is not a serialized mtv.v1.Approval") from None
    if not approval.approver_id:
        raise ApprovalError(MALFORMED, "approval.approver_id is empty")
    key = keys.get(approval.approver_id) if isinstance(keys, Mapping) else keys(approval.approver_id)
    if key is None:
        raise ApprovalError(UNKNOWN_APPROVER, f"approver {approval.approver_id!r} has no key in the planner's "
                                              "approver keys (MTV_APPROVER_KEYS_FILE)")
    if not hmac.compare_digest(_mac(key, approved.approval), approved.signature):
        raise ApprovalError(BAD_SIGNATURE, f"the signature does not match the key of approver "
                                           f"{approval.approver_id!r}")
    if not approval.plan_id:
        raise ApprovalError(MALFORMED, "approval.plan_id is empty")
    return approval


def approval_event(approved: plan_pb2.PlanApproved, plan_id: str, source: str) -> event_pb2.Event:
    """The event to publish on mtv.plan.approvals.v1 (key: the plan id)."""
    return events.make(approved, source=source, correlation_id=plan_id)


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read a base64 key file; refuse one that group or others can read (a key anyone can read is no key)."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text().strip()
    except OSError as exc:
        raise ValueError(f"approver key file {p}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"approver key file {p} is readable by group or others (mode {stat.S_IMODE(mode):o}); "
                         f"run: chmod 600 {p}")
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError(f"approver key file {p}: not base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"approver key file {p}: key is {len(key)} bytes, at least {MIN_KEY_BYTES} are needed")
    return key


def publish_signed_approval(bootstrap: str, plan_id: str, revision: int, approver_id: str, key: bytes,
                            comment: str = "", source: str = "", timeout: float = 30.0) -> str:
    """Sign an approval of `plan_id` at `revision` and publish it; return the approval id.

    Raises RuntimeError when the broker does not acknowledge it within `timeout` seconds.
    """
    from confluent_kafka import Producer  # imported here: the signing helpers above need no Kafka client

    approval = new_approval(plan_id, revision, approver_id, comment)
    event = approval_event(sign(approval, key), plan_id, source or approver_id)
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    producer.produce(topics.PLAN_APPROVALS.name, key=plan_id.encode(), value=event.SerializeToString(),
                     on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)
    if producer.flush(timeout) or errors:
        raise RuntimeError(f"approval of plan {plan_id} not delivered to {bootstrap}: "
                           f"{'; '.join(errors) or 'timed out'}")
    return approval.approval_id
