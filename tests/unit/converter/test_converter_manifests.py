"""Golden manifests for several VM shapes, and bad input that names the VM, the field and the fix.

The expected YAML under golden/ is reviewed by hand; regenerate with MTV_UPDATE_GOLDEN=1 only
after a deliberate mapping change, and review the diff.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from fixtures import converter_vms as s
from mtv import model as m
from mtv.converter import manifests, naming
from mtv.converter.errors import (
    InvalidMappingError,
    InvalidNameError,
    MappingError,
    UnmappedNetworkError,
    UnmappedStorageError,
)
from mtv.converter.mapping import MIB, volume_size

GOLDEN = Path(__file__).parent / "golden"


def _check_golden(case: str, target: manifests.TargetVm) -> None:
    docs = [*target.datavolumes, target.virtual_machine]
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("MTV_UPDATE_GOLDEN") == "1":
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    assert docs == list(yaml.safe_load_all(path.read_text())), f"differs from {path}"


def test_multi_disk_multi_nic() -> None:
    """Disks in source order on two datastores (Filesystem + Block); pod, multus and an ignored NIC."""
    target = manifests.build(s.multi_disk_vm(), s.plan(), "db01")
    _check_golden("multi_disk_multi_nic", target)
    assert [d.volume_name for d in target.disks] == ["plan-a-db01-disk-0", "plan-a-db01-disk-1", "plan-a-db01-disk-2"]


def test_efi_secure_boot_powered_on() -> None:
    """EFI + secure boot turns SMM on; target power 'auto' keeps the source's 'on' -> Always."""
    target = manifests.build(s.efi_vm(), s.plan(), "win2022")
    _check_golden("efi_secure_boot", target)
    spec = target.virtual_machine["spec"]
    assert spec["runStrategy"] == "Always"
    assert spec["template"]["spec"]["domain"]["features"] == {"smm": {"enabled": True}}


def test_normalized_name_with_collision_suffix_and_compatibility_mode() -> None:
    """An odd source name, a clash in the namespace (deterministic suffix), only an ignored NIC,
    target power forced off, and compatibility mode (SATA + E1000E) because the guest was not converted."""
    vm = replace(s.odd_name_vm(), nics=(*s.odd_name_vm().nics,
                                        m.Nic(mac="00:50:56:cc:00:02", network_id="dvportgroup-12")))
    name = naming.target_name(vm.name, vm.id, taken={"web-server-01.example-prod"})
    assert name == naming.target_name(vm.name, vm.id, taken={"web-server-01.example-prod"})  # stable on re-run
    plan = s.plan(target_power_state=m.TargetPowerState.OFF, pvc_name_template="{{vm}}-{{vmid}}-{{index}}")
    target = manifests.build(vm, plan, name, manifests.MappingOptions(compatibility_mode=True))
    _check_golden("normalized_name_compat", target)
    base = "web-server-01.example-prod"
    assert target.name.startswith(f"{base}-") and len(target.name) == len(base) + 5


def test_long_names_are_truncated_keeping_the_disk_index() -> None:
    vm = replace(s.multi_disk_vm(), name="x" * 80)
    name = naming.target_name(vm.name, vm.id)
    plan = s.plan(name="a-very-long-plan-name-" * 4)
    target = manifests.build(vm, plan, name)
    _check_golden("long_names", target)
    names = [d.volume_name for d in target.disks]
    assert all(len(n) <= 63 and naming.is_valid(n) for n in names)
    assert [n[-7:] for n in names] == ["-disk-0", "-disk-1", "-disk-2"]


def test_volume_size_rounds_up_and_adds_filesystem_overhead() -> None:
    assert volume_size(10 * MIB, "Block") == 10 * MIB
    assert volume_size(10 * MIB + 1, "Block") == 11 * MIB
    assert volume_size(90 * MIB, "Filesystem") == 100 * MIB  # 90 / (1 - 0.10)
    assert volume_size(0, "Block") == MIB


@pytest.mark.parametrize(
    ("vm", "plan", "error", "field", "words"),
    [
        (s.odd_name_vm(name="日本語 ___"), s.plan(), InvalidNameError, "vm.name", "vms[].target_name"),
        (s.multi_disk_vm(), s.plan(network_map=s.plan().network_map[1:]), UnmappedNetworkError, "network_map",
         'network "prod" (dvportgroup-12) is not mapped'),
        (s.multi_disk_vm(), s.plan(storage_map=s.plan().storage_map[:1]), UnmappedStorageError, "storage_map",
         "datastore \"fast-ds\" (datastore-9)"),
        (s.multi_disk_vm(), s.plan(network_map=(m.NetworkMapping("prod", m.NetworkDestination.POD),
                                                m.NetworkMapping("network-5", m.NetworkDestination.POD),
                                                m.NetworkMapping("backup", m.NetworkDestination.IGNORED))),
         InvalidMappingError, "network_map[network-5].type", "at most one pod network"),
        (s.efi_vm(), s.plan(storage_map=(m.StorageMapping("datastore-1", ""),)), InvalidMappingError,
         "storage_map[datastore-1].storage_class", "no storage class"),
        (s.efi_vm(), s.plan(storage_map=(m.StorageMapping("datastore-1", "sc", "Directory"),)),
         InvalidMappingError, "storage_map[datastore-1].volume_mode", "Filesystem or Block"),
        (s.efi_vm(), s.plan(pvc_name_template="{{plan}}-{{disk}}"), InvalidNameError, "pvc_name_template",
         "unknown variable {{disk}}"),
        (s.multi_disk_vm(), s.plan(pvc_name_template="{{vm}}-data"), InvalidNameError, "pvc_name_template",
         "include {{index}}"),
        (s.efi_vm(), s.plan(namespace="Bad_NS"), InvalidNameError, "target_namespace", "DNS-1123"),
    ],
    ids=["empty-name", "unmapped-network", "unmapped-datastore", "two-pod-nics", "no-storage-class",
         "bad-volume-mode", "unknown-template-variable", "template-without-index", "bad-namespace"],
)
def test_bad_input_names_vm_field_and_fix(vm: m.Vm, plan: m.PlanSpec, error: type[MappingError], field: str,
                                          words: str) -> None:
    with pytest.raises(error) as info:
        name = naming.target_name(vm.name, vm.id)
        manifests.build(vm, plan, name)
    err = info.value
    assert err.field == field
    assert words in str(err)
    assert vm.id in str(err) and "Fix: " in str(err)
    assert isinstance(err, MappingError)


def test_invalid_requested_target_name_is_refused() -> None:
    with pytest.raises(InvalidNameError) as info:
        naming.target_name("db01", "vm-42", requested="DB_01")
    assert info.value.field == "vms[].target_name"
    with pytest.raises(InvalidNameError) as info2:
        manifests.build(s.efi_vm(), s.plan(), "Not Valid")
    assert info2.value.field == "target_name"
