"""Property sets → inventory objects. Pure: no network, no clock; unit-tested with constructed values.

Input is the raw cache (`RawEntity` per moref id, properties as pyvmomi returned them, absent when
unset). Device and backing types are recognised with `isinstance` on pyvmomi's data classes, which
can be built offline, so tests feed exactly what the PropertyCollector would.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pyVmomi import vim

from mtv.inventory.objects import Cluster, Datacenter, Datastore, Folder, Host, Item, Network, NetworkKind
from mtv.inventory.raw import RawEntity
from mtv.model import Disk, DiskMode, Firmware, Nic, PowerState, Vm

_dev = vim.vm.device
_POWER = {"poweredOn": PowerState.ON, "poweredOff": PowerState.OFF, "suspended": PowerState.SUSPENDED}
_MODE = {"persistent": DiskMode.PERSISTENT, "independent_persistent": DiskMode.INDEPENDENT_PERSISTENT,
         "independent_nonpersistent": DiskMode.INDEPENDENT_NONPERSISTENT, "nonpersistent": DiskMode.NONPERSISTENT,
         # Legacy modes (ESX 2) behave like non-persistent disks: changes are not kept.
         "undoable": DiskMode.NONPERSISTENT, "append": DiskMode.NONPERSISTENT}
# Most specific class first: VirtualE1000e is not a subclass of VirtualE1000, but keep the order safe.
_NIC_TYPES: tuple[tuple[type, str], ...] = (
    (_dev.VirtualVmxnet3Vrdma, "vmxnet3vrdma"), (_dev.VirtualVmxnet3, "vmxnet3"), (_dev.VirtualVmxnet2, "vmxnet2"),
    (_dev.VirtualVmxnet, "vmxnet"), (_dev.VirtualE1000e, "e1000e"), (_dev.VirtualE1000, "e1000"),
    (_dev.VirtualPCNet32, "pcnet32"), (_dev.VirtualSriovEthernetCard, "sriov"),
)
_BUS_TYPES: tuple[tuple[type, str], ...] = (
    (_dev.VirtualSCSIController, "scsi"), (_dev.VirtualNVMEController, "nvme"),
    (_dev.VirtualSATAController, "sata"), (_dev.VirtualIDEController, "ide"),
)
_PASSTHROUGH = (_dev.VirtualPCIPassthrough, _dev.VirtualSCSIPassthrough)
_USB = (_dev.VirtualUSBController, _dev.VirtualUSBXHCIController)
_DATASTORE_IN_FILE = re.compile(r"^\[([^\]]*)\]")


def moref(value: Any) -> str:
    """The moref id ("vm-42") of a pyvmomi managed object reference, "" for None."""
    return str(value._moId) if value is not None else ""


class Tree:
    """Names, parents and types of every cached entity: what translation needs to resolve references."""

    def __init__(self, cache: Mapping[str, RawEntity]) -> None:
        self.cache = cache
        self.dvpg_by_key = {e.props["key"]: e.id for e in cache.values()
                            if e.type == "DistributedVirtualPortgroup" and e.props.get("key")}

    def name(self, id_: str) -> str:
        entity = self.cache.get(id_)
        return str(entity.props.get("name", "")) if entity else ""

    def type(self, id_: str) -> str:
        entity = self.cache.get(id_)
        return entity.type if entity else ""

    def parent(self, id_: str) -> str:
        entity = self.cache.get(id_)
        return moref(entity.props.get("parent")) if entity else ""

    def ancestors(self, id_: str) -> list[str]:
        """Known ancestors, nearest first. The root folder is not in any container view, so it ends here."""
        out: list[str] = []
        current = self.parent(id_)
        while current and current in self.cache and current not in out:
            out.append(current)
            current = self.parent(current)
        return out

    def path(self, id_: str) -> str:
        """Inventory path like "/DC0/vm/folder/name", as Forklift and govc print it."""
        names = [self.name(a) for a in reversed(self.ancestors(id_))]
        return "/" + "/".join([*names, self.name(id_)])

    def datacenter(self, id_: str) -> str:
        return next((a for a in self.ancestors(id_) if self.type(a) == "Datacenter"), "")

    def datacenter_path(self, id_: str) -> str:
        """The datacenter's path without the leading "/" — the `dcPath` of /folder URLs."""
        dc = self.datacenter(id_)
        return self.path(dc)[1:] if dc else ""


def translate(entity: RawEntity, tree: Tree) -> Item | None:
    """The inventory object for `entity`, or None for objects we do not publish (templates,
    standalone compute resources, DVS uplink portgroups)."""
    handler = _BY_TYPE.get(entity.type)
    return handler(entity, tree) if handler else None


def translate_all(cache: Mapping[str, RawEntity], ids: Iterable[str] | None = None) -> dict[str, Item | None]:
    tree = Tree(cache)
    return {i: translate(cache[i], tree) for i in (cache if ids is None else ids) if i in cache}


def datacenter(e: RawEntity, tree: Tree) -> Datacenter:
    return Datacenter(id=e.id, name=str(e.props.get("name", "")))


def folder(e: RawEntity, tree: Tree) -> Folder:
    return Folder(id=e.id, name=str(e.props.get("name", "")), parent_id=tree.parent(e.id), path=tree.path(e.id))


def cluster(e: RawEntity, tree: Tree) -> Cluster:
    return Cluster(id=e.id, name=str(e.props.get("name", "")), datacenter_id=tree.datacenter(e.id))


def host(e: RawEntity, tree: Tree) -> Host:
    parent = tree.parent(e.id)
    return Host(id=e.id, name=str(e.props.get("name", "")),
                cluster_id=parent if tree.type(parent) == "ClusterComputeResource" else "",
                datacenter_id=tree.datacenter(e.id),
                in_maintenance_mode=bool(e.props.get("runtime.inMaintenanceMode", False)))


def datastore(e: RawEntity, tree: Tree) -> Datastore:
    p = e.props
    return Datastore(id=e.id, name=str(p.get("name", "")), capacity_bytes=int(p.get("summary.capacity") or 0),
                     free_bytes=int(p.get("summary.freeSpace") or 0), type=str(p.get("summary.type", "")),
                     datacenter_id=tree.datacenter(e.id))


def network(e: RawEntity, tree: Tree) -> Network | None:
    p = e.props
    kind = {"DistributedVirtualPortgroup": NetworkKind.DISTRIBUTED_PORTGROUP,
            "OpaqueNetwork": NetworkKind.OPAQUE}.get(e.type, NetworkKind.STANDARD)
    if kind is NetworkKind.DISTRIBUTED_PORTGROUP and p.get("config.uplink"):
        return None  # the switch's uplink portgroup carries no VM traffic and cannot be mapped
    return Network(id=e.id, name=str(p.get("name", "")), kind=kind, vlan=_vlan(p.get("config.defaultPortConfig")),
                   datacenter_id=tree.datacenter(e.id))


def _vlan(port_config: Any) -> int:
    vlan_id = getattr(getattr(port_config, "vlan", None), "vlanId", None)
    # A trunk (a list of ranges) or a private VLAN has no single id; 0 means "untagged/none".
    return vlan_id if isinstance(vlan_id, int) else 0


def vm(e: RawEntity, tree: Tree) -> Vm | None:
    p = e.props
    if p.get("config.template"):
        return None  # templates cannot be migrated; Forklift lists them separately
    devices = list(p.get("config.hardware.device") or [])
    cpus = int(p.get("config.hardware.numCPU") or 1)
    cores = max(int(p.get("config.hardware.numCoresPerSocket") or 1), 1)
    host_id = moref(p.get("runtime.host"))
    host_parent = tree.parent(host_id)
    return Vm(
        id=e.id, name=str(p.get("name", "")), instance_uuid=str(p.get("config.instanceUuid") or ""),
        path=tree.path(e.id), power_state=_POWER.get(str(p.get("runtime.powerState")), PowerState.UNKNOWN),
        guest_id=str(p.get("config.guestId") or ""), guest_full_name=str(p.get("config.guestFullName") or ""),
        firmware=Firmware.EFI if p.get("config.firmware") == "efi" else Firmware.BIOS,
        secure_boot=bool(p.get("config.bootOptions.efiSecureBootEnabled")),
        cpu_sockets=max(cpus // cores, 1), cores_per_socket=cores,
        memory_bytes=int(p.get("config.hardware.memoryMB") or 0) << 20,
        disks=disks(devices, tree, tree.datacenter_path(e.id)), nics=nics(devices, tree),
        guest_ips=guest_ips(p.get("guest.net"), p.get("guest.ipAddress")),
        cbt_enabled=bool(p.get("config.changeTrackingEnabled")), snapshot_count=snapshot_count(p.get("snapshot")),
        tools_status=str(p.get("guest.toolsRunningStatus") or p.get("guest.toolsStatus") or ""),
        host_id=host_id, cluster_id=host_parent if tree.type(host_parent) == "ClusterComputeResource" else "",
        folder_id=tree.parent(e.id), datacenter_id=tree.datacenter(e.id),
        has_passthrough_device=any(isinstance(d, _PASSTHROUGH) for d in devices),
        has_usb_controller=any(isinstance(d, _USB) for d in devices),
    )


def disks(devices: list[Any], tree: Tree, datacenter_path: str = "") -> tuple[Disk, ...]:
    """Virtual disks in device order, each with its controller's bus."""
    bus_by_key = {d.key: _bus(d) for d in devices if isinstance(d, vim.vm.device.VirtualController)}
    out = []
    for d in devices:
        if not isinstance(d, _dev.VirtualDisk):
            continue
        backing = d.backing
        file_name = str(getattr(backing, "fileName", "") or "")
        ds_id = moref(getattr(backing, "datastore", None))
        match = _DATASTORE_IN_FILE.match(file_name)
        ds_name = tree.name(ds_id) if ds_id else (match.group(1) if match else "")
        capacity = d.capacityInBytes if d.capacityInBytes is not None else (d.capacityInKB or 0) * 1024
        out.append(Disk(
            key=int(d.key), file=file_name, capacity_bytes=int(capacity), datastore_id=ds_id,
            datastore_name=ds_name, datacenter_path=datacenter_path if ds_name else "",
            thin=bool(getattr(backing, "thinProvisioned", False)),
            mode=_MODE.get(str(getattr(backing, "diskMode", "") or "persistent"), DiskMode.PERSISTENT),
            sharing=str(getattr(backing, "sharing", None) or "sharingNone"),
            bus=bus_by_key.get(d.controllerKey, ""),
            rdm=isinstance(backing, _dev.VirtualDisk.RawDiskMappingVer1BackingInfo),
            change_id=str(getattr(backing, "changeId", None) or ""),
        ))
    return tuple(out)


def _bus(controller: Any) -> str:
    return next((name for cls, name in _BUS_TYPES if isinstance(controller, cls)), "")


def nics(devices: list[Any], tree: Tree) -> tuple[Nic, ...]:
    out = []
    for d in devices:
        if not isinstance(d, _dev.VirtualEthernetCard):
            continue
        backing = d.backing
        if isinstance(backing, _dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
            key = getattr(backing.port, "portgroupKey", "") or ""
            network_id = tree.dvpg_by_key.get(key, key)
            name = tree.name(network_id)
        elif isinstance(backing, _dev.VirtualEthernetCard.OpaqueNetworkBackingInfo):
            network_id, name = "", str(backing.opaqueNetworkId or "")
        else:
            network_id = moref(getattr(backing, "network", None))
            name = tree.name(network_id) or str(getattr(backing, "deviceName", "") or "")
        device_type = next((n for cls, n in _NIC_TYPES if isinstance(d, cls)), type(d).__name__)
        out.append(Nic(mac=str(d.macAddress or ""), network_id=network_id, device_type=device_type,
                       network_name=name))
    return tuple(out)


def guest_ips(net: Any, primary: Any = None) -> tuple[str, ...]:
    """Addresses the guest reports, primary first, without duplicates."""
    ips: list[str] = [str(primary)] if primary else []
    for info in net or []:
        config = getattr(info, "ipConfig", None)
        addresses = [a.ipAddress for a in (getattr(config, "ipAddress", None) or [])] or list(info.ipAddress or [])
        ips.extend(str(a) for a in addresses if a)
    return tuple(dict.fromkeys(ips))


def snapshot_count(info: Any) -> int:
    stack = list(getattr(info, "rootSnapshotList", None) or [])
    count = 0
    while stack:
        node = stack.pop()
        count += 1
        stack.extend(node.childSnapshotList or [])
    return count


_BY_TYPE = {
    "Datacenter": datacenter, "Folder": folder, "ClusterComputeResource": cluster, "HostSystem": host,
    "Datastore": datastore, "Network": network, "DistributedVirtualPortgroup": network, "OpaqueNetwork": network,
    "VirtualMachine": vm,
}
