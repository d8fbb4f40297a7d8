"""The converter's event handlers: target_prepare_requested, convert_requested,
target_cleanup_requested -> TargetPrepared / VmCreated / TargetFailed on mtv.target.results.v1.

Every handler is idempotent (targets apply, never blindly create), so a redelivered request
repeats nothing. A ConverterError becomes TargetFailed naming the VM, the field, the fix and the
objects created so far; anything else is a bug and takes the consumer's retry/dead-letter path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Message
from google.protobuf.message import Message as ProtoMessage
from pydantic import Field

from mtv import events
from mtv.bus import Publisher
from mtv.converter import diskformat, manifests
from mtv.converter.errors import ConverterError, InvalidMappingError
from mtv.converter.targets import Target, VmRef
from mtv.converter.targets.kubernetes import KubernetesTarget, api_client
from mtv.converter.targets.local import LocalTarget
from mtv.model import PlanSpec, TargetKind, plan_from_proto, vm_from_proto
from mtv.runtime.settings import ServiceSettings
from mtv.v1 import event_pb2, target_pb2

log = logging.getLogger(__name__)
SERVICE = "converter"
EventHandler = Callable[[event_pb2.Event, Message], None]


class ConverterSettings(ServiceSettings):
    local_target_root: Path = Field(Path(".run/target"),
                                    description="root of the local target when a plan gives no target.path")
    kubeconfig: str = Field("", description="kubeconfig of the Kubernetes target (empty: $KUBECONFIG, ~/.kube/config)")
    disk_format: str = Field("raw", description="format of local disk images after conversion: raw or qcow2")


class Converter:
    """Maps requests to a target and publishes one result per request."""

    def __init__(self, settings: ConverterSettings, publisher: Publisher) -> None:
        self.settings = settings
        self.publisher = publisher
        self._kube: dict[tuple[str, str], KubernetesTarget] = {}

    def handlers(self) -> dict[str, EventHandler]:
        return {
            "target_prepare_requested": self.on_prepare,
            "convert_requested": self.on_convert,
            "target_cleanup_requested": self.on_cleanup,
        }

    def target_for(self, plan: PlanSpec) -> Target:
        if plan.target_kind is TargetKind.LOCAL:
            return LocalTarget(Path(plan.target_path) if plan.target_path else self.settings.local_target_root)
        key = (self.settings.kubeconfig, plan.target_context)
        if key not in self._kube:
            self._kube[key] = KubernetesTarget(api_client(*key))
        return self._kube[key]

    # --- handlers ------------------------------------------------------------------------------

    def on_prepare(self, event: event_pb2.Event, _msg: Message) -> None:
        req = event.target_prepare_requested
        vm, plan = vm_from_proto(req.vm), plan_from_proto(req.plan)
        result: ProtoMessage
        try:
            target_vm = manifests.build(vm, plan, req.target_name)
            sinks = self.target_for(plan).prepare(target_vm)
            result = target_pb2.TargetPrepared(plan_id=req.plan_id, vm_id=vm.id, disks=[
                target_pb2.PreparedDisk(disk_key=s.disk_key, sink_uri=s.uri, volume_name=s.volume_name,
                                        size_bytes=s.size_bytes) for s in sinks])
            log.info("prepared %d volume(s) for VM %s as %s/%s", len(sinks), vm.id, plan.target_namespace,
                     req.target_name)
        except ConverterError as err:
            result = _failed(req.plan_id, vm.id, "prepare", err)
        self._publish(event, result)

    def on_convert(self, event: event_pb2.Event, _msg: Message) -> None:
        req = event.convert_requested
        vm, plan = vm_from_proto(req.vm), plan_from_proto(req.plan)
        result: ProtoMessage
        try:
            target = self.target_for(plan)
            # Guest conversion can only run here on local images; on a cluster it would need a
            # conversion pod, which we do not have yet, so those guests keep compatibility mode.
            local = isinstance(target, LocalTarget)
            will_convert = local and diskformat.guest_conversion_available()
            options = manifests.MappingOptions(compatibility_mode=not will_convert)
            target_vm = manifests.build(vm, plan, req.target_name, options)
            converted = False
            if isinstance(target, LocalTarget):
                try:
                    converted = self._convert_local(target, target_vm)
                except ConverterError as err:
                    raise err.with_created(target.existing(target_vm)) from None
            if not converted:
                log.info("guest conversion skipped for VM %s (%s): VM created in compatibility mode "
                         "(SATA disks, E1000E NICs)", vm.id,
                         "virt-v2v-in-place not installed" if local else "not available on a Kubernetes target")
            created = target.create(target_vm)
            result = target_pb2.VmCreated(plan_id=req.plan_id, vm_id=vm.id, namespace=target_vm.namespace,
                                          name=target_vm.name, location=created.location,
                                          guest_converted=converted)
        except ConverterError as err:
            result = _failed(req.plan_id, vm.id, "convert", err)
        self._publish(event, result)

    def on_cleanup(self, event: event_pb2.Event, _msg: Message) -> None:
        req = event.target_cleanup_requested
        try:
            if not req.HasField("plan"):
                raise InvalidMappingError("the request carries no plan, so the target is unknown", field="plan",
                                          vm_id=req.vm_id, fix="send the plan spec with the cleanup request")
            plan = plan_from_proto(req.plan)
            ref = VmRef(plan.target_namespace, plan.name, req.vm_id, req.target_name)
            deleted = self.target_for(plan).cleanup(ref)
            log.info("cleanup of VM %s deleted %d object(s): %s", req.vm_id, len(deleted), ", ".join(deleted))
        except ConverterError as err:
            # No "cleaned" payload exists in the contract: success is logged, only failure published.
            self._publish(event, _failed(req.plan_id, req.vm_id, "cleanup", err))

    # --- helpers -------------------------------------------------------------------------------

    def _convert_local(self, target: LocalTarget, target_vm: manifests.TargetVm) -> bool:
        """Bring every image to the configured format, then run guest conversion if installed."""
        paths = target.image_paths(target_vm)
        for path in paths:
            last = [-10.0]

            def progress(percent: float, path: Path = path, last: list[float] = last) -> None:
                if percent - last[0] >= 10 or percent >= 100:
                    last[0] = percent
                    log.info("converting %s: %.0f %%", path.name, percent)

            if path.exists() and path.stat().st_size > 0:
                diskformat.ensure_format(path, self.settings.disk_format, progress)
        return diskformat.convert_guest(paths) if diskformat.guest_conversion_available() else False

    def _publish(self, cause: event_pb2.Event, payload: ProtoMessage) -> None:
        # Flushed before the handler returns, so the request's offset is committed only after
        # its result is on the broker.
        self.publisher.publish(events.child_of(cause, payload, source=SERVICE))
        self.publisher.flush()


def _failed(plan_id: str, vm_id: str, step: str, err: ConverterError) -> target_pb2.TargetFailed:
    log.warning("%s failed: %s", step, err)
    return target_pb2.TargetFailed(plan_id=plan_id, vm_id=vm_id or err.vm_id, step=step, field=err.field,
                                   reason=str(err), created_objects=list(err.created_objects))
