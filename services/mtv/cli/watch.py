"""`mtvctl watch [PLAN]`: live progress in the terminal, driven only by the public progress and
status topics, so it works from any machine that reaches the broker.

`WatchState` is pure (events in, a view out) and unit-tested; `run` is the Kafka + rich shell.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, field

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from mtv import events, topics
from mtv.bus.codec import CodecError, decode
from mtv.v1 import event_pb2, migration_pb2, plan_pb2, transfer_pb2

WATCHED = (topics.TRANSFER_PROGRESS, topics.TRANSFER_RESULTS, topics.VM_STATUS, topics.PLAN_EVENTS)
TERMINAL_PLAN = {plan_pb2.PLAN_PHASE_SUCCEEDED, plan_pb2.PLAN_PHASE_FAILED, plan_pb2.PLAN_PHASE_CANCELED}


@dataclass
class DiskView:
    transfer_id: str
    vm_id: str
    done: int = 0
    total: int = 0
    rate: float = 0.0
    eta: float = -1.0
    state: str = "copying"  # copying | completed | failed
    detail: str = ""  # sha256 prefix or failure reason
    worker: str = ""
    sha256: str = ""


@dataclass
class VmView:
    vm_id: str
    name: str = ""
    phase: str = "queued"
    error: str = ""


@dataclass
class PlanView:
    plan_id: str
    phase: str = "executing"
    detail: str = ""
    vms: dict[str, VmView] = field(default_factory=dict)
    disks: dict[str, DiskView] = field(default_factory=dict)
    terminal: bool = False


def _phase_name(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix).lower().replace("_", " ")


class WatchState:
    """Folds progress/status events into per-plan views. Events of other plans are ignored."""

    def __init__(self, plan_filter: str = "") -> None:
        self.plan_filter = plan_filter
        self.plans: dict[str, PlanView] = {}

    def _plan(self, plan_id: str) -> PlanView | None:
        if self.plan_filter and plan_id != self.plan_filter:
            return None
        return self.plans.setdefault(plan_id, PlanView(plan_id))

    def apply(self, event: event_pb2.Event) -> None:
        field_name = events.payload_field(event)
        body = getattr(event, field_name) if field_name else None
        handler = getattr(self, f"_on_{field_name}", None)
        if body is not None and handler is not None:
            handler(body)

    def _disk(self, body: transfer_pb2.DiskTransferProgress) -> DiskView | None:
        plan = self._plan(body.plan_id)
        if plan is None:
            return None
        return plan.disks.setdefault(body.transfer_id, DiskView(body.transfer_id, body.vm_id))

    def _on_disk_transfer_progress(self, p: transfer_pb2.DiskTransferProgress) -> None:
        disk = self._disk(p)
        if disk is None or disk.state != "copying":
            return  # a late progress event never overrides a final result
        disk.done, disk.total, disk.rate, disk.eta, disk.worker = (
            p.bytes_done, p.bytes_total, p.rate_bytes_per_second, p.eta_seconds, p.worker)

    def _on_disk_transfer_completed(self, c: transfer_pb2.DiskTransferCompleted) -> None:
        disk = self._disk(c)  # type: ignore[arg-type]
        if disk is not None:
            disk.state, disk.done, disk.total = "completed", c.bytes_total, c.bytes_total
            disk.detail, disk.eta, disk.worker = f"sha256 {c.sha256[:12]}", 0.0, c.worker
            disk.sha256 = c.sha256
            # The average over the whole copy: the last progress rate is often a near-zero tail.
            disk.rate = c.bytes_total / c.duration_seconds if c.duration_seconds > 0 else disk.rate

    def _on_disk_transfer_failed(self, f: transfer_pb2.DiskTransferFailed) -> None:
        disk = self._disk(f)  # type: ignore[arg-type]
        if disk is not None:
            disk.state, disk.detail = "failed", f.reason

    def _on_vm_migration_status(self, s: migration_pb2.VmMigrationStatus) -> None:
        plan = self._plan(s.plan_id)
        if plan is None:
            return
        vm = plan.vms.setdefault(s.vm_id, VmView(s.vm_id))
        vm.name = s.vm_name or vm.name
        vm.phase = _phase_name(migration_pb2.VmPhase.Name(s.phase), "VM_PHASE_")
        vm.error = s.error

    def _on_plan_status_changed(self, s: plan_pb2.PlanStatusChanged) -> None:
        plan = self._plan(s.plan_id)
        if plan is not None:
            plan.phase = _phase_name(plan_pb2.PlanPhase.Name(s.phase), "PLAN_PHASE_")
            plan.terminal = s.phase in TERMINAL_PLAN
            plan.detail = (f"{s.vms_succeeded}/{s.vms_total} VMs succeeded, {s.vms_failed} failed, "
                           f"{s.vms_canceled} canceled")

    def _on_plan_rejected(self, r: plan_pb2.PlanRejected) -> None:
        plan = self._plan(r.plan_id)
        if plan is not None:
            plan.phase, plan.detail = "rejected", r.reason

    def failed(self) -> bool:
        """True unless every watched plan ended and none failed."""
        ended_badly = any(p.phase in ("failed", "rejected", "canceled") for p in self.plans.values())
        return ended_badly or not self.done()

    def done(self) -> bool:
        """True when the watched plan (or every seen plan) reached a final phase."""
        return bool(self.plans) and all(p.terminal for p in self.plans.values())


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _eta(seconds: float) -> str:
    if seconds < 0:
        return "--:--"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes:02d}:{sec:02d}"


def render(state: WatchState) -> RenderableType:
    parts: list[RenderableType] = []
    for plan in state.plans.values():
        done = sum(d.done for d in plan.disks.values())
        total = sum(d.total for d in plan.disks.values())
        style = "red" if plan.phase in ("failed", "rejected") else "green" if plan.phase == "succeeded" else "bold"
        parts.append(Text(f"plan {plan.plan_id}: {plan.phase}  {_bytes(done)} / {_bytes(total)}  {plan.detail}",
                          style=style))
        table = Table(show_header=True, header_style="bold", expand=False, box=None, pad_edge=False)
        for col in ("vm / disk", "phase", "progress", "bytes", "rate", "eta", "detail"):
            table.add_column(col, no_wrap=col != "detail")
        vm_ids = list(plan.vms) + sorted({d.vm_id for d in plan.disks.values()} - set(plan.vms))
        for vm_id in vm_ids:
            vm = plan.vms.get(vm_id, VmView(vm_id))
            phase_style = "red" if vm.phase == "failed" else "green" if vm.phase == "completed" else ""
            table.add_row(Text(vm.name or vm.vm_id, style="bold"), Text(vm.phase, style=phase_style), "", "", "",
                          "", Text(vm.error, style="red"))
            for disk in sorted((d for d in plan.disks.values() if d.vm_id == vm_id), key=lambda d: d.transfer_id):
                color = {"completed": "green", "failed": "red"}.get(disk.state, "cyan")
                table.add_row(
                    f"  disk {disk.transfer_id.rsplit('/', 1)[-1]}", Text(disk.state, style=color),
                    ProgressBar(total=max(disk.total, 1), completed=disk.done, width=24,
                                complete_style=color, finished_style=color),
                    f"{_bytes(disk.done)}/{_bytes(disk.total)}", f"{_bytes(disk.rate)}/s", _eta(disk.eta),
                    Text(disk.detail, style="red" if disk.state == "failed" else ""),
                )
        parts.append(table)
    if not parts:
        parts.append(Text("waiting for events…", style="dim"))
    return Group(*parts)


def run(bootstrap: str, plan: str = "", until_done: bool = True, timeout: float = 0.0,
        console: Console | None = None) -> int:
    """Follow the topics from the beginning; return 0 when the plan succeeded, 1 if it failed."""
    return 1 if follow(bootstrap, plan, until_done, timeout, console).failed() else 0


def follow(bootstrap: str, plan: str = "", until_done: bool = True, timeout: float = 0.0,
           console: Console | None = None) -> WatchState:
    """Render live until the plan ends (or `timeout`); return the final state."""
    from confluent_kafka import Consumer

    # Piped or logged output gets a wide fixed width instead of rich's 80 columns.
    console = console or Console(width=None if sys.stdout.isatty() else 150)
    state = WatchState(plan)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"mtvctl-watch-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 2})
    consumer.subscribe([t.name for t in WATCHED])
    deadline = time.monotonic() + timeout if timeout else None
    try:
        with Live(render(state), console=console, refresh_per_second=4, transient=False) as live:
            grace_until = None
            while True:
                now = time.monotonic()
                if until_done and state.done():
                    # Status events of the last VMs may sit on other partitions: read them too.
                    grace_until = grace_until or now + 1.5
                    if now > grace_until:
                        break
                if deadline and now > deadline:
                    break
                msg = consumer.poll(0.25)
                if msg is None or msg.error():
                    continue
                try:
                    state.apply(decode(msg.value()))
                except CodecError:
                    continue  # a watcher only reads; the services dead-letter what they cannot use
                live.update(render(state))
    finally:
        consumer.close()
    return state
