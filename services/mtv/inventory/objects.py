"""Inventory objects other than VMs (those are `mtv.model.Vm`), and their protobuf edges.

Frozen dataclasses, so the state can diff old and new values with `==` and name the fields that
changed; `to_proto` / `from_proto` convert at the Kafka and gRPC edges only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

from mtv.model import Vm, vm_from_proto, vm_to_proto
from mtv.v1 import inventory_pb2


class NetworkKind(Enum):
    STANDARD = "standard"
    DISTRIBUTED_PORTGROUP = "distributed_portgroup"
    OPAQUE = "opaque"


@dataclass(frozen=True)
class Datacenter:
    id: str
    name: str


@dataclass(frozen=True)
class Folder:
    id: str
    name: str
    parent_id: str = ""
    path: str = ""


@dataclass(frozen=True)
class Cluster:
    id: str
    name: str
    datacenter_id: str = ""


@dataclass(frozen=True)
class Host:
    id: str
    name: str
    cluster_id: str = ""
    datacenter_id: str = ""
    in_maintenance_mode: bool = False


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    kind: NetworkKind = NetworkKind.STANDARD
    vlan: int = 0
    datacenter_id: str = ""


@dataclass(frozen=True)
class Datastore:
    id: str
    name: str
    capacity_bytes: int = 0
    free_bytes: int = 0
    type: str = ""
    datacenter_id: str = ""


Item = Vm | Host | Network | Datastore | Cluster | Datacenter | Folder

# The InventoryObject oneof field of each type; also the kind names used in logs and tests.
KIND: dict[type, str] = {Vm: "vm", Host: "host", Network: "network", Datastore: "datastore", Cluster: "cluster",
                         Datacenter: "datacenter", Folder: "folder"}

_NET_KIND_PB = {NetworkKind.STANDARD: inventory_pb2.NETWORK_KIND_STANDARD,
                NetworkKind.DISTRIBUTED_PORTGROUP: inventory_pb2.NETWORK_KIND_DISTRIBUTED_PORTGROUP,
                NetworkKind.OPAQUE: inventory_pb2.NETWORK_KIND_OPAQUE}
_NET_KIND = {v: k for k, v in _NET_KIND_PB.items()}
_PB_TYPE = {Host: inventory_pb2.Host, Datastore: inventory_pb2.Datastore, Cluster: inventory_pb2.Cluster,
            Datacenter: inventory_pb2.Datacenter, Folder: inventory_pb2.Folder}


def kind_of(item: Item) -> str:
    return KIND[type(item)]


def changed_fields(old: Item, new: Item) -> tuple[str, ...]:
    """Names of the fields whose values differ (all fields if the types differ)."""
    if type(old) is not type(new):
        return tuple(f.name for f in dataclasses.fields(new))
    return tuple(f.name for f in dataclasses.fields(new) if getattr(old, f.name) != getattr(new, f.name))


def to_proto(item: Item) -> inventory_pb2.InventoryObject:
    if isinstance(item, Vm):
        return inventory_pb2.InventoryObject(vm=vm_to_proto(item))
    if isinstance(item, Network):
        return inventory_pb2.InventoryObject(network=network_to_proto(item))
    message = _PB_TYPE[type(item)](**dataclasses.asdict(item))
    return inventory_pb2.InventoryObject(**{KIND[type(item)]: message})


def from_proto(obj: inventory_pb2.InventoryObject) -> Item | None:
    """The dataclass of a stored object; None for an empty oneof (unknown to this version)."""
    field = obj.WhichOneof("kind")
    if field is None:
        return None
    if field == "vm":
        return vm_from_proto(obj.vm)
    if field == "network":
        n = obj.network
        return Network(id=n.id, name=n.name, kind=_NET_KIND.get(n.kind, NetworkKind.STANDARD), vlan=n.vlan,
                       datacenter_id=n.datacenter_id)
    cls = next(c for c, name in KIND.items() if name == field)
    message = getattr(obj, field)
    return cls(**{f.name: getattr(message, f.name) for f in dataclasses.fields(cls)})  # type: ignore[no-any-return]


def network_to_proto(n: Network) -> inventory_pb2.Network:
    return inventory_pb2.Network(id=n.id, name=n.name, kind=_NET_KIND_PB[n.kind], vlan=n.vlan,
                                 datacenter_id=n.datacenter_id)


def host_to_proto(h: Host) -> inventory_pb2.Host:
    return inventory_pb2.Host(**dataclasses.asdict(h))


def datastore_to_proto(d: Datastore) -> inventory_pb2.Datastore:
    return inventory_pb2.Datastore(**dataclasses.asdict(d))
