"""Validation against an inventory rebuilt from state records: every concern, blocking or not."""

from __future__ import annotations

import time
from dataclasses import replace

from fixtures.planner_data import inventory_records, plan_spec, vm
from mtv import model as m
from mtv.planner.inventory import Inventory
from mtv.planner.validation import validate
from mtv.v1 import inventory_pb2

PID = "prov-1"


def _inventory(vms: list[m.Vm]) -> Inventory:
    inv = Inventory()
    for key, change in inventory_records(PID, vms):
        inv.apply(key, change)
    inv.set_provider(PID, "vcenter-1")
    return inv


def _ids(result: object) -> list[str]:
    return [c.id for c in result.concerns]  # type: ignore[attr-defined]


def test_a_good_plan_is_not_blocked_and_resolves_names_and_target_names() -> None:
    vms = [vm(0, name="Web_Server 01"), vm(1)]
    spec = replace(plan_spec("p", "vcenter-1", []), vms=(m.PlanVm(id="vm-1000"), m.PlanVm(name="vm-0001")))
    result = validate(spec, 3, _inventory(vms))
    assert (result.blocked, result.concerns, result.provider_id, result.revision) == (False, (), PID, 3)
    assert [(v.id, v.target_name) for v in result.vms] == [("vm-1000", "web-server-01"), ("vm-1001", "vm-0001")]
    assert result.total_bytes == 2 * (16 + 32) * (1 << 20)


def test_unknown_provider_blocks_and_names_it() -> None:
    result = validate(plan_spec("p", "nowhere", ["vm-1000"]), 1, _inventory([vm(0)]))
    assert result.blocked and _ids(result) == ["plan.provider.not_found"]
    assert "'nowhere'" in result.concerns[0].assessment


def test_provider_by_id_or_by_name() -> None:
    inv = _inventory([vm(0)])
    assert not validate(plan_spec("p", PID, ["vm-1000"]), 1, inv).blocked
    assert not validate(plan_spec("p", "vcenter-1", ["vm-1000"]), 1, inv).blocked


def test_unknown_duplicate_and_ambiguous_vms() -> None:
    inv = _inventory([vm(0), vm(1, name="twin"), vm(2, name="twin")])
    spec = replace(plan_spec("p", PID, []), vms=(m.PlanVm(id="vm-1000"), m.PlanVm(name="vm-0000"),
                                                 m.PlanVm(id="vm-9"), m.PlanVm(name="twin")))
    result = validate(spec, 1, inv)
    assert result.blocked
    by_id = {c.id: c.assessment for c in result.concerns}
    assert "vm-9" in by_id["plan.vm.not_found"]
    assert "vm-0000 (vm-1000)" in by_id["plan.vm.duplicate"]
    assert "vm-1001" in by_id["plan.vm.ambiguous"] and "vm-1002" in by_id["plan.vm.ambiguous"]
    assert [v.id for v in result.vms] == ["vm-1000"]


def test_unmapped_networks_and_datastores_are_named_with_their_vms() -> None:
    vms = [vm(0, network="network-2"), vm(1, network="network-2"), vm(2, datastore=("datastore-7", "SAN_7"))]
    result = validate(plan_spec("p", PID, [v.id for v in vms]), 1, _inventory(vms))
    assert result.blocked
    by_id = {c.id: c for c in result.concerns}
    net = by_id["plan.network.unmapped"]
    assert net.category is m.ConcernCategory.CRITICAL
    assert "'backup' (network-2) used by vm-0000, vm-0001" in net.assessment
    assert "'SAN_7' (datastore-7) used by vm-0002" in by_id["plan.storage.unmapped"].assessment


def test_maps_match_ids_as_well_as_names() -> None:
    nets = (m.NetworkMapping("network-1", m.NetworkDestination.POD),)
    spec = replace(plan_spec("p", PID, ["vm-1000"], networks=nets), storage_map=(m.StorageMapping("datastore-1", "x"),))
    assert not validate(spec, 1, _inventory([vm(0)])).blocked


def test_a_map_entry_matching_nothing_is_a_warning() -> None:
    nets = (m.NetworkMapping("VM Network", m.NetworkDestination.POD),
            m.NetworkMapping("gone", m.NetworkDestination.IGNORED))
    result = validate(plan_spec("p", PID, ["vm-1000"], networks=nets), 1, _inventory([vm(0)]))
    assert not result.blocked and _ids(result) == ["plan.map.source_not_found"]


def test_vm_concerns_critical_blocks_warning_does_not() -> None:
    warn = m.Concern("vm.cbt.disabled", m.ConcernCategory.WARNING, "CBT off", "enable CBT for warm migration")
    crit = m.Concern("vm.disk.passthrough", m.ConcernCategory.CRITICAL, "Passthrough", "remove the device")
    warned = validate(plan_spec("p", PID, ["vm-1000", "vm-1001"]), 1,
                      _inventory([vm(0, concerns=[warn]), vm(1, concerns=[warn])]))
    assert not warned.blocked and _ids(warned) == ["vm.cbt.disabled"]
    assert warned.concerns[0].assessment == "vm-0000, vm-0001: enable CBT for warm migration"
    blocked = validate(plan_spec("p", PID, ["vm-1000"]), 1, _inventory([vm(0, concerns=[warn, crit])]))
    assert blocked.blocked and _ids(blocked) == ["vm.disk.passthrough", "vm.cbt.disabled"]


def test_target_names_collide_or_are_invalid() -> None:
    vms = [vm(0, name="web"), vm(1, name="db"), vm(2, name="WEB"), vm(3, name="!!!")]
    spec = replace(plan_spec("p", PID, []), vms=(
        m.PlanVm(id="vm-1000"), m.PlanVm(id="vm-1001", target_name="app"), m.PlanVm(id="vm-1002"),
        m.PlanVm(id="vm-1003")))
    result = validate(spec, 1, _inventory(vms))
    by_id = {c.id: c for c in result.concerns}
    assert "'!!!' (vm-1003)" in by_id["plan.target_name.invalid"].assessment
    # Two names that normalize alike: the second gets a stable suffix (information, not blocking).
    renamed = by_id["plan.target_name.renamed"]
    assert renamed.category is m.ConcernCategory.INFORMATION and "WEB → web-" in renamed.assessment
    names = {v.id: v.target_name for v in result.vms}
    assert names["vm-1000"] == "web" and names["vm-1002"].startswith("web-") and names["vm-1001"] == "app"
    clash = replace(spec, vms=(m.PlanVm(id="vm-1000", target_name="same"), m.PlanVm(id="vm-1001", target_name="same")))
    assert "plan.target_name.collision" in _ids(validate(clash, 1, _inventory(vms)))
    bad = replace(spec, vms=(m.PlanVm(id="vm-1000", target_name="Not_Valid"),))
    assert _ids(validate(bad, 1, _inventory(vms))) == ["plan.target_name.invalid"]


def test_tombstones_and_removals_take_objects_away() -> None:
    inv = _inventory([vm(0)])
    inv.apply(f"{PID}/vm-1000", None)
    assert "plan.vm.not_found" in _ids(validate(plan_spec("p", PID, ["vm-1000"]), 1, inv))
    inv = _inventory([vm(0)])
    inv.apply(f"{PID}/network-1", inventory_pb2.InventoryChanged(provider_id=PID, object_id="network-1",
                                                                 change=inventory_pb2.CHANGE_KIND_REMOVED))
    result = validate(plan_spec("p", PID, ["vm-1000"]), 1, inv)
    # The NIC still names "VM Network", which is mapped; only the map entry now matches nothing.
    assert _ids(result) == ["plan.map.source_not_found"]


def test_a_thousand_vm_plan_validates_in_linear_time() -> None:
    vms = [vm(i) for i in range(1000)]
    inv = _inventory(vms)
    started = time.perf_counter()
    result = validate(plan_spec("p", PID, [v.id for v in vms]), 1, inv)
    elapsed = time.perf_counter() - started
    assert not result.blocked and len(result.vms) == 1000
    assert elapsed < 1.0, f"validating 1,000 VMs took {elapsed:.2f} s"
