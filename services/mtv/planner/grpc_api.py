"""PlannerService (gRPC) on MTV_PLANNER_GRPC_HOST:MTV_PLANNER_GRPC_PORT.

Commands do not change state here: they are published as events (PlanCreated, PlanApproved,
CancelPlanRequested, RetryPlanRequested) and the call waits until the planner's own consumer has
applied them, so gRPC and Kafka clients take exactly the same path, and the answer reports what
happened (e.g. the reason an approval was rejected). Queries read the planner's tables under its lock.

Status codes: INVALID_ARGUMENT (bad spec, names the field), NOT_FOUND (no such plan),
FAILED_PRECONDITION (the plan's state forbids it, with the reason), UNAVAILABLE (still loading the
inventory), DEADLINE_EXCEEDED (not applied in time; it may still be).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

import grpc

from mtv import approvals, events
from mtv.model import plan_from_proto
from mtv.planner import plans
from mtv.planner.errors import PlanConflict, PlanNotFound, PlanSpecError
from mtv.planner.service import Planner
from mtv.planner.state import SERVICE
from mtv.v1 import event_pb2, plan_pb2, planner_service_pb2, planner_service_pb2_grpc

# Publish an event and wait until the planner applied it; returns the verdict.
Submit = Callable[[event_pb2.Event], str]
# Publish what the planner's outbox holds (the caller holds the lock).
Flush = Callable[[], None]


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable")  # abort raises


class PlannerServicer(planner_service_pb2_grpc.PlannerServiceServicer):
    def __init__(self, planner: Planner, lock: threading.RLock, submit: Submit, flush: Flush) -> None:
        self.planner = planner
        self.lock = lock
        self.submit = submit
        self.flush = flush
        self._create_lock = threading.Lock()  # two creates of one new name must not both get a new id

    def _find(self, name: str, context: grpc.ServicerContext) -> str:
        try:
            with self.lock:
                return self.planner.find(name).plan_id
        except PlanNotFound as exc:
            _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))

    def _command(self, event: event_pb2.Event, context: grpc.ServicerContext) -> None:
        verdict = self.submit(event)
        if verdict != plans.ACCEPTED:
            code = grpc.StatusCode.DEADLINE_EXCEEDED if verdict.startswith("timeout") else \
                grpc.StatusCode.FAILED_PRECONDITION
            _abort(context, code, verdict)

    def CreatePlan(self, request: planner_service_pb2.CreatePlanRequest,  # noqa: N802 — gRPC naming
                   context: grpc.ServicerContext) -> planner_service_pb2.CreatePlanResponse:
        spec = plan_from_proto(request.spec)
        with self._create_lock:
            try:
                with self.lock:
                    plan_id, revision, changed = plans.prepare_create(self.planner.st, spec)
            except PlanSpecError as exc:
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except PlanConflict as exc:
                _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            if changed:
                created = plan_pb2.PlanCreated(plan_id=plan_id, revision=revision, spec=request.spec)
                self._command(events.make(created, source=SERVICE, correlation_id=plan_id), context)
        return planner_service_pb2.CreatePlanResponse(plan_id=plan_id, revision=revision)

    def GetPlan(self, request: planner_service_pb2.GetPlanRequest,  # noqa: N802
                context: grpc.ServicerContext) -> planner_service_pb2.GetPlanResponse:
        plan_id = self._find(request.name, context)
        with self.lock:
            plan = self.planner.st.plan(plan_id)
            assert plan is not None
            return planner_service_pb2.GetPlanResponse(plan=self.planner.view(plan))

    def ListPlans(self, request: planner_service_pb2.ListPlansRequest,  # noqa: N802
                  context: grpc.ServicerContext) -> planner_service_pb2.ListPlansResponse:
        with self.lock:
            return planner_service_pb2.ListPlansResponse(plans=self.planner.views())

    def ValidatePlan(self, request: planner_service_pb2.ValidatePlanRequest,  # noqa: N802
                     context: grpc.ServicerContext) -> planner_service_pb2.ValidatePlanResponse:
        plan_id = self._find(request.name, context)
        with self.lock:
            if not self.planner.st.inventory_ready:
                _abort(context, grpc.StatusCode.UNAVAILABLE, "the planner is still reading the inventory; retry")
            result = plans.validate_plan(self.planner.st, plan_id, force=True)
            self.flush()
        if result is None:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "the plan has no validation yet")
        return planner_service_pb2.ValidatePlanResponse(result=plans.validated_event(plan_id, result))

    def ApprovePlan(self, request: planner_service_pb2.ApprovePlanRequest,  # noqa: N802
                    context: grpc.ServicerContext) -> planner_service_pb2.ApprovePlanResponse:
        claimed = plan_pb2.Approval()
        with contextlib.suppress(Exception):  # malformed: the planner's verification reports it properly
            claimed.ParseFromString(request.approval.approval)
        event = approvals.approval_event(request.approval, claimed.plan_id, source=claimed.approver_id or "grpc")
        verdict = self.submit(event)
        accepted = verdict == plans.ACCEPTED or verdict.startswith("duplicate")
        return planner_service_pb2.ApprovePlanResponse(accepted=accepted, reason="" if accepted else verdict)

    def CancelPlan(self, request: planner_service_pb2.CancelPlanRequest,  # noqa: N802
                   context: grpc.ServicerContext) -> planner_service_pb2.CancelPlanResponse:
        plan_id = self._find(request.name, context)
        cancel = plan_pb2.CancelPlanRequested(plan_id=plan_id, vm_ids=list(request.vm_ids), reason="canceled by user")
        self._command(events.make(cancel, source=SERVICE, correlation_id=plan_id), context)
        return planner_service_pb2.CancelPlanResponse()

    def RetryPlan(self, request: planner_service_pb2.RetryPlanRequest,  # noqa: N802
                  context: grpc.ServicerContext) -> planner_service_pb2.RetryPlanResponse:
        plan_id = self._find(request.name, context)
        retry = plan_pb2.RetryPlanRequested(plan_id=plan_id, vm_ids=list(request.vm_ids))
        self._command(events.make(retry, source=SERVICE, correlation_id=plan_id), context)
        return planner_service_pb2.RetryPlanResponse()


def start_server(servicer: PlannerServicer, host: str, port: int) -> tuple[grpc.Server, int]:
    server = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix="grpc"))
    planner_service_pb2_grpc.add_PlannerServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot listen on {host}:{port} for gRPC; set MTV_PLANNER_GRPC_PORT to a free port")
    server.start()
    return server, bound
