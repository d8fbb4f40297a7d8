"""The raw property cache patched by update sets, and the diff that emits only real changes."""

from __future__ import annotations

from dataclasses import replace

from mtv.inventory.discovery import Backoff
from mtv.inventory.objects import Host
from mtv.inventory.raw import ObjectUpdate, PropertyChange, RawEntity, apply_updates
from mtv.inventory.state import ChangeKind, ProviderState, diff
from mtv.model import PowerState, Vm

PATHS = {"HostSystem": frozenset({"name", "parent", "runtime.inMaintenanceMode"}),
         "Folder": frozenset({"name", "parent"})}
A = Vm(id="vm-1", name="a", power_state=PowerState.ON)
B = Vm(id="vm-2", name="b")
H = Host(id="host-1", name="esx1")


def _kinds(changes: list) -> list[tuple[str, str, tuple[str, ...]]]:  # type: ignore[type-arg]
    return [(c.kind.value, c.object_id, c.fields) for c in changes]


def test_diff_reports_only_real_changes() -> None:
    old = {"vm-1": A, "vm-2": B, "host-1": H}
    assert diff(old, dict(old), complete=True) == []
    new = {"vm-1": replace(A, power_state=PowerState.OFF, name="a2"), "host-1": H, "vm-3": Vm(id="vm-3", name="c")}
    assert sorted(_kinds(diff(old, new, complete=True))) == [
        ("added", "vm-3", ()), ("removed", "vm-2", ()), ("updated", "vm-1", ("name", "power_state"))]
    # A partial view (live updates) never removes what it does not mention...
    assert _kinds(diff(old, {"vm-1": A}, complete=False)) == []
    # ...only what it maps to None; removing something unknown is a no-op.
    assert _kinds(diff(old, {"vm-2": None, "vm-9": None}, complete=False)) == [("removed", "vm-2", ())]


def test_provider_state_applies_changes_and_resyncs_without_duplicates() -> None:
    state = ProviderState("p1")
    assert [c.kind for c in state.replace_all({"vm-1": A, "vm-2": B})] == [ChangeKind.ADDED] * 2
    assert state.replace_all({"vm-1": A, "vm-2": B}) == []  # resync after reconnect: nothing new
    off = replace(A, power_state=PowerState.OFF)
    assert _kinds(state.update({"vm-1": off})) == [("updated", "vm-1", ("power_state",))]
    assert state.get("vm-1") == off
    assert _kinds(state.update({"vm-2": None})) == [("removed", "vm-2", ())]
    assert state.items(Vm) == [off] and len(state) == 1


def test_state_restored_from_the_log_is_the_diff_base() -> None:
    state = ProviderState("p1", {"vm-1": A, "vm-2": B})
    assert _kinds(state.replace_all({"vm-1": A})) == [("removed", "vm-2", ())]


def test_enter_replaces_modify_patches_leave_removes() -> None:
    cache = {"host-1": RawEntity("host-1", "HostSystem", {"name": "a", "runtime.inMaintenanceMode": False})}
    applied = apply_updates(cache, [
        ObjectUpdate("modify", "host-1", "HostSystem", (PropertyChange("runtime.inMaintenanceMode", "assign", True),)),
        ObjectUpdate("enter", "host-2", "HostSystem", (PropertyChange("name", "assign", "b"),)),
    ], PATHS)
    assert cache["host-1"].props == {"name": "a", "runtime.inMaintenanceMode": True}
    assert cache["host-2"].props == {"name": "b"}
    assert (applied.changed, applied.removed, applied.refetch, applied.structural) == ({"host-1", "host-2"}, set(),
                                                                                      set(), True)
    # "enter" for a known object (vcsim re-sends everything when a view changes) replaces its properties.
    apply_updates(cache, [ObjectUpdate("enter", "host-1", "HostSystem", (PropertyChange("name", "assign", "a"),))],
                  PATHS)
    assert cache["host-1"].props == {"name": "a"}
    applied = apply_updates(cache, [ObjectUpdate("leave", "host-2", "HostSystem")], PATHS)
    assert "host-2" not in cache and applied.removed == {"host-2"} and applied.changed == set()


def test_unset_and_removed_properties_disappear() -> None:
    cache = {"host-1": RawEntity("host-1", "HostSystem", {"name": "a", "runtime.inMaintenanceMode": True})}
    apply_updates(cache, [ObjectUpdate("modify", "host-1", "HostSystem", (
        PropertyChange("runtime.inMaintenanceMode", "assign", None), PropertyChange("name", "indirectRemove")))],
        PATHS)
    assert cache["host-1"].props == {}


def test_partial_paths_trigger_a_refetch() -> None:
    cache = {"host-1": RawEntity("host-1", "HostSystem", {"name": "a"})}
    applied = apply_updates(cache, [
        ObjectUpdate("modify", "host-1", "HostSystem", (PropertyChange("config.network.vnic[0]", "add", 1),)),
    ], PATHS)
    assert applied.refetch == {"host-1"} and "config.network.vnic[0]" not in cache["host-1"].props
    applied = apply_updates(cache, [
        ObjectUpdate("modify", "host-1", "HostSystem", (PropertyChange("name", "add", "x"),)),
    ], PATHS)
    assert applied.refetch == {"host-1"}


def test_vms_are_re_read_when_a_trigger_property_really_changes() -> None:
    full = {"name": "a", "runtime.powerState": "poweredOn", "config.hardware.device": ["disk"],
            "config.changeVersion": "1"}
    cache = {"vm-1": RawEntity("vm-1", "VirtualMachine", dict(full))}
    same = (PropertyChange("name", "assign", "a"), PropertyChange("runtime.powerState", "assign", "poweredOn"))
    applied = apply_updates(cache, [ObjectUpdate("enter", "vm-1", "VirtualMachine", same)], PATHS)
    assert (applied.refetch, applied.changed, cache["vm-1"].props) == (set(), set(), full), \
        "a repeated 'enter' with known values is nothing; the full properties stay"
    for change in (PropertyChange("runtime.powerState", "assign", "poweredOff"),
                   PropertyChange("config.changeVersion", "assign", "2"),
                   PropertyChange("rootSnapshot", "assign", ["snapshot-1"])):
        applied = apply_updates(cache, [ObjectUpdate("modify", "vm-1", "VirtualMachine", (change,))], PATHS)
        assert applied.refetch == {"vm-1"} and not applied.structural
    applied = apply_updates(cache, [ObjectUpdate("enter", "vm-9", "VirtualMachine", same)], PATHS)
    assert applied.refetch == {"vm-9"}, "a new VM is read whole"
    applied = apply_updates(cache, [ObjectUpdate("modify", "vm-1", "VirtualMachine", same),
                                    ObjectUpdate("leave", "vm-1", "VirtualMachine")], PATHS)
    assert applied.removed == {"vm-1"} and applied.refetch == set()


def test_structural_changes_are_flagged() -> None:
    cache: dict[str, RawEntity] = {}
    applied = apply_updates(cache, [ObjectUpdate("enter", "group-1", "Folder", (PropertyChange("name", "assign",
                                                                                                "f"),))], PATHS)
    assert applied.structural


def test_backoff_grows_to_a_ceiling() -> None:
    backoff = Backoff(initial=1, maximum=10, factor=2)
    assert [backoff.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_view_membership_catches_dropped_leaves_and_new_objects() -> None:
    from pyVmomi import vim

    cache = {"vm-1": RawEntity("vm-1", "VirtualMachine", {"name": "a"}),
             "vm-2": RawEntity("vm-2", "VirtualMachine", {"name": "b"}),
             "group-1": RawEntity("group-1", "Folder", {"name": "vm"})}
    members = [vim.VirtualMachine("vm-1"), vim.Folder("group-1"), vim.VirtualMachine("vm-3")]
    applied = apply_updates(cache, [ObjectUpdate("modify", "session[1]view", "ContainerView", (
        PropertyChange("view", "assign", members),))], PATHS)
    assert applied.removed == {"vm-2"} and "vm-2" not in cache
    assert applied.refetch == {"vm-3"} and not applied.structural
