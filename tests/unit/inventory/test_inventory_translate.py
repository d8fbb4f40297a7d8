"""Property sets → inventory objects, fed with pyvmomi data objects built offline (what the
PropertyCollector returns), so no server is involved."""

from __future__ import annotations

from typing import Any

from pyVmomi import vim

from mtv.inventory.objects import Cluster, Datacenter, Datastore, Folder, Host, Network, NetworkKind
from mtv.inventory.raw import RawEntity
from mtv.inventory.translate import Tree, guest_ips, snapshot_count, translate, translate_all
from mtv.model import DiskMode, Firmware, PowerState, Vm

dev = vim.vm.device


def _cache(*entities: RawEntity) -> dict[str, RawEntity]:
    return {e.id: e for e in entities}


def _skeleton() -> list[RawEntity]:
    """DC0 with its folders, a cluster with one host, a standalone host, a datastore and three networks."""
    return [
        RawEntity("datacenter-1", "Datacenter", {"name": "DC0", "parent": vim.Folder("group-d1")}),
        RawEntity("group-v", "Folder", {"name": "vm", "parent": vim.Datacenter("datacenter-1")}),
        RawEntity("group-prod", "Folder", {"name": "prod", "parent": vim.Folder("group-v")}),
        RawEntity("group-h", "Folder", {"name": "host", "parent": vim.Datacenter("datacenter-1")}),
        RawEntity("group-n", "Folder", {"name": "network", "parent": vim.Datacenter("datacenter-1")}),
        RawEntity("group-s", "Folder", {"name": "datastore", "parent": vim.Datacenter("datacenter-1")}),
        RawEntity("domain-c1", "ClusterComputeResource", {"name": "C0", "parent": vim.Folder("group-h")}),
        RawEntity("domain-s1", "ComputeResource", {"name": "H9", "parent": vim.Folder("group-h")}),
        RawEntity("host-1", "HostSystem", {"name": "esx1", "parent": vim.ClusterComputeResource("domain-c1"),
                                           "runtime.inMaintenanceMode": True}),
        RawEntity("host-9", "HostSystem", {"name": "esx9", "parent": vim.ComputeResource("domain-s1")}),
        RawEntity("datastore-1", "Datastore", {"name": "DS1", "parent": vim.Folder("group-s"),
                                               "summary.capacity": 100 << 30, "summary.freeSpace": 40 << 30,
                                               "summary.type": "VMFS"}),
        RawEntity("network-1", "Network", {"name": "VM Network", "parent": vim.Folder("group-n")}),
        RawEntity("dvportgroup-7", "DistributedVirtualPortgroup", {
            "name": "prod-pg", "parent": vim.Folder("group-n"), "key": "dvportgroup-7",
            "config.defaultPortConfig": vim.dvs.VmwareDistributedVirtualSwitch.VmwarePortConfigPolicy(
                vlan=vim.dvs.VmwareDistributedVirtualSwitch.VlanIdSpec(vlanId=42))}),
        RawEntity("dvportgroup-8", "DistributedVirtualPortgroup", {
            "name": "DVS0-DVUplinks", "parent": vim.Folder("group-n"), "key": "dvportgroup-8",
            "config.uplink": True}),
    ]


def _devices() -> list[Any]:
    flat = dev.VirtualDisk.FlatVer2BackingInfo
    return [
        dev.ParaVirtualSCSIController(key=1000, busNumber=0),
        dev.VirtualAHCIController(key=15000, busNumber=0),
        dev.VirtualDisk(key=2000, controllerKey=1000, capacityInBytes=10 << 30, backing=flat(
            fileName="[DS1] web/web.vmdk", datastore=vim.Datastore("datastore-1"), diskMode="persistent",
            thinProvisioned=True, changeId="52 aa/7")),
        dev.VirtualDisk(key=2001, controllerKey=15000, capacityInKB=1024, backing=flat(
            fileName="[DS1] web/data.vmdk", datastore=vim.Datastore("datastore-1"),
            diskMode="independent_persistent", thinProvisioned=False, sharing="sharingMultiWriter")),
        dev.VirtualDisk(key=2002, controllerKey=1000, capacityInBytes=0,
                        backing=dev.VirtualDisk.RawDiskMappingVer1BackingInfo(
                            fileName="[DS1] web/rdm.vmdk", datastore=vim.Datastore("datastore-1"),
                            diskMode="persistent", compatibilityMode="physicalMode")),
        dev.VirtualVmxnet3(key=4000, macAddress="00:50:56:00:00:01",
                           backing=dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
                               port=vim.dvs.PortConnection(portgroupKey="dvportgroup-7", switchUuid="u"))),
        dev.VirtualE1000e(key=4001, macAddress="00:50:56:00:00:02",
                          backing=dev.VirtualEthernetCard.NetworkBackingInfo(
                              network=vim.Network("network-1"), deviceName="VM Network")),
        dev.VirtualUSBXHCIController(key=14000),
        dev.VirtualPCIPassthrough(key=13000),
    ]


def _vm_props(**overrides: Any) -> dict[str, Any]:
    snap = vim.vm.SnapshotTree
    props = {
        "name": "web-01", "parent": vim.Folder("group-prod"), "config.instanceUuid": "5012-abcd",
        "config.guestId": "rhel9_64Guest", "config.guestFullName": "Red Hat Enterprise Linux 9 (64-bit)",
        "config.firmware": "efi", "config.bootOptions.efiSecureBootEnabled": True,
        "config.hardware.numCPU": 8, "config.hardware.numCoresPerSocket": 4, "config.hardware.memoryMB": 4096,
        "config.hardware.device": _devices(), "config.changeTrackingEnabled": True,
        "runtime.powerState": "poweredOn", "runtime.host": vim.HostSystem("host-1"),
        "guest.ipAddress": "10.0.0.5", "guest.toolsRunningStatus": "guestToolsRunning",
        "guest.net": [vim.vm.GuestInfo.NicInfo(ipAddress=["10.0.0.5", "fe80::1"])],
        "snapshot": vim.vm.SnapshotInfo(rootSnapshotList=[snap(childSnapshotList=[snap(), snap()])]),
    }
    return {**props, **overrides}


def _vm(**overrides: Any) -> Vm:
    cache = _cache(*_skeleton(), RawEntity("vm-42", "VirtualMachine", _vm_props(**overrides)))
    result = translate(cache["vm-42"], Tree(cache))
    assert isinstance(result, Vm)
    return result


def test_vm_fields() -> None:
    vm = _vm()
    assert (vm.id, vm.name, vm.instance_uuid, vm.path) == ("vm-42", "web-01", "5012-abcd", "/DC0/vm/prod/web-01")
    assert vm.power_state is PowerState.ON
    assert (vm.guest_id, vm.guest_full_name) == ("rhel9_64Guest", "Red Hat Enterprise Linux 9 (64-bit)")
    assert vm.firmware is Firmware.EFI and vm.secure_boot
    assert (vm.cpu_sockets, vm.cores_per_socket, vm.memory_bytes) == (2, 4, 4 << 30)
    assert vm.guest_ips == ("10.0.0.5", "fe80::1")
    assert vm.cbt_enabled and vm.snapshot_count == 3 and vm.tools_status == "guestToolsRunning"
    assert (vm.host_id, vm.cluster_id, vm.folder_id, vm.datacenter_id) == (
        "host-1", "domain-c1", "group-prod", "datacenter-1")
    assert vm.has_passthrough_device and vm.has_usb_controller


def test_disks_keep_order_bus_mode_sharing_and_rdm() -> None:
    first, second, rdm = _vm().disks
    assert (first.key, first.file, first.capacity_bytes, first.bus, first.thin) == (
        2000, "[DS1] web/web.vmdk", 10 << 30, "scsi", True)
    assert (first.datastore_id, first.datastore_name, first.datacenter_path) == ("datastore-1", "DS1", "DC0")
    assert first.mode is DiskMode.PERSISTENT and first.sharing == "sharingNone" and first.change_id == "52 aa/7"
    assert (second.capacity_bytes, second.bus, second.thin) == (1 << 20, "sata", False)
    assert second.mode is DiskMode.INDEPENDENT_PERSISTENT and second.sharing == "sharingMultiWriter"
    assert rdm.rdm and rdm.capacity_bytes == 0 and not first.rdm


def test_disk_without_datastore_reference_falls_back_to_the_file_name() -> None:
    backing = dev.VirtualDisk.FlatVer2BackingInfo(fileName="[other] x/x.vmdk", diskMode="persistent")
    vm = _vm(**{"config.hardware.device": [dev.VirtualDisk(key=1, capacityInBytes=1, backing=backing)]})
    assert (vm.disks[0].datastore_id, vm.disks[0].datastore_name, vm.disks[0].bus) == ("", "other", "")
    nowhere = dev.VirtualDisk.FlatVer2BackingInfo(fileName="/vmfs/devices/x", diskMode="persistent")
    vm = _vm(**{"config.hardware.device": [dev.VirtualDisk(key=1, capacityInBytes=1, backing=nowhere)]})
    assert (vm.disks[0].datastore_name, vm.disks[0].datacenter_path) == ("", "")


def test_nics_resolve_distributed_and_standard_networks() -> None:
    dv, std = _vm().nics
    assert (dv.mac, dv.network_id, dv.network_name, dv.device_type) == (
        "00:50:56:00:00:01", "dvportgroup-7", "prod-pg", "vmxnet3")
    assert (std.network_id, std.network_name, std.device_type) == ("network-1", "VM Network", "e1000e")


def test_unset_properties_mean_defaults() -> None:
    """vcsim (and vCenter) omit unset properties from property sets."""
    cache = _cache(*_skeleton(), RawEntity("vm-1", "VirtualMachine", {"name": "bare"}))
    vm = translate(cache["vm-1"], Tree(cache))
    assert isinstance(vm, Vm)
    assert vm.path == "/bare" and vm.power_state is PowerState.UNKNOWN and vm.firmware is Firmware.BIOS
    assert (vm.disks, vm.nics, vm.guest_ips, vm.snapshot_count, vm.cpu_sockets) == ((), (), (), 0, 1)


def test_templates_uplinks_and_standalone_compute_are_not_published() -> None:
    cache = _cache(*_skeleton(), RawEntity("vm-t", "VirtualMachine", _vm_props(**{"config.template": True})))
    result = translate_all(cache)
    assert result["vm-t"] is None and result["dvportgroup-8"] is None and result["domain-s1"] is None


def test_other_kinds() -> None:
    result = translate_all(_cache(*_skeleton()))
    assert result["datacenter-1"] == Datacenter("datacenter-1", "DC0")
    assert result["group-prod"] == Folder("group-prod", "prod", "group-v", "/DC0/vm/prod")
    assert result["domain-c1"] == Cluster("domain-c1", "C0", "datacenter-1")
    assert result["host-1"] == Host("host-1", "esx1", "domain-c1", "datacenter-1", True)
    assert result["host-9"] == Host("host-9", "esx9", "", "datacenter-1", False)
    assert result["datastore-1"] == Datastore("datastore-1", "DS1", 100 << 30, 40 << 30, "VMFS", "datacenter-1")
    assert result["network-1"] == Network("network-1", "VM Network", NetworkKind.STANDARD, 0, "datacenter-1")
    assert result["dvportgroup-7"] == Network("dvportgroup-7", "prod-pg", NetworkKind.DISTRIBUTED_PORTGROUP, 42,
                                              "datacenter-1")


def test_guest_ips_prefer_ip_config_and_deduplicate() -> None:
    info = vim.vm.GuestInfo.NicInfo(ipAddress=["ignored"], ipConfig=vim.net.IpConfigInfo(ipAddress=[
        vim.net.IpConfigInfo.IpAddress(ipAddress="192.168.1.2", prefixLength=24)]))
    assert guest_ips([info], "192.168.1.2") == ("192.168.1.2",)
    assert guest_ips(None, None) == ()


def test_snapshot_count_walks_the_tree() -> None:
    tree = vim.vm.SnapshotTree
    info = vim.vm.SnapshotInfo(rootSnapshotList=[tree(childSnapshotList=[tree(childSnapshotList=[tree()])]), tree()])
    assert snapshot_count(info) == 4
    assert snapshot_count(None) == 0
