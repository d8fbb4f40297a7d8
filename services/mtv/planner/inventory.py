"""What the planner knows of the sources: an index rebuilt from the compacted `mtv.inventory.state.v1`.

Each record is keyed "<provider id>/<object id>" and holds the latest `InventoryChanged` of that
object; a tombstone (no value) removes it. Providers are known by id from those keys and by name from
`ProviderStatusChanged`. Only what plans need is kept: VMs (as `model.Vm`), networks, datastores.
Lookups are by id or by name and cost O(1), so validating a 1,000-VM plan is linear in its size.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from mtv.model import Vm, vm_from_proto
from mtv.v1 import inventory_pb2


@dataclass(frozen=True)
class Named:
    """A network or datastore: enough to match a map entry by id or by name."""

    id: str
    name: str


@dataclass
class _Kind:
    """Objects of one kind of one provider, by id and by name (names may repeat in vSphere)."""

    by_id: dict[str, Named | Vm] = field(default_factory=dict)
    by_name: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def put(self, obj: Named | Vm) -> None:
        self.remove(obj.id)
        self.by_id[obj.id] = obj
        self.by_name[obj.name].add(obj.id)

    def remove(self, object_id: str) -> bool:
        old = self.by_id.pop(object_id, None)
        if old is None:
            return False
        ids = self.by_name.get(old.name)
        if ids is not None:
            ids.discard(object_id)
            if not ids:
                del self.by_name[old.name]
        return True

    def find(self, id_or_name: str) -> list[Named | Vm]:
        """The object with this id, else every object with this name."""
        if id_or_name in self.by_id:
            return [self.by_id[id_or_name]]
        return [self.by_id[i] for i in sorted(self.by_name.get(id_or_name, ()))]


@dataclass
class _Provider:
    name: str = ""
    vms: _Kind = field(default_factory=_Kind)
    networks: _Kind = field(default_factory=_Kind)
    datastores: _Kind = field(default_factory=_Kind)

    def kinds(self) -> tuple[_Kind, ...]:
        return self.vms, self.networks, self.datastores


class Inventory:
    """Mutable index, owned by one event loop (no locking: the planner runs on one asyncio loop)."""

    def __init__(self) -> None:
        self._providers: dict[str, _Provider] = {}
        self._ids_by_name: dict[str, str] = {}

    # -- updates -----------------------------------------------------------------------------------

    def apply(self, key: str, change: inventory_pb2.InventoryChanged | None) -> str:
        """Apply one state record (None = tombstone); return the provider id it belongs to."""
        provider_id, _, object_id = key.partition("/")
        if change is not None:
            provider_id, object_id = change.provider_id or provider_id, change.object_id or object_id
        provider = self._providers.setdefault(provider_id, _Provider())
        if change is None or change.change == inventory_pb2.CHANGE_KIND_REMOVED:
            for kind in provider.kinds():
                if kind.remove(object_id):
                    break
            return provider_id
        obj = change.object
        which = obj.WhichOneof("kind")
        if which == "vm":
            provider.vms.put(vm_from_proto(obj.vm))
        elif which == "network":
            provider.networks.put(Named(obj.network.id or object_id, obj.network.name))
        elif which == "datastore":
            provider.datastores.put(Named(obj.datastore.id or object_id, obj.datastore.name))
        return provider_id

    def set_provider(self, provider_id: str, name: str) -> None:
        provider = self._providers.setdefault(provider_id, _Provider())
        if provider.name and self._ids_by_name.get(provider.name) == provider_id:
            del self._ids_by_name[provider.name]
        provider.name = name
        if name:
            self._ids_by_name[name] = provider_id

    # -- queries -----------------------------------------------------------------------------------

    def resolve_provider(self, name_or_id: str) -> str | None:
        """The provider id for a plan's `provider.source` (an id or a name), None if unknown."""
        if name_or_id in self._providers:
            return name_or_id
        return self._ids_by_name.get(name_or_id)

    def provider_name(self, provider_id: str) -> str:
        provider = self._providers.get(provider_id)
        return provider.name if provider else ""

    def vm(self, provider_id: str, vm_id: str) -> Vm | None:
        provider = self._providers.get(provider_id)
        found = provider.vms.by_id.get(vm_id) if provider else None
        return found if isinstance(found, Vm) else None

    def find_vms(self, provider_id: str, id_or_name: str) -> list[Vm]:
        provider = self._providers.get(provider_id)
        return [v for v in provider.vms.find(id_or_name) if isinstance(v, Vm)] if provider else []

    def find_network(self, provider_id: str, id_or_name: str) -> list[Named]:
        provider = self._providers.get(provider_id)
        return [n for n in provider.networks.find(id_or_name) if isinstance(n, Named)] if provider else []

    def find_datastore(self, provider_id: str, id_or_name: str) -> list[Named]:
        provider = self._providers.get(provider_id)
        return [d for d in provider.datastores.find(id_or_name) if isinstance(d, Named)] if provider else []

    def counts(self) -> dict[str, int]:
        return {"providers": len(self._providers),
                "vms": sum(len(p.vms.by_id) for p in self._providers.values())}
