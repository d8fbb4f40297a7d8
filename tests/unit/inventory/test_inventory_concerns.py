"""Each concern rule fires on the VM shape it describes and only there; rules are data, easy to extend."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mtv.inventory import concerns
from mtv.inventory.concerns import RULES, Rule, evaluate
from mtv.model import ConcernCategory, Disk, DiskMode, Nic, PowerState, Vm

CLEAN = Vm(
    id="vm-1", name="web-01", power_state=PowerState.ON, guest_id="rhel9_64Guest", cbt_enabled=True,
    guest_ips=("10.0.0.1",), tools_status="guestToolsRunning",
    disks=(Disk(key=2000, file="[DS1] web/web.vmdk", capacity_bytes=1 << 30, datastore_id="datastore-1",
                datastore_name="DS1"),),
    nics=(Nic(mac="00:50:56:00:00:01", network_id="network-1"),),
)
DISK = CLEAN.disks[0]


def _ids(vm: Vm) -> set[str]:
    return {c.id for c in evaluate(vm)}


def test_a_clean_vm_has_no_concerns() -> None:
    assert evaluate(CLEAN) == ()


@pytest.mark.parametrize(
    ("change", "rule_id", "category"),
    [
        ({"has_passthrough_device": True}, "vm.device.passthrough", ConcernCategory.CRITICAL),
        ({"disks": (replace(DISK, datastore_id="", datastore_name="", file="/dev/x"),)},
         "vm.disk.not_on_datastore", ConcernCategory.CRITICAL),
        ({"disks": (replace(DISK, capacity_bytes=0),)}, "vm.disk.capacity_invalid", ConcernCategory.CRITICAL),
        ({"cbt_enabled": False}, "vm.cbt.disabled", ConcernCategory.WARNING),
        ({"disks": (replace(DISK, sharing="sharingMultiWriter"),)}, "vm.disk.shared", ConcernCategory.WARNING),
        ({"disks": (replace(DISK, mode=DiskMode.INDEPENDENT_NONPERSISTENT),)}, "vm.disk.independent",
         ConcernCategory.WARNING),
        ({"disks": (replace(DISK, rdm=True),)}, "vm.disk.rdm", ConcernCategory.WARNING),
        ({"has_usb_controller": True}, "vm.device.usb_controller", ConcernCategory.WARNING),
        ({"nics": (Nic(mac="m", network_id="n", device_type="sriov"),)}, "vm.nic.sriov", ConcernCategory.WARNING),
        ({"snapshot_count": 2}, "vm.snapshot.present", ConcernCategory.WARNING),
        ({"guest_id": "otherLinux64Guest"}, "vm.os.unsupported", ConcernCategory.WARNING),
        ({"name": "Web_01"}, "vm.name.invalid", ConcernCategory.WARNING),
        ({"guest_ips": ()}, "vm.guest.no_ips", ConcernCategory.WARNING),
        ({"secure_boot": True}, "vm.firmware.secure_boot", ConcernCategory.INFORMATION),
        ({"tools_status": "guestToolsNotRunning"}, "vm.tools.not_running", ConcernCategory.INFORMATION),
    ],
)
def test_each_rule_fires_alone(change: dict[str, object], rule_id: str, category: ConcernCategory) -> None:
    found = evaluate(replace(CLEAN, **change))  # type: ignore[arg-type]
    assert [(c.id, c.category) for c in found] == [(rule_id, category)]
    assert found[0].label and found[0].assessment


def test_assessments_name_what_was_found() -> None:
    vm = replace(CLEAN, snapshot_count=3, guest_id="winNetStandardGuest", guest_full_name="Windows 2003",
                 disks=(replace(DISK, rdm=True, file="[DS1] db/lun.vmdk"),))
    text = {c.id: c.assessment for c in evaluate(vm)}
    assert "3 snapshot(s)" in text["vm.snapshot.present"]
    assert "Windows 2003" in text["vm.os.unsupported"]
    assert "[DS1] db/lun.vmdk" in text["vm.disk.rdm"]


def test_powered_off_vms_are_not_blamed_for_missing_ips_or_tools() -> None:
    off = replace(CLEAN, power_state=PowerState.OFF, guest_ips=(), tools_status="")
    assert _ids(off) == set()


def test_critical_first_then_warning_then_information() -> None:
    vm = replace(CLEAN, secure_boot=True, cbt_enabled=False, has_passthrough_device=True)
    assert [c.category for c in evaluate(vm)] == [ConcernCategory.CRITICAL, ConcernCategory.WARNING,
                                                  ConcernCategory.INFORMATION]


def test_rules_are_unique_data_and_extensible() -> None:
    assert len({r.id for r in RULES}) == len(RULES)
    big = Rule("vm.memory.large", ConcernCategory.INFORMATION, "Large memory",
               lambda vm: vm.memory_bytes > 1 << 40, "More than 1 TiB of memory; the copy takes a while.")
    vm = replace(CLEAN, memory_bytes=2 << 40)
    assert [c.id for c in evaluate(vm, (*RULES, big))] == ["vm.memory.large"]
    assert evaluate(vm) == ()


def test_supported_guests_are_a_plain_set() -> None:
    assert "windows2019srv_64Guest" in concerns.SUPPORTED_GUEST_IDS
    assert "vm.os.unsupported" not in _ids(replace(CLEAN, guest_id="windows11_64Guest"))
