"""The inventory side of source power requests: SourcePowerRequested in, SourcePowerChanged out.

The inventory service holds the vCenter credentials, so it runs the power operations the planner asks
for. `power_handler` builds the event handler; `change_power` does the work and never raises: every
outcome, good or bad, becomes a SourcePowerChanged the planner can act on.

    action           vSphere call                 "already in that state"        no VMware Tools
    SHUTDOWN_GUEST   ShutdownGuest (returns at    off: success                   error "VMware Tools not
                     once; the guest stops later)                                running" (planner powers off)
    POWER_OFF        PowerOffVM_Task              InvalidPowerState: success     -
    POWER_ON         PowerOnVM_Task               InvalidPowerState: success     -

The answer carries the power state read after the operation. Reading goes through the property
collector, not attribute access (pyvmomi's lazy fetch mis-reads some simulator answers).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message
from pyVmomi import vim, vmodl

from mtv import events
from mtv.bus import Publisher
from mtv.v1 import common_pb2, event_pb2, inventory_pb2

log = logging.getLogger(__name__)

# Given a provider id, a logged-in pyvmomi ServiceInstance (the caller owns sessions and credentials).
ServiceInstanceFor = Callable[[str], Any]
EventHandler = Callable[[event_pb2.Event, Message], None]

TOOLS_NOT_RUNNING = "VMware Tools not running"
TASK_TIMEOUT = 120.0
_POWER = {"poweredOn": common_pb2.POWER_STATE_ON, "poweredOff": common_pb2.POWER_STATE_OFF,
          "suspended": common_pb2.POWER_STATE_SUSPENDED}


def _props(si: Any, ref: Any, paths: list[str]) -> dict[str, Any]:
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=ref, skip=False)],
                         propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=paths)])
    result = si.RetrieveContent().propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
    return {p.name: p.val for obj in (result.objects if result else []) for p in obj.propSet}


def power_state(si: Any, vm_id: str) -> int:
    """The VM's current `common_pb2.PowerState` (UNSPECIFIED when vSphere does not say)."""
    state = _props(si, vim.VirtualMachine(vm_id, si._stub), ["runtime.powerState"]).get("runtime.powerState")
    return _POWER.get(state, common_pb2.POWER_STATE_UNSPECIFIED)


def _wait(task: Any, timeout: float = TASK_TIMEOUT) -> None:
    """Wait for a vSphere task; raise its fault if it failed."""
    deadline = time.monotonic() + timeout
    while True:
        info = task.info
        if info.state == vim.TaskInfo.State.success:
            return
        if info.state == vim.TaskInfo.State.error:
            raise info.error
        if time.monotonic() > deadline:
            raise TimeoutError(f"vSphere task {info.key} still {info.state} after {timeout:.0f} s")
        time.sleep(0.2)


def _run(si: Any, vm: Any, action: int) -> None:
    props = _props(si, vm, ["runtime.powerState", "guest.toolsRunningStatus"])
    state = props.get("runtime.powerState")
    if action == inventory_pb2.POWER_ACTION_SHUTDOWN_GUEST:
        if state == "poweredOff":
            return
        if props.get("guest.toolsRunningStatus") != "guestToolsRunning":
            # vCenter answers ToolsUnavailable; checking first gives the same answer on simulators too.
            raise vim.fault.ToolsUnavailable(msg=TOOLS_NOT_RUNNING)
        vm.ShutdownGuest()
    elif action == inventory_pb2.POWER_ACTION_POWER_OFF:
        _wait(vm.PowerOffVM_Task())
    elif action == inventory_pb2.POWER_ACTION_POWER_ON:
        _wait(vm.PowerOnVM_Task())
    else:
        raise ValueError(f"unknown power action {action}")


def change_power(service_instance_for: ServiceInstanceFor,
                 req: inventory_pb2.SourcePowerRequested) -> inventory_pb2.SourcePowerChanged:
    """Run the requested operation; the answer says the resulting power state or what went wrong."""
    out = inventory_pb2.SourcePowerChanged(provider_id=req.provider_id, vm_id=req.vm_id, action=req.action,
                                           plan_id=req.plan_id)
    action = inventory_pb2.PowerAction.Name(req.action)
    try:
        si = service_instance_for(req.provider_id)
        vm = vim.VirtualMachine(req.vm_id, si._stub)
        with contextlib.suppress(vim.fault.InvalidPowerState):  # already in that state: as asked
            _run(si, vm, req.action)
        out.power_state = power_state(si, req.vm_id)
    except vim.fault.ToolsUnavailable:
        out.error = TOOLS_NOT_RUNNING
    except vmodl.fault.ManagedObjectNotFound:
        out.error = f"VM {req.vm_id} not found on provider {req.provider_id}"
    except vmodl.MethodFault as fault:
        out.error = f"{type(fault).__name__.split('.')[-1]}: {fault.msg or 'no message'}"
    except Exception as exc:  # noqa: BLE001 — a session or network failure is an answer too
        out.error = f"{type(exc).__name__}: {exc}"
    if out.error:
        log.warning("%s of VM %s on provider %s failed: %s", action, req.vm_id, req.provider_id, out.error,
                    extra={"vm_id": req.vm_id, "provider": req.provider_id})
    else:
        log.info("%s of VM %s: now %s", action, req.vm_id, common_pb2.PowerState.Name(out.power_state),
                 extra={"vm_id": req.vm_id, "provider": req.provider_id})
    return out


def power_handler(service_instance_for: ServiceInstanceFor, publisher: Publisher,
                  source: str = "inventory") -> EventHandler:
    """The handler for `source_power_requested` (register it with the inventory's event consumer)."""

    def handle(event: event_pb2.Event, _msg: Message) -> None:
        answer = change_power(service_instance_for, event.source_power_requested)
        publisher.publish(events.child_of(event, answer, source=source))
        # Flushed before returning, so the request is committed only after its answer is on the broker.
        publisher.flush()

    return handle
