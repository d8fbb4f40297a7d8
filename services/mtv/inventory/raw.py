"""The raw property cache: what the PropertyCollector told us, per managed object, before translation.

Discovery fills it from `RetrievePropertiesEx`; live updates patch it from `WaitForUpdatesEx` update
sets. Keeping the raw properties (rather than only the translated objects) lets an update that
carries one changed property be re-translated into a whole object and diffed against the last
published one. Pure code: values are whatever pyvmomi returned, never inspected here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

# Entity types whose changes can alter other objects' translation (names and parents used in VM
# paths, datastore and network names on disks and NICs, host → cluster). Any change to one of
# these re-translates every VM; a VM change re-translates only that VM.
STRUCTURAL_TYPES = frozenset({
    "Datacenter", "Folder", "ComputeResource", "ClusterComputeResource", "HostSystem", "Datastore",
    "Network", "DistributedVirtualPortgroup", "OpaqueNetwork",
})

# A VM reconfiguration always bumps config.changeVersion, but the simulator (and older vCenters for
# some nested config fields) reports only that property, not the fields that changed: refetch.
REFETCH_ON = frozenset({"config.changeVersion"})
# Types watched through a few trigger properties only (vsphere_source.VM_WATCH_PATHS): an update that
# changes any of them means "re-read this object whole"; one that repeats known values means nothing.
TRIGGER_TYPES = frozenset({"VirtualMachine"})
# The watched ContainerView itself: its "view" property lists every member, so a change of membership
# is seen even when the collector drops an object's "leave" (vcsim does when the view re-syncs in the
# same batch). Members that vanished are removed; new ones are read whole.
VIEW_TYPE = "ContainerView"


@dataclass
class RawEntity:
    """One managed object: its moref id, its type name ("VirtualMachine") and its properties."""

    id: str
    type: str
    props: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PropertyChange:
    name: str
    op: str  # "assign", "add", "remove", "indirectRemove"
    value: Any = None


@dataclass(frozen=True)
class ObjectUpdate:
    """One entry of an update set: `kind` is "enter", "modify" or "leave"."""

    kind: str
    id: str
    type: str
    changes: tuple[PropertyChange, ...] = ()


@dataclass
class Applied:
    """What an update batch did to the cache."""

    changed: set[str] = field(default_factory=set)  # ids whose properties changed (or entered)
    removed: set[str] = field(default_factory=set)  # ids that left
    refetch: set[str] = field(default_factory=set)  # ids to re-read whole, see REFETCH_ON
    changed_types: set[str] = field(default_factory=set)  # type names of everything above

    @property
    def structural(self) -> bool:
        """True when VMs must be re-translated because something they refer to changed."""
        return bool(self.changed_types & STRUCTURAL_TYPES)


def apply_updates(
    cache: MutableMapping[str, RawEntity], updates: Iterable[ObjectUpdate], paths: Mapping[str, frozenset[str]]
) -> Applied:
    """Patch `cache` with `updates`. `paths` maps a type name to the property paths we collect.

    A change to a path we did not ask for as a whole (e.g. "config.hardware.device[4000]" or a
    nested field) cannot be applied to the cached value safely, so the object is refetched instead.
    """
    applied = Applied()
    for update in updates:
        if update.kind == "leave":
            if cache.pop(update.id, None) is not None:
                applied.removed.add(update.id)
                applied.changed_types.add(update.type)
            applied.changed.discard(update.id)
            applied.refetch.discard(update.id)
            continue
        if update.type == VIEW_TYPE:
            _apply_membership(cache, update, applied)
            continue
        if update.type in TRIGGER_TYPES:
            _apply_trigger(cache, update, applied)
            continue
        if update.kind == "enter" or update.id not in cache:
            # "enter" carries every collected property: replace, so stale ones disappear.
            cache[update.id] = RawEntity(update.id, update.type, {})
        entity = cache[update.id]
        wanted = paths.get(update.type, frozenset())
        for change in update.changes:
            _apply_change(entity, change, wanted, applied)
        applied.changed.add(update.id)
        applied.removed.discard(update.id)
        applied.changed_types.add(update.type)
    return applied


def _apply_membership(cache: MutableMapping[str, RawEntity], update: ObjectUpdate, applied: Applied) -> None:
    for change in update.changes:
        if change.name != "view" or change.op != "assign":
            continue
        members = {str(ref._moId): str(ref._wsdlName) for ref in change.value or []}
        for gone in [i for i in cache if i not in members]:
            applied.changed_types.add(cache.pop(gone).type)
            applied.removed.add(gone)
            applied.changed.discard(gone)
            applied.refetch.discard(gone)
        for new, type_name in members.items():
            if new not in cache:
                applied.refetch.add(new)
                applied.changed_types.add(type_name)


def _apply_trigger(cache: MutableMapping[str, RawEntity], update: ObjectUpdate, applied: Applied) -> None:
    entity = cache.get(update.id)
    if entity is None:
        cache[update.id] = RawEntity(update.id, update.type, {c.name: c.value for c in update.changes})
        applied.refetch.add(update.id)
    elif any(c.op != "assign" or entity.props.get(c.name) != c.value for c in update.changes):
        applied.refetch.add(update.id)
    else:
        return  # e.g. vcsim re-sending every object as "enter" after a view changed
    applied.removed.discard(update.id)
    applied.changed_types.add(update.type)


def _apply_change(entity: RawEntity, change: PropertyChange, wanted: frozenset[str], applied: Applied) -> None:
    if change.name in REFETCH_ON:
        applied.refetch.add(entity.id)
    if change.name not in wanted:
        applied.refetch.add(entity.id)
        return
    if change.op == "assign":
        if change.value is None:
            entity.props.pop(change.name, None)
        else:
            entity.props[change.name] = change.value
    elif change.op in ("remove", "indirectRemove"):
        entity.props.pop(change.name, None)
    else:  # "add" to a whole collected array: we do not know where; read it again
        applied.refetch.add(entity.id)
