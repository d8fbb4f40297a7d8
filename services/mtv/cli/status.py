"""`mtvctl status`: one screen saying whether the installation works — broker, services, providers, plans.

Every check is independent and reported on its own line, so one part down does not hide the rest;
the exit code is 0 only when every part answered.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass

import grpc

from mtv.v1 import inventory_service_pb2, plan_pb2, planner_service_pb2

SERVICE_URL_VARS = ("MTV_INVENTORY_URL", "MTV_PLANNER_URL", "MTV_TRANSFER_URL", "MTV_CONVERTER_URL")


@dataclass(frozen=True)
class Check:
    part: str
    ok: bool
    detail: str


def check_broker(bootstrap: str) -> Check:
    from confluent_kafka.admin import AdminClient

    if not bootstrap:
        return Check("kafka", False, "MTV_KAFKA_BOOTSTRAP not set (`. .run/env`)")
    try:
        meta = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2}).list_topics(timeout=5)
    except Exception as exc:  # noqa: BLE001 — any failure means "not reachable", said in one line
        return Check("kafka", False, f"{bootstrap}: {exc}")
    ours = sum(1 for t in meta.topics if t.startswith("mtv."))
    return Check("kafka", True, f"{bootstrap}: {len(meta.brokers)} broker(s), {ours} mtv topics")


def check_service(var: str, url: str) -> Check:
    name = var.removeprefix("MTV_").removesuffix("_URL").lower()
    if not url:
        return Check(name, False, f"{var} not set")
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=3) as resp:
            return Check(name, resp.status == 200, f"{url} ready")
    except urllib.error.HTTPError as exc:
        return Check(name, False, f"{url} not ready (HTTP {exc.code})")
    except OSError as exc:
        return Check(name, False, f"{url} unreachable ({getattr(exc, 'reason', exc)})")


def check_providers(address: str) -> list[Check]:
    from mtv.inventory.cli import phase_name, stub_for

    if not address:
        return [Check("providers", False, "MTV_INVENTORY_GRPC not set")]
    try:
        listed = stub_for(address).ListProviders(inventory_service_pb2.ListProvidersRequest(), timeout=5).providers
    except grpc.RpcError as exc:
        return [Check("providers", False, f"{address}: {exc.code().name.lower()}")]
    if not listed:
        return [Check("providers", True, "none registered (`mtvctl provider add vsphere ...`)")]
    return [Check(f"provider {p.provider.name}", phase_name(p.phase) == "Ready",
                  f"{phase_name(p.phase)}, {p.vm_count} VMs{': ' + p.reason if p.reason else ''}") for p in listed]


def check_plans(address: str) -> list[Check]:
    from mtv.planner.client import stub_for

    if not address:
        return [Check("plans", False, "MTV_PLANNER_GRPC not set")]
    try:
        plans = stub_for(address).ListPlans(planner_service_pb2.ListPlansRequest(), timeout=5).plans
    except grpc.RpcError as exc:
        return [Check("plans", False, f"{address}: {exc.code().name.lower()}")]
    if not plans:
        return [Check("plans", True, "none yet (`mtvctl plan create -f plan.yaml`)")]
    return [Check(f"plan {p.spec.name}", p.phase != plan_pb2.PLAN_PHASE_FAILED,
                  f"{plan_pb2.PlanPhase.Name(p.phase).removeprefix('PLAN_PHASE_').lower()}, {len(p.spec.vms)} VMs")
            for p in plans]


def check_workers(bootstrap: str, listen_seconds: float = 2.5) -> list[Check]:
    """Transfer workers from their statuses on the workers topic (each reports every ~2 s)."""
    import time

    from confluent_kafka import KafkaException

    from mtv import topics
    from mtv.transfer.directory import WorkerDirectory
    from mtv.transfer.handoff import State

    if not bootstrap:
        return []
    directory = WorkerDirectory(bootstrap, topics.TRANSFER_WORKERS, None, worker="mtvctl", group_id=None,
                                requests_topic=None, source="mtvctl")
    try:
        directory.start(timeout=5)
        # Every worker reports within an interval; on a busy machine reading back the last few
        # intervals can take longer than that, so also wait (bounded) until that backlog is read.
        started = time.monotonic()
        while True:
            directory.poll()
            elapsed = time.monotonic() - started
            if elapsed >= 4 * listen_seconds or (elapsed >= listen_seconds and directory.caught_up()):
                break
            time.sleep(0.1)
    except KafkaException as exc:
        return [Check("transfer workers", False, f"{topics.TRANSFER_WORKERS.name}: {exc.args[0].str()}")]
    finally:
        directory.close()
    live = sorted((p for p in directory.peers.values() if p.state is not State.STOPPED), key=lambda p: p.worker)
    if not live:
        return [Check("transfer workers", False, "none reporting: is mtv-transfer running?")]
    return [Check(f"worker {p.worker}", True,
                  (f"busy: {p.transfer_id}" if p.state is State.BUSY else "idle") + f", {len(p.partitions)} partitions")
            for p in live]


def run() -> int:
    env = os.environ
    checks = [check_broker(env.get("MTV_KAFKA_BOOTSTRAP", ""))]
    checks += [check_service(var, env.get(var, "")) for var in SERVICE_URL_VARS]
    if checks[0].ok:
        checks += check_workers(env.get("MTV_KAFKA_BOOTSTRAP", ""))
    checks += check_providers(env.get("MTV_INVENTORY_GRPC", ""))
    checks += check_plans(env.get("MTV_PLANNER_GRPC", ""))
    for c in checks:
        print(f"{'ok ' if c.ok else 'BAD'}  {c.part:24} {c.detail}")
    return 0 if all(c.ok for c in checks) else 1
