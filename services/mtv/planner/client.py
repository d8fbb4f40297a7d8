"""`mtvctl plan ...`: the planner's gRPC API from the command line.

    mtvctl plan create -f plan.yaml       parse locally (errors name field and line), then CreatePlan
    mtvctl plan ls | show NAME | validate NAME
    mtvctl plan approve NAME              signs with MTV_APPROVER_ID and MTV_APPROVER_KEY_FILE
    mtvctl plan cancel NAME [--vm ID]...  whole plan, or some VMs
    mtvctl plan retry NAME [--vm ID]...   failed VMs

The planner's address is --planner HOST:PORT or MTV_PLANNER_GRPC. Errors are one line each on stderr
with exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from mtv import approvals
from mtv.model import plan_to_proto
from mtv.planner import plan_yaml
from mtv.planner.errors import PlanSpecError
from mtv.v1 import common_pb2, migration_pb2, plan_pb2, planner_service_pb2, planner_service_pb2_grpc

TIMEOUT = 60.0


def _fail(message: str) -> SystemExit:
    return SystemExit(f"mtvctl: {message}")


def _stub(args: argparse.Namespace) -> planner_service_pb2_grpc.PlannerServiceStub:
    address = args.planner or os.environ.get("MTV_PLANNER_GRPC", "")
    if not address:
        raise _fail("no planner: pass --planner HOST:PORT or set MTV_PLANNER_GRPC (`. .run/env`)")
    return stub_for(address)


def stub_for(address: str) -> planner_service_pb2_grpc.PlannerServiceStub:
    return planner_service_pb2_grpc.PlannerServiceStub(grpc.insecure_channel(address))


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    try:
        return getattr(_stub(args), method)(request, timeout=TIMEOUT)
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        if code is grpc.StatusCode.UNAVAILABLE:
            raise _fail(f"cannot reach the planner at {args.planner or os.environ.get('MTV_PLANNER_GRPC')}; "
                        "is it running?") from None
        raise _fail(exc.details() or code.name) from None  # type: ignore[attr-defined]


def _phase(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()


def cmd_create(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text()
    except OSError as exc:
        raise _fail(f"{args.file}: {exc.strerror}") from None
    try:
        parsed = plan_yaml.parse_document(text, args.file)
    except PlanSpecError as exc:
        raise SystemExit("\n".join(f"mtvctl: {args.file}: {p}" for p in exc.problems)) from None
    spec = parsed.spec
    created = _call(args, "CreatePlan", planner_service_pb2.CreatePlanRequest(spec=plan_to_proto(spec)))
    view = _call(args, "GetPlan", planner_service_pb2.GetPlanRequest(name=created.plan_id)).plan
    print(f"plan {spec.name} revision {created.revision} ({created.plan_id}): "
          f"{_phase(plan_pb2.PlanPhase, view.phase, 'PLAN_PHASE_')}")
    _print_concerns(view.concerns)
    if view.phase != plan_pb2.PLAN_PHASE_BLOCKED:
        return 0
    # The plan exists but cannot be approved: say which line of the file each blocking finding is about.
    lines = []
    for c in view.concerns:
        if c.category == common_pb2.CONCERN_CATEGORY_CRITICAL:
            field = plan_yaml.CONCERN_FIELDS.get(c.id, "")
            where = f"line {parsed.line_of(field)}: {field}: " if field else ""
            lines.append(f"mtvctl: {args.file}: {where}{c.assessment}")
    raise SystemExit("\n".join(lines) or f"mtvctl: plan {spec.name} is blocked")


def cmd_ls(args: argparse.Namespace) -> int:
    plans = _call(args, "ListPlans", planner_service_pb2.ListPlansRequest()).plans
    print(f"{'NAME':24} {'REV':>3}  {'PHASE':10} {'VMS':>5}  ID")
    for p in plans:
        print(f"{p.spec.name:24} {p.revision:>3}  {_phase(plan_pb2.PlanPhase, p.phase, 'PLAN_PHASE_'):10} "
              f"{len(p.spec.vms):>5}  {p.plan_id}")
    return 0


def _print_concerns(concerns: Any) -> None:
    for c in concerns:
        category = common_pb2.ConcernCategory.Name(c.category).removeprefix("CONCERN_CATEGORY_")
        print(f"  {category:11} {c.id}: {c.assessment}")


def cmd_show(args: argparse.Namespace) -> int:
    view = _call(args, "GetPlan", planner_service_pb2.GetPlanRequest(name=args.name)).plan
    spec = view.spec
    target = spec.target.context if spec.target.kind == plan_pb2.TARGET_KIND_KUBERNETES else (
        spec.target.path or "local (converter default)")
    print(f"plan {spec.name} revision {view.revision} ({view.plan_id}): "
          f"{_phase(plan_pb2.PlanPhase, view.phase, 'PLAN_PHASE_')}")
    print(f"  from {spec.source_provider} to {target}, namespace {spec.target_namespace}, "
          f"maxInFlight {spec.max_in_flight or 10}")
    if view.concerns:
        print("concerns:")
        _print_concerns(view.concerns)
    started = view.phase not in (plan_pb2.PLAN_PHASE_CREATED, plan_pb2.PLAN_PHASE_VALIDATED,
                                 plan_pb2.PLAN_PHASE_BLOCKED)
    if view.vms:
        print(f"{'VM':24} {'TARGET':24} {'PHASE':20} {'DISKS':>14}  ERROR")
        for vm in view.vms:
            disks = next((s for s in vm.pipeline if s.name == "DiskTransfer"), None)
            copied = f"{disks.progress.done >> 20}/{disks.progress.total >> 20} MiB" \
                if disks and disks.progress.total else ""
            phase = _phase(migration_pb2.VmPhase, vm.phase, "VM_PHASE_") if started else "-"
            print(f"{vm.vm_name:24} {vm.target_name:24} {phase:20} {copied:>14}  {vm.error}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    result = _call(args, "ValidatePlan", planner_service_pb2.ValidatePlanRequest(name=args.name)).result
    print(f"plan {args.name} revision {result.revision}: {'BLOCKED' if result.blocked else 'ok'} "
          f"({len(result.concerns)} concern(s))")
    _print_concerns(result.concerns)
    return 1 if result.blocked else 0


def cmd_approve(args: argparse.Namespace) -> int:
    approver = os.environ.get("MTV_APPROVER_ID", "")
    key_file = os.environ.get("MTV_APPROVER_KEY_FILE", "")
    if not approver or not key_file:
        raise _fail("set MTV_APPROVER_ID and MTV_APPROVER_KEY_FILE (a base64 key, mode 0600) to approve")
    try:
        key = approvals.load_key(key_file)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    view = _call(args, "GetPlan", planner_service_pb2.GetPlanRequest(name=args.name)).plan
    signed = approvals.sign(approvals.new_approval(view.plan_id, view.revision, approver, args.comment), key)
    answer = _call(args, "ApprovePlan", planner_service_pb2.ApprovePlanRequest(approval=signed))
    if not answer.accepted:
        raise _fail(f"approval of plan {args.name} revision {view.revision} rejected: {answer.reason}")
    print(f"plan {args.name} revision {view.revision} approved by {approver}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    _call(args, "CancelPlan", planner_service_pb2.CancelPlanRequest(name=args.name, vm_ids=args.vm or []))
    print(f"plan {args.name}: canceled {', '.join(args.vm) if args.vm else 'every VM not finished'}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    _call(args, "RetryPlan", planner_service_pb2.RetryPlanRequest(name=args.name, vm_ids=args.vm or []))
    print(f"plan {args.name}: retrying {', '.join(args.vm) if args.vm else 'the failed VMs'}")
    return 0


def add_parser(sub: Any) -> None:
    """Register `mtvctl plan ...` on the top-level subparsers."""
    group = sub.add_parser("plan", help="migration plans: create, inspect, approve, cancel, retry")
    gsub = group.add_subparsers(dest="action", required=True)

    def command(name: str, func: Callable[[argparse.Namespace], int], help_text: str,
                named: bool = True) -> argparse.ArgumentParser:
        p = gsub.add_parser(name, help=help_text)
        p.add_argument("--planner", help="planner gRPC address HOST:PORT (default: $MTV_PLANNER_GRPC)")
        if named:
            p.add_argument("name", help="plan name or id")
        p.set_defaults(func=func)
        return p

    command("create", cmd_create, "create a plan (or a new revision) from YAML", named=False).add_argument(
        "-f", "--file", required=True, help="the plan file")
    command("ls", cmd_ls, "list plans", named=False)
    command("show", cmd_show, "a plan with its concerns and VMs")
    command("validate", cmd_validate, "validate now (exit 1 when blocked)")
    command("approve", cmd_approve, "sign and send an approval of the current revision").add_argument(
        "--comment", default="", help="recorded with the approval")
    for name, func, text in (("cancel", cmd_cancel, "cancel the plan or some VMs"),
                             ("retry", cmd_retry, "retry failed VMs")):
        command(name, func, text).add_argument("--vm", action="append", metavar="ID", help="a VM id (repeatable)")
