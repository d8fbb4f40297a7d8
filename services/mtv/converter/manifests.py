"""Source VM + plan -> KubeVirt `VirtualMachine` and one CDI `DataVolume` per disk (pure, no I/O).

The objects are plain dicts, exactly what is applied to a cluster or written as YAML, so golden
tests compare them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mtv.converter import naming
from mtv.converter.errors import InvalidMappingError, InvalidNameError
from mtv.converter.mapping import MIB, MappedNic, PlannedDisk, map_nics, plan_disks
from mtv.model import Firmware, NetworkDestination, PlanSpec, PowerState, TargetPowerState, Vm

Manifest = dict[str, Any]

FIELD_MANAGER = "mtv-converter"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PLAN = "mtv.konveyor.io/plan"
LABEL_VM_ID = "mtv.konveyor.io/vm-id"
ANNOTATION_SOURCE_NAME = "mtv.konveyor.io/source-vm-name"
ANNOTATION_SOURCE_ID = "mtv.konveyor.io/source-vm-id"
ANNOTATION_DISK_KEY = "mtv.konveyor.io/disk-key"
ANNOTATION_SOURCE_FILE = "mtv.konveyor.io/source-file"
# Set by the local target: where the disk image sits, relative to the manifest directory.
ANNOTATION_DISK_IMAGE = "mtv.konveyor.io/disk-image"
ANNOTATION_BIND_IMMEDIATE = "cdi.kubevirt.io/storage.bind.immediate.requested"

VM_API = ("kubevirt.io", "v1", "virtualmachines")
DV_API = ("cdi.kubevirt.io", "v1beta1", "datavolumes")


@dataclass(frozen=True)
class MappingOptions:
    """Choices that are not part of the plan.

    compatibility_mode: the guest was not converted (no virtio drivers installed), so disks use
    SATA and NICs E1000E, which every guest OS drives out of the box (Forklift's
    useCompatibilityMode).
    """

    compatibility_mode: bool = False
    extra_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetVm:
    """Everything the target creates for one VM."""

    vm_id: str
    vm_name: str
    namespace: str
    name: str
    disks: tuple[PlannedDisk, ...]
    datavolumes: tuple[Manifest, ...]
    virtual_machine: Manifest

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.virtual_machine["metadata"]["labels"])


def labels_for(plan_name: str, vm_id: str) -> dict[str, str]:
    """Our ownership labels: cleanup deletes only objects carrying all three."""
    return {
        LABEL_MANAGED_BY: FIELD_MANAGER,
        LABEL_PLAN: naming.label_value(plan_name),
        LABEL_VM_ID: naming.label_value(vm_id),
    }


def build(vm: Vm, plan: PlanSpec, target_name: str, options: MappingOptions | None = None) -> TargetVm:
    """Map `vm` into `plan.target_namespace` under `target_name` (already chosen by the planner)."""
    options = options or MappingOptions()
    _check_names(vm, plan, target_name)
    if vm.memory_bytes <= 0:
        raise InvalidMappingError("the VM has no memory size", field="vm.memory_bytes", vm_id=vm.id,
                                  vm_name=vm.name, fix="refresh the inventory; a VM always has memory")
    nics = map_nics(vm, plan)
    disks = plan_disks(vm, plan, target_name)
    labels = {**labels_for(plan.name, vm.id), **options.extra_labels}
    dvs = tuple(datavolume(d, plan.target_namespace, labels) for d in disks)
    manifest = virtual_machine(vm, plan, target_name, disks, nics, labels, options)
    return TargetVm(vm.id, vm.name, plan.target_namespace, target_name, tuple(disks), dvs, manifest)


def _check_names(vm: Vm, plan: PlanSpec, target_name: str) -> None:
    if not naming.is_valid_label(plan.target_namespace):
        raise InvalidNameError(
            f"namespace {plan.target_namespace!r} is not a valid DNS-1123 label",
            field="target_namespace", vm_id=vm.id, vm_name=vm.name,
            fix="use lowercase letters, digits and '-', at most 63 characters",
        )
    if not naming.is_valid(target_name):
        raise InvalidNameError(
            f"target name {target_name!r} is not a valid DNS-1123 name of at most 63 characters",
            field="target_name", vm_id=vm.id, vm_name=vm.name,
            fix="let the planner derive it (naming.target_name) or set a valid vms[].target_name",
        )


def datavolume(disk: PlannedDisk, namespace: str, labels: Mapping[str, str]) -> Manifest:
    """One DataVolume that CDI fills from an upload.

    Source `upload: {}` rather than `blank: {}`: we write the disk ourselves, and with `upload` CDI
    keeps the volume waiting for exactly that (an upload server behind the upload proxy, which
    also converts qcow2/vmdk), while `blank` would format an empty image and mark the volume
    ready before any byte of the guest arrived. `spec.pvc` rather than `spec.storage`, because the
    size already includes the filesystem overhead and `storage` would have CDI add it again.
    """
    return {
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": {
            "name": disk.volume_name,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": {
                ANNOTATION_DISK_KEY: str(disk.disk.key),
                ANNOTATION_SOURCE_FILE: disk.disk.file,
                # Bind the PVC now: on a WaitForFirstConsumer StorageClass CDI would otherwise wait for a
                # pod using the volume, which never comes before the upload (virtctl's --force-bind).
                ANNOTATION_BIND_IMMEDIATE: "true",
            },
        },
        "spec": {
            "source": {"upload": {}},
            "pvc": {
                "storageClassName": disk.storage.storage_class,
                "volumeMode": disk.storage.volume_mode,
                "accessModes": [disk.storage.access_mode],
                "resources": {"requests": {"storage": _quantity(disk.size_bytes)}},
            },
        },
    }


def run_strategy(plan: PlanSpec, vm: Vm) -> str:
    if plan.target_power_state is TargetPowerState.ON:
        return "Always"
    if plan.target_power_state is TargetPowerState.OFF:
        return "Halted"
    return "Always" if vm.power_state is PowerState.ON else "Halted"


def virtual_machine(
    vm: Vm,
    plan: PlanSpec,
    name: str,
    disks: list[PlannedDisk],
    nics: list[MappedNic],
    labels: Mapping[str, str],
    options: MappingOptions,
) -> Manifest:
    interfaces, networks = _networks(nics, options)
    domain: Manifest = {
        "cpu": {"sockets": vm.cpu_sockets, "cores": vm.cores_per_socket, "threads": 1},
        "memory": {"guest": _quantity(vm.memory_bytes)},
        "firmware": _firmware(vm),
        "devices": {"disks": _disks(disks, options), "interfaces": interfaces},
    }
    if vm.firmware is Firmware.EFI and vm.secure_boot:
        # KubeVirt refuses secure boot without SMM (System Management Mode) enabled.
        domain["features"] = {"smm": {"enabled": True}}
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {
            "name": name,
            "namespace": plan.target_namespace,
            "labels": dict(labels),
            "annotations": {ANNOTATION_SOURCE_NAME: vm.name, ANNOTATION_SOURCE_ID: vm.id},
        },
        "spec": {
            "runStrategy": run_strategy(plan, vm),
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "domain": domain,
                    "networks": networks,
                    "volumes": [{"name": f"disk-{d.index}", "dataVolume": {"name": d.volume_name}} for d in disks],
                },
            },
        },
    }


def _firmware(vm: Vm) -> Manifest:
    if vm.firmware is Firmware.EFI:
        bootloader: Manifest = {"efi": {"secureBoot": vm.secure_boot}}
    else:
        bootloader = {"bios": {}}
    firmware: Manifest = {"bootloader": bootloader}
    if vm.instance_uuid:
        # Guests (and their licenses) read the SMBIOS serial; keep the one they had on vSphere.
        firmware["serial"] = vm.instance_uuid
    return firmware


def _disks(disks: list[PlannedDisk], options: MappingOptions) -> list[Manifest]:
    bus = "sata" if options.compatibility_mode else "virtio"
    out: list[Manifest] = []
    for d in disks:
        entry: Manifest = {"name": f"disk-{d.index}", "disk": {"bus": bus}}
        if d.index == 0:
            entry["bootOrder"] = 1  # the source's first disk is its boot disk
        out.append(entry)
    return out


def _networks(nics: list[MappedNic], options: MappingOptions) -> tuple[list[Manifest], list[Manifest]]:
    model = "e1000e" if options.compatibility_mode else "virtio"
    interfaces: list[Manifest] = []
    networks: list[Manifest] = []
    for mapped in nics:
        name = f"net-{mapped.index}"
        iface: Manifest = {"name": name, "model": model}
        if mapped.nic.mac:
            iface["macAddress"] = mapped.nic.mac
        if mapped.destination is NetworkDestination.POD:
            # masquerade is the binding KubeVirt supports on the pod network (bridge needs a secondary one).
            iface["masquerade"] = {}
            networks.append({"name": name, "pod": {}})
        else:
            iface["bridge"] = {}
            networks.append({"name": name, "multus": {"networkName": mapped.multus_name}})
        interfaces.append(iface)
    return interfaces, networks


def _quantity(size: int) -> str:
    """A Kubernetes quantity: whole Gi or Mi when exact, else bytes."""
    if size % (1024 * MIB) == 0:
        return f"{size // (1024 * MIB)}Gi"
    if size % MIB == 0:
        return f"{size // MIB}Mi"
    return str(size)
