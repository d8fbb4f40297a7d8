"""Resolve a VM's NICs and disks through the plan's network and storage maps (pure, no I/O).

A source network or datastore matches a map entry by id or by name, as in Forklift's maps.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtv.converter import naming
from mtv.converter.errors import (
    InvalidMappingError,
    InvalidNameError,
    UnmappedNetworkError,
    UnmappedStorageError,
)
from mtv.model import Disk, NetworkDestination, NetworkMapping, Nic, PlanSpec, StorageMapping, Vm

MIB = 1024 * 1024
# Share of a Filesystem volume kept for the filesystem itself (CDI's default is 5.5 %; we keep
# 10 % so a full disk image always fits). Block volumes hold the image with no filesystem.
FILESYSTEM_OVERHEAD = 0.10
VOLUME_MODES = ("Filesystem", "Block")
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod")


@dataclass(frozen=True)
class MappedNic:
    index: int
    nic: Nic
    destination: NetworkDestination  # POD or MULTUS; ignored NICs are dropped before this
    multus_name: str = ""  # "namespace/name"


@dataclass(frozen=True)
class PlannedDisk:
    """One source disk and the volume that receives it."""

    index: int
    disk: Disk
    volume_name: str
    storage: StorageMapping
    # Requested volume size: capacity rounded up to MiB plus the filesystem overhead.
    size_bytes: int


def _network_label(nic: Nic) -> str:
    return f'network "{nic.network_name or nic.network_id}" ({nic.network_id})'


def _find_network(plan: PlanSpec, nic: Nic) -> NetworkMapping | None:
    for entry in plan.network_map:
        if entry.source and entry.source in (nic.network_id, nic.network_name):
            return entry
    return None


def map_nics(vm: Vm, plan: PlanSpec) -> list[MappedNic]:
    """NICs in source order, ignored ones dropped; at most one may use the pod network."""
    mapped: list[MappedNic] = []
    pod_nic: Nic | None = None
    for index, nic in enumerate(vm.nics):
        entry = _find_network(plan, nic)
        if entry is None:
            raise UnmappedNetworkError(
                f"{_network_label(nic)} is not mapped", field="network_map", vm_id=vm.id, vm_name=vm.name,
                fix=f"add a network_map entry with source {nic.network_id!r} (pod, multus or ignored)",
            )
        if entry.type is NetworkDestination.IGNORED:
            continue
        if entry.type is NetworkDestination.POD:
            if pod_nic is not None:
                raise InvalidMappingError(
                    f"{_network_label(nic)} and {_network_label(pod_nic)} both map to the pod network; "
                    "a KubeVirt VM has at most one pod network interface",
                    field=f"network_map[{entry.source}].type", vm_id=vm.id, vm_name=vm.name,
                    fix="map all but one of them to a multus network or to ignored",
                )
            pod_nic = nic
            mapped.append(MappedNic(index, nic, NetworkDestination.POD))
            continue
        if not entry.name or entry.name.count("/") > 1:
            raise InvalidMappingError(
                f"multus destination {entry.name!r} for {_network_label(nic)} is not 'namespace/name'",
                field=f"network_map[{entry.source}].name", vm_id=vm.id, vm_name=vm.name,
                fix="name the NetworkAttachmentDefinition as namespace/name",
            )
        mapped.append(MappedNic(index, nic, NetworkDestination.MULTUS, entry.name))
    return mapped


def _find_storage(plan: PlanSpec, disk: Disk) -> StorageMapping | None:
    for entry in plan.storage_map:
        if entry.source and entry.source in (disk.datastore_id, disk.datastore_name):
            return entry
    return None


def _check_storage(vm: Vm, entry: StorageMapping) -> None:
    prefix = f"storage_map[{entry.source}]"
    if not entry.storage_class:
        raise InvalidMappingError(
            "no storage class given", field=f"{prefix}.storage_class", vm_id=vm.id, vm_name=vm.name,
            fix="set storage_class to a StorageClass of the target cluster",
        )
    if entry.volume_mode not in VOLUME_MODES:
        raise InvalidMappingError(
            f"volume mode {entry.volume_mode!r} is not one of {', '.join(VOLUME_MODES)}",
            field=f"{prefix}.volume_mode", vm_id=vm.id, vm_name=vm.name, fix="use Filesystem or Block",
        )
    if entry.access_mode not in ACCESS_MODES:
        raise InvalidMappingError(
            f"access mode {entry.access_mode!r} is not one of {', '.join(ACCESS_MODES)}",
            field=f"{prefix}.access_mode", vm_id=vm.id, vm_name=vm.name, fix="use ReadWriteOnce or ReadWriteMany",
        )


def volume_size(capacity_bytes: int, volume_mode: str) -> int:
    """Capacity rounded up to MiB; a Filesystem volume also reserves FILESYSTEM_OVERHEAD of its size
    (size / (1 - overhead), as CDI computes it), again rounded up to MiB."""
    size = -(-capacity_bytes // MIB) * MIB
    if volume_mode == "Filesystem":
        size = -(-int(size / (1 - FILESYSTEM_OVERHEAD)) // MIB) * MIB
    return max(size, MIB)


def plan_disks(vm: Vm, plan: PlanSpec, target_name: str) -> list[PlannedDisk]:
    """Disks in source order with their storage entry, volume name and size."""
    planned: list[PlannedDisk] = []
    seen: dict[str, int] = {}
    for index, disk in enumerate(vm.disks):
        entry = _find_storage(plan, disk)
        if entry is None:
            store = disk.datastore_name or disk.datastore_id or "(none)"
            raise UnmappedStorageError(
                f'datastore "{store}" ({disk.datastore_id or "no id"}) of disk "{disk.file}" is not mapped',
                field="storage_map", vm_id=vm.id, vm_name=vm.name,
                fix=f"add a storage_map entry with source {disk.datastore_id or store!r} and a storage class",
            )
        _check_storage(vm, entry)
        name = _volume_name(vm, plan, target_name, index)
        if name in seen:
            raise InvalidNameError(
                f"disks {seen[name]} and {index} both get the volume name {name!r}",
                field="pvc_name_template", vm_id=vm.id, vm_name=vm.name,
                fix="include {{index}} in pvc_name_template",
            )
        seen[name] = index
        planned.append(PlannedDisk(index, disk, name, entry, volume_size(disk.capacity_bytes, entry.volume_mode)))
    return planned


def _volume_name(vm: Vm, plan: PlanSpec, target_name: str, index: int) -> str:
    try:
        name = naming.volume_name(plan.pvc_name_template, plan.name, target_name, vm.id, index)
    except KeyError as exc:
        raise InvalidNameError(
            f"unknown variable {{{{{exc.args[0]}}}}} in {plan.pvc_name_template!r}",
            field="pvc_name_template", vm_id=vm.id, vm_name=vm.name,
            fix=f"use only {', '.join('{{' + v + '}}' for v in naming.TEMPLATE_VARIABLES)}",
        ) from None
    if not naming.is_valid(name):
        raise InvalidNameError(
            f"{plan.pvc_name_template!r} gives {name!r} for disk {index}, not a valid DNS-1123 name",
            field="pvc_name_template", vm_id=vm.id, vm_name=vm.name,
            fix="make the template produce lowercase letters, digits and '-', e.g. {{plan}}-{{vm}}-disk-{{index}}",
        )
    return name
