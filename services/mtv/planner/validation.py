"""Plan validation against the inventory: pure, linear in the plan's size.

Concerns follow Forklift's plan conditions (forklift-reference §7): every finding is a Concern with a
stable id; a CRITICAL one blocks the plan, warnings and information do not. Findings about many VMs
are folded into one concern that names them (the first few and a count), so a 1,000-VM plan gives a
readable list and a PlanValidated far below the message size limit.

| id                              | category  | when                                                        |
|---------------------------------|-----------|-------------------------------------------------------------|
| plan.provider.not_found         | critical  | provider.source is neither a known provider id nor name     |
| plan.vm.not_found               | critical  | a listed VM id or name is not in the provider's inventory   |
| plan.vm.ambiguous               | critical  | a VM name matches several VMs (use the id)                  |
| plan.vm.duplicate               | critical  | the same VM is listed twice                                 |
| plan.network.unmapped           | critical  | a VM NIC's network is not in map.network                    |
| plan.storage.unmapped           | critical  | a VM disk's datastore is not in map.storage                 |
| plan.target_name.invalid        | critical  | a targetName or a VM name cannot become a Kubernetes name   |
| plan.target_name.collision      | critical  | two VMs ask for the same targetName                         |
| plan.target_name.renamed        | info      | two VM names normalize alike; one gets a stable suffix      |
| plan.map.source_not_found       | warning   | a map entry names no network/datastore of the provider      |
| <the VM concern's own id>       | as given  | a concern the inventory found on a VM (vm.*)                |
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mtv.model import Concern, ConcernCategory, PlanSpec, PlanVm, Vm
from mtv.planner.inventory import Inventory

try:  # the converter's naming decides target names; the planner must agree with it
    from mtv.converter.errors import InvalidNameError
    from mtv.converter.naming import is_valid as valid_name
    from mtv.converter.naming import target_name as derive_name
except ImportError:  # pragma: no cover - only if the converter package is absent
    import re

    class InvalidNameError(ValueError):  # type: ignore[no-redef]
        pass

    def valid_name(name: str) -> bool:
        return bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name))

    def derive_name(vm_name: str, vm_id: str, taken: Iterable[str] = (), requested: str = "") -> str:
        name = requested or vm_name
        if not valid_name(name):
            raise InvalidNameError(f"{name!r} is not a DNS-1123 label")
        return name

CRITICAL, WARNING, INFO = ConcernCategory.CRITICAL, ConcernCategory.WARNING, ConcernCategory.INFORMATION
_ORDER = {CRITICAL: 0, WARNING: 1, INFO: 2}


@dataclass(frozen=True)
class ResolvedVm:
    """A plan VM found in the inventory, with the target name it will get."""

    id: str
    name: str
    target_name: str


@dataclass(frozen=True)
class Validation:
    revision: int
    provider_id: str
    blocked: bool
    concerns: tuple[Concern, ...]
    vms: tuple[ResolvedVm, ...]
    total_bytes: int = 0


def some(names: Sequence[str], limit: int = 5) -> str:
    """'a, b, c' or 'a, b, c, d, e and 7 more'."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def validate(spec: PlanSpec, revision: int, inventory: Inventory) -> Validation:
    provider_id = inventory.resolve_provider(spec.source_provider)
    if provider_id is None:
        concern = Concern("plan.provider.not_found", CRITICAL, "Provider not found",
                          f"provider {spec.source_provider!r} is not known to the inventory; check provider.source "
                          "(`mtvctl provider ls`) or wait until the inventory service has discovered it")
        return Validation(revision, "", True, (concern,), ())
    concerns: list[Concern] = []
    vms = _resolve_vms(spec.vms, provider_id, inventory, concerns)
    concerns += _vm_concerns(vms)
    concerns += _unmapped(spec, provider_id, vms, inventory)
    names, name_concerns = _target_names(spec.vms, vms)
    concerns += name_concerns
    concerns.sort(key=lambda c: (_ORDER[c.category], c.id))
    resolved = tuple(ResolvedVm(vm.id, vm.name, names.get(vm.id, "")) for _, vm in vms)
    total = sum(d.capacity_bytes for _, vm in vms for d in vm.disks)
    blocked = any(c.category is CRITICAL for c in concerns)
    return Validation(revision, provider_id, blocked, tuple(concerns), resolved, total)


def _resolve_vms(wanted: Sequence[PlanVm], provider_id: str, inventory: Inventory,
                 concerns: list[Concern]) -> list[tuple[PlanVm, Vm]]:
    found: list[tuple[PlanVm, Vm]] = []
    missing: list[str] = []
    ambiguous: list[str] = []
    duplicates: list[str] = []
    seen: set[str] = set()
    for entry in wanted:
        matches = [v for v in [inventory.vm(provider_id, entry.id)] if v] if entry.id \
            else inventory.find_vms(provider_id, entry.name)
        if not matches:
            missing.append(entry.id or entry.name)
        elif len(matches) > 1:
            ambiguous.append(f"{entry.name} ({', '.join(v.id for v in matches)})")
        elif matches[0].id in seen:
            duplicates.append(f"{matches[0].name} ({matches[0].id})")
        else:
            seen.add(matches[0].id)
            found.append((entry, matches[0]))
    if missing:
        concerns.append(Concern("plan.vm.not_found", CRITICAL, "VM not found",
                                f"{len(missing)} VM(s) not in the provider's inventory: {some(missing)}; "
                                "check the ids and names in `vms`"))
    if ambiguous:
        concerns.append(Concern("plan.vm.ambiguous", CRITICAL, "VM name is ambiguous",
                                f"these names match several VMs: {some(ambiguous)}; list those VMs by id"))
    if duplicates:
        concerns.append(Concern("plan.vm.duplicate", CRITICAL, "Duplicate VM",
                                f"listed more than once: {some(duplicates)}; remove the repeats from `vms`"))
    return found


def _vm_concerns(vms: Sequence[tuple[PlanVm, Vm]]) -> list[Concern]:
    """The inventory's concerns, one per concern id, naming the VMs that have it."""
    by_id: dict[str, list[str]] = defaultdict(list)
    first: dict[str, Concern] = {}
    for _, vm in vms:
        for c in vm.concerns:
            by_id[c.id].append(vm.name)
            first.setdefault(c.id, c)
    return [Concern(cid, first[cid].category, first[cid].label,
                    f"{some(names)}: {first[cid].assessment}") for cid, names in by_id.items()]


def _unmapped(spec: PlanSpec, provider_id: str, vms: Sequence[tuple[PlanVm, Vm]],
              inventory: Inventory) -> list[Concern]:
    net_sources = {m.source for m in spec.network_map}
    ds_sources = {m.source for m in spec.storage_map}
    networks: dict[str, list[str]] = defaultdict(list)
    datastores: dict[str, list[str]] = defaultdict(list)
    for _, vm in vms:
        for nic in vm.nics:
            names = {nic.network_id, nic.network_name} | {n.name for n in inventory.find_network(provider_id,
                                                                                                   nic.network_id)}
            if not names & net_sources:
                networks[_label(nic.network_name, nic.network_id)].append(vm.name)
        for disk in vm.disks:
            if not (disk.datastore_id or disk.datastore_name):
                continue  # not on a datastore: the inventory's own critical concern says so
            names = {disk.datastore_id, disk.datastore_name} | {
                d.name for d in inventory.find_datastore(provider_id, disk.datastore_id)}
            if not names & ds_sources:
                datastores[_label(disk.datastore_name, disk.datastore_id)].append(vm.name)
    out = []
    if networks:
        out.append(Concern("plan.network.unmapped", CRITICAL, "Networks not mapped", "; ".join(
            f"{net} used by {some(sorted(set(v)))}" for net, v in sorted(networks.items()))
            + ": add them to map.network (pod, multus or ignored)"))
    if datastores:
        out.append(Concern("plan.storage.unmapped", CRITICAL, "Datastores not mapped", "; ".join(
            f"{ds} used by {some(sorted(set(v)))}" for ds, v in sorted(datastores.items()))
            + ": add them to map.storage with a storageClass"))
    unknown = [m.source for m in spec.network_map if not inventory.find_network(provider_id, m.source)]
    unknown += [m.source for m in spec.storage_map if not inventory.find_datastore(provider_id, m.source)]
    if unknown:
        out.append(Concern("plan.map.source_not_found", WARNING, "Map entry matches nothing",
                           f"no network or datastore of the provider is called {some(unknown)}; the entry is unused"))
    return out


def _label(name: str, object_id: str) -> str:
    return f"{name!r} ({object_id})" if name and object_id and name != object_id else repr(name or object_id)


def _target_names(wanted: Sequence[PlanVm], vms: Sequence[tuple[PlanVm, Vm]]
                  ) -> tuple[dict[str, str], list[Concern]]:
    """Explicit targetNames first (they must be valid and distinct), then names derived from the VM
    names by the converter's rules, suffixed when two normalize alike (stable: a hash of the VM id)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    invalid, collisions, renamed = [], [], []
    for entry, vm in vms:
        if not entry.target_name:
            continue
        if not valid_name(entry.target_name):
            invalid.append(f"{entry.target_name!r} ({vm.name})")
        elif entry.target_name in taken:
            collisions.append(f"{entry.target_name!r} ({vm.name})")
        else:
            taken.add(entry.target_name)
            names[vm.id] = entry.target_name
    for entry, vm in vms:
        if entry.target_name:
            continue
        try:
            name = derive_name(vm.name, vm.id, taken)
        except InvalidNameError:
            invalid.append(f"{vm.name!r} ({vm.id})")
            continue
        if name != derive_name(vm.name, vm.id, ()):
            renamed.append(f"{vm.name} → {name}")
        taken.add(name)
        names[vm.id] = name
    concerns = []
    if invalid:
        concerns.append(Concern("plan.target_name.invalid", CRITICAL, "Target name not valid",
                                f"cannot become a Kubernetes name: {some(invalid)}; set vms[].targetName to a "
                                "DNS-1123 name"))
    if collisions:
        concerns.append(Concern("plan.target_name.collision", CRITICAL, "Target name used twice",
                                f"asked for by more than one VM: {some(collisions)}; choose distinct targetNames"))
    if renamed:
        concerns.append(Concern("plan.target_name.renamed", INFO, "Target name suffixed",
                                f"names that normalize alike get a stable suffix: {some(renamed)}"))
    return names, concerns
