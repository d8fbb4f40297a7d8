"""Plain domain data shared by the services: source VMs and plan specs.

Protobuf stays at the edges: adapters convert with `*_from_proto` / `*_to_proto`, and the
domain logic (concerns, validation, naming, manifest building, the saga) works on these frozen
dataclasses, which are easy to build in tests and compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mtv.v1 import common_pb2, inventory_pb2, plan_pb2


class PowerState(Enum):
    UNKNOWN = "unknown"
    ON = "on"
    OFF = "off"
    SUSPENDED = "suspended"


class Firmware(Enum):
    BIOS = "bios"
    EFI = "efi"


class DiskMode(Enum):
    PERSISTENT = "persistent"
    INDEPENDENT_PERSISTENT = "independent_persistent"
    INDEPENDENT_NONPERSISTENT = "independent_nonpersistent"
    NONPERSISTENT = "nonpersistent"

    @property
    def independent(self) -> bool:
        return self.value.startswith("independent")


class ConcernCategory(Enum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFORMATION = "information"


@dataclass(frozen=True)
class Concern:
    id: str
    category: ConcernCategory
    label: str
    assessment: str


@dataclass(frozen=True)
class Disk:
    key: int
    file: str  # "[LocalDS_0] vm1/vm1.vmdk"
    capacity_bytes: int
    datastore_id: str = ""
    datastore_name: str = ""
    datacenter_path: str = ""
    thin: bool = True
    mode: DiskMode = DiskMode.PERSISTENT
    sharing: str = "sharingNone"
    bus: str = "scsi"
    rdm: bool = False
    change_id: str = ""


@dataclass(frozen=True)
class Nic:
    mac: str
    network_id: str
    device_type: str = "vmxnet3"
    network_name: str = ""


@dataclass(frozen=True)
class Vm:
    id: str
    name: str
    instance_uuid: str = ""
    path: str = ""
    power_state: PowerState = PowerState.UNKNOWN
    guest_id: str = ""
    guest_full_name: str = ""
    firmware: Firmware = Firmware.BIOS
    secure_boot: bool = False
    cpu_sockets: int = 1
    cores_per_socket: int = 1
    memory_bytes: int = 0
    disks: tuple[Disk, ...] = ()
    nics: tuple[Nic, ...] = ()
    guest_ips: tuple[str, ...] = ()
    cbt_enabled: bool = False
    snapshot_count: int = 0
    tools_status: str = ""
    host_id: str = ""
    cluster_id: str = ""
    folder_id: str = ""
    datacenter_id: str = ""
    has_passthrough_device: bool = False
    has_usb_controller: bool = False
    concerns: tuple[Concern, ...] = ()


class NetworkDestination(Enum):
    POD = "pod"
    MULTUS = "multus"
    IGNORED = "ignored"


@dataclass(frozen=True)
class NetworkMapping:
    source: str  # network id or name
    type: NetworkDestination
    name: str = ""  # "namespace/name" for MULTUS


@dataclass(frozen=True)
class StorageMapping:
    source: str  # datastore id or name
    storage_class: str
    volume_mode: str = "Filesystem"
    access_mode: str = "ReadWriteOnce"


class TargetPowerState(Enum):
    AUTO = "auto"  # same as the source had
    ON = "on"
    OFF = "off"


class TargetKind(Enum):
    LOCAL = "local"
    KUBERNETES = "kubernetes"


@dataclass(frozen=True)
class PlanVm:
    id: str = ""
    name: str = ""
    target_name: str = ""


DEFAULT_PVC_NAME_TEMPLATE = "{{plan}}-{{vm}}-disk-{{index}}"
DEFAULT_MAX_IN_FLIGHT = 10


@dataclass(frozen=True)
class PlanSpec:
    name: str
    source_provider: str
    target_namespace: str
    vms: tuple[PlanVm, ...]
    network_map: tuple[NetworkMapping, ...] = ()
    storage_map: tuple[StorageMapping, ...] = ()
    target_kind: TargetKind = TargetKind.LOCAL
    target_path: str = ""
    target_context: str = ""
    description: str = ""
    migration_type: str = "cold"
    target_power_state: TargetPowerState = TargetPowerState.AUTO
    pvc_name_template: str = DEFAULT_PVC_NAME_TEMPLATE
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT


# --- protobuf edges -----------------------------------------------------------------------------

_POWER = {common_pb2.POWER_STATE_ON: PowerState.ON, common_pb2.POWER_STATE_OFF: PowerState.OFF,
          common_pb2.POWER_STATE_SUSPENDED: PowerState.SUSPENDED}
_POWER_PB = {v: k for k, v in _POWER.items()}
_CATEGORY = {common_pb2.CONCERN_CATEGORY_CRITICAL: ConcernCategory.CRITICAL,
             common_pb2.CONCERN_CATEGORY_WARNING: ConcernCategory.WARNING,
             common_pb2.CONCERN_CATEGORY_INFORMATION: ConcernCategory.INFORMATION}
_CATEGORY_PB = {v: k for k, v in _CATEGORY.items()}
_MODE = {inventory_pb2.DISK_MODE_PERSISTENT: DiskMode.PERSISTENT,
         inventory_pb2.DISK_MODE_INDEPENDENT_PERSISTENT: DiskMode.INDEPENDENT_PERSISTENT,
         inventory_pb2.DISK_MODE_INDEPENDENT_NONPERSISTENT: DiskMode.INDEPENDENT_NONPERSISTENT,
         inventory_pb2.DISK_MODE_NONPERSISTENT: DiskMode.NONPERSISTENT}
_MODE_PB = {v: k for k, v in _MODE.items()}
_NET = {plan_pb2.NETWORK_DESTINATION_TYPE_POD: NetworkDestination.POD,
        plan_pb2.NETWORK_DESTINATION_TYPE_MULTUS: NetworkDestination.MULTUS,
        plan_pb2.NETWORK_DESTINATION_TYPE_IGNORED: NetworkDestination.IGNORED}
_NET_PB = {v: k for k, v in _NET.items()}
_TPS = {plan_pb2.TARGET_POWER_STATE_AUTO: TargetPowerState.AUTO, plan_pb2.TARGET_POWER_STATE_ON: TargetPowerState.ON,
        plan_pb2.TARGET_POWER_STATE_OFF: TargetPowerState.OFF}
_TPS_PB = {v: k for k, v in _TPS.items()}
_KIND = {plan_pb2.TARGET_KIND_LOCAL: TargetKind.LOCAL, plan_pb2.TARGET_KIND_KUBERNETES: TargetKind.KUBERNETES}
_KIND_PB = {v: k for k, v in _KIND.items()}


def concern_from_proto(c: common_pb2.Concern) -> Concern:
    return Concern(c.id, _CATEGORY.get(c.category, ConcernCategory.INFORMATION), c.label, c.assessment)


def concern_to_proto(c: Concern) -> common_pb2.Concern:
    return common_pb2.Concern(id=c.id, category=_CATEGORY_PB[c.category], label=c.label, assessment=c.assessment)


def vm_from_proto(p: inventory_pb2.Vm) -> Vm:
    return Vm(
        id=p.id, name=p.name, instance_uuid=p.instance_uuid, path=p.path,
        power_state=_POWER.get(p.power_state, PowerState.UNKNOWN), guest_id=p.guest_id,
        guest_full_name=p.guest_full_name,
        firmware=Firmware.EFI if p.firmware == inventory_pb2.FIRMWARE_EFI else Firmware.BIOS,
        secure_boot=p.secure_boot, cpu_sockets=p.cpu_sockets or 1, cores_per_socket=p.cores_per_socket or 1,
        memory_bytes=p.memory_bytes,
        disks=tuple(
            Disk(key=d.key, file=d.file, capacity_bytes=d.capacity_bytes, datastore_id=d.datastore_id,
                 datastore_name=d.datastore_name, datacenter_path=d.datacenter_path, thin=d.thin,
                 mode=_MODE.get(d.mode, DiskMode.PERSISTENT), sharing=d.sharing or "sharingNone",
                 bus=d.bus or "scsi", rdm=d.rdm, change_id=d.change_id)
            for d in p.disks
        ),
        nics=tuple(Nic(mac=n.mac, network_id=n.network_id, device_type=n.device_type,
                       network_name=n.network_name) for n in p.nics),
        guest_ips=tuple(p.guest_ips), cbt_enabled=p.cbt_enabled, snapshot_count=p.snapshot_count,
        tools_status=p.tools_status, host_id=p.host_id, cluster_id=p.cluster_id, folder_id=p.folder_id,
        datacenter_id=p.datacenter_id, has_passthrough_device=p.has_passthrough_device,
        has_usb_controller=p.has_usb_controller, concerns=tuple(concern_from_proto(c) for c in p.concerns),
    )


def vm_to_proto(v: Vm) -> inventory_pb2.Vm:
    return inventory_pb2.Vm(
        id=v.id, name=v.name, instance_uuid=v.instance_uuid, path=v.path,
        power_state=_POWER_PB.get(v.power_state, common_pb2.POWER_STATE_UNSPECIFIED), guest_id=v.guest_id,
        guest_full_name=v.guest_full_name,
        firmware=inventory_pb2.FIRMWARE_EFI if v.firmware is Firmware.EFI else inventory_pb2.FIRMWARE_BIOS,
        secure_boot=v.secure_boot, cpu_sockets=v.cpu_sockets, cores_per_socket=v.cores_per_socket,
        memory_bytes=v.memory_bytes,
        disks=[
            inventory_pb2.Disk(key=d.key, file=d.file, capacity_bytes=d.capacity_bytes,
                               datastore_id=d.datastore_id, datastore_name=d.datastore_name,
                               datacenter_path=d.datacenter_path, thin=d.thin, mode=_MODE_PB[d.mode],
                               sharing=d.sharing, bus=d.bus, rdm=d.rdm, change_id=d.change_id)
            for d in v.disks
        ],
        nics=[inventory_pb2.Nic(mac=n.mac, network_id=n.network_id, device_type=n.device_type,
                                network_name=n.network_name) for n in v.nics],
        guest_ips=list(v.guest_ips), cbt_enabled=v.cbt_enabled, snapshot_count=v.snapshot_count,
        tools_status=v.tools_status, host_id=v.host_id, cluster_id=v.cluster_id, folder_id=v.folder_id,
        datacenter_id=v.datacenter_id, has_passthrough_device=v.has_passthrough_device,
        has_usb_controller=v.has_usb_controller, concerns=[concern_to_proto(c) for c in v.concerns],
    )


def plan_from_proto(p: plan_pb2.PlanSpec) -> PlanSpec:
    return PlanSpec(
        name=p.name, source_provider=p.source_provider, target_namespace=p.target_namespace,
        vms=tuple(PlanVm(id=v.id, name=v.name, target_name=v.target_name) for v in p.vms),
        network_map=tuple(NetworkMapping(m.source, _NET.get(m.type, NetworkDestination.POD), m.name)
                          for m in p.network_map),
        storage_map=tuple(StorageMapping(m.source, m.storage_class, m.volume_mode or "Filesystem",
                                         m.access_mode or "ReadWriteOnce") for m in p.storage_map),
        target_kind=_KIND.get(p.target.kind, TargetKind.LOCAL), target_path=p.target.path,
        target_context=p.target.context, description=p.description,
        migration_type="warm" if p.type == plan_pb2.MIGRATION_TYPE_WARM else "cold",
        target_power_state=_TPS.get(p.target_power_state, TargetPowerState.AUTO),
        pvc_name_template=p.pvc_name_template or DEFAULT_PVC_NAME_TEMPLATE,
        max_in_flight=p.max_in_flight or DEFAULT_MAX_IN_FLIGHT,
    )


def plan_to_proto(s: PlanSpec) -> plan_pb2.PlanSpec:
    return plan_pb2.PlanSpec(
        name=s.name, description=s.description, source_provider=s.source_provider,
        target=plan_pb2.Target(kind=_KIND_PB[s.target_kind], path=s.target_path, context=s.target_context),
        target_namespace=s.target_namespace,
        vms=[plan_pb2.PlanVm(id=v.id, name=v.name, target_name=v.target_name) for v in s.vms],
        network_map=[plan_pb2.NetworkMapping(source=m.source, type=_NET_PB[m.type], name=m.name)
                     for m in s.network_map],
        storage_map=[plan_pb2.StorageMapping(source=m.source, storage_class=m.storage_class,
                                             volume_mode=m.volume_mode, access_mode=m.access_mode)
                     for m in s.storage_map],
        type=plan_pb2.MIGRATION_TYPE_WARM if s.migration_type == "warm" else plan_pb2.MIGRATION_TYPE_COLD,
        target_power_state=_TPS_PB[s.target_power_state], pvc_name_template=s.pvc_name_template,
        max_in_flight=s.max_in_flight,
    )
