"""The saga's commands as `mtv.v1` payloads: the one place that knows how a request is filled in.

Disk sources are read over vSphere's /folder endpoint, which serves the flat extent file:
`[LocalDS_0] vm1/vm1.vmdk` (the descriptor) is read as `vm1/vm1-flat.vmdk` on datastore LocalDS_0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from google.protobuf.message import Message

from mtv import topics
from mtv.model import Disk, PlanSpec, PlanVm, plan_to_proto, vm_to_proto
from mtv.planner.records import VmRecord
from mtv.planner.vm_events import (
    CancelTransfer,
    Command,
    PowerAction,
    RequestCleanup,
    RequestConvert,
    RequestPower,
    RequestPrepare,
    RequestTransfer,
    parse_sink,
)
from mtv.v1 import inventory_pb2, plan_pb2, target_pb2, transfer_pb2

_BACKING = re.compile(r"^\[(?P<ds>[^\]]+)\]\s*(?P<path>.+)$")
_POWER_PB = {PowerAction.SHUTDOWN_GUEST: inventory_pb2.POWER_ACTION_SHUTDOWN_GUEST,
             PowerAction.POWER_OFF: inventory_pb2.POWER_ACTION_POWER_OFF,
             PowerAction.POWER_ON: inventory_pb2.POWER_ACTION_POWER_ON}
POWER_FROM_PB = {v: k for k, v in _POWER_PB.items()}


@dataclass(frozen=True)
class CdiUpload:
    """How transfer workers reach the CDI upload proxy of a Kubernetes target (planner settings)."""

    url: str = ""
    token_ref: str = ""
    ca_pem: str = ""
    insecure_skip_verify: bool = False


def flat_file(disk: Disk) -> tuple[str, str]:
    """(datastore name, path of the flat extent) of a disk's backing "[ds] dir/name.vmdk"."""
    match = _BACKING.match(disk.file)
    if match is None:
        raise ValueError(f"disk {disk.key}: backing file {disk.file!r} is not \"[datastore] path.vmdk\"")
    path = match["path"]
    if path.endswith(".vmdk") and not path.endswith("-flat.vmdk"):
        path = path[: -len(".vmdk")] + "-flat.vmdk"
    return disk.datastore_name or match["ds"], path


def _prepared(rec: VmRecord) -> list[target_pb2.PreparedDisk]:
    return [target_pb2.PreparedDisk(disk_key=d.key, sink_uri=d.sink_uri, volume_name=d.volume_name, size_bytes=d.size)
            for d in rec.disks]


def transfer_request(rec: VmRecord, key: int, attempt: int, cdi: CdiUpload,
                     context: str = "") -> transfer_pb2.DiskTransferRequested:
    """The request for one disk; `context` is the plan's kubeconfig context for an upload sink."""
    assert rec.vm is not None
    disk = next(d for d in rec.vm.disks if d.key == key)
    state = rec.disk(key)
    assert state is not None, "TRANSFER_DISKS is entered with a sink for every disk"
    datastore, path = flat_file(disk)
    source = transfer_pb2.DiskSource(vsphere=transfer_pb2.VsphereDatastoreSource(
        provider_id=rec.provider_id, datacenter_path=disk.datacenter_path, datastore_name=datastore, path=path))
    sink_ref = parse_sink(state.sink_uri)
    assert sink_ref is not None, "prepared() refuses unusable sinks"
    if sink_ref.is_upload:
        sink = transfer_pb2.DiskSink(cdi_upload=transfer_pb2.CdiUploadSink(
            url=cdi.url, token_ref=cdi.token_ref, namespace=sink_ref.namespace, pvc_name=sink_ref.pvc_name,
            ca_pem=cdi.ca_pem, insecure_skip_verify=cdi.insecure_skip_verify, context=context))
    else:
        sink = transfer_pb2.DiskSink(file=transfer_pb2.LocalFileSink(path=sink_ref.path))
    return transfer_pb2.DiskTransferRequested(
        transfer_id=topics.transfer_id(rec.plan_id, rec.vm_id, key), plan_id=rec.plan_id, vm_id=rec.vm_id,
        disk_key=key, source=source, sink=sink, size_bytes=disk.capacity_bytes, attempt=attempt)


def payload(cmd: Command, rec: VmRecord, spec: PlanSpec, cdi: CdiUpload) -> Message:
    """The protobuf payload of one command of `rec`'s saga."""
    if isinstance(cmd, RequestPower):
        return inventory_pb2.SourcePowerRequested(provider_id=rec.provider_id, vm_id=rec.vm_id,
                                                  action=_POWER_PB[cmd.action], plan_id=rec.plan_id)
    if isinstance(cmd, RequestTransfer):
        return transfer_request(rec, cmd.key, cmd.attempt, cdi, spec.target_context)
    if isinstance(cmd, CancelTransfer):
        return transfer_pb2.DiskTransferCancelRequested(
            transfer_id=topics.transfer_id(rec.plan_id, rec.vm_id, cmd.key), reason=cmd.reason)
    if isinstance(cmd, RequestCleanup):
        return target_pb2.TargetCleanupRequested(plan_id=rec.plan_id, vm_id=rec.vm_id, plan=_plan_pb(spec, rec),
                                                 target_name=rec.target_name)
    assert rec.vm is not None
    if isinstance(cmd, RequestPrepare):
        return target_pb2.TargetPrepareRequested(plan_id=rec.plan_id, vm=vm_to_proto(rec.vm), plan=_plan_pb(spec, rec),
                                                 target_name=rec.target_name)
    if isinstance(cmd, RequestConvert):
        return target_pb2.ConvertRequested(plan_id=rec.plan_id, vm=vm_to_proto(rec.vm), plan=_plan_pb(spec, rec),
                                           target_name=rec.target_name, disks=_prepared(rec))
    raise TypeError(f"unknown command {cmd!r}")


def _plan_pb(spec: PlanSpec, rec: VmRecord) -> plan_pb2.PlanSpec:
    """The plan as it applies to this VM: every setting, but only this VM in `vms` (a 1,000-VM list in
    each of 3,000 requests would be most of their bytes)."""
    return plan_to_proto(replace(spec, vms=(PlanVm(id=rec.vm_id, name=rec.name, target_name=rec.target_name),)))
