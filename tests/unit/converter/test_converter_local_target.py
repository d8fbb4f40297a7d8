"""The local-directory target: valid YAML with the right kinds, disk images where the manifests say."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from fixtures import converter_vms as s
from mtv.converter import diskformat, manifests
from mtv.converter.errors import ObjectConflictError, TargetUnavailableError
from mtv.converter.targets import VmRef
from mtv.converter.targets.local import LocalTarget


def _docs(directory: Path) -> list[dict]:
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_prepare_then_create_writes_applyable_manifests_and_images(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path)
    vm = manifests.build(s.multi_disk_vm(), s.plan(), "db01")
    sinks = target.prepare(vm)
    directory = tmp_path / "migrated" / "db01"

    assert [x.disk_key for x in sinks] == [2000, 2001, 2002]
    for sink, disk in zip(sinks, vm.disks, strict=True):
        image = Path(sink.uri)
        assert image.parent == directory / "disks"
        assert image.stat().st_size == disk.disk.capacity_bytes == sink.size_bytes
        assert image.stat().st_blocks == 0  # sparse: nothing allocated until the transfer writes

    # The transfer writes the first disk as a VMDK; convert turns it into raw in place.
    first = Path(sinks[0].uri)
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(first), "8M"], check=True)
    assert diskformat.ensure_format(first) is True

    created = target.create(vm)
    assert created.location == str(directory)
    docs = _docs(directory)
    # kubectl apply -f <dir> reads files in name order: namespace, volumes, then the VM.
    assert [d["kind"] for d in docs] == ["Namespace", "DataVolume", "DataVolume", "DataVolume", "VirtualMachine"]
    assert docs[0]["metadata"]["name"] == "migrated"
    for dv in docs[1:4]:
        image = directory / dv["metadata"]["annotations"][manifests.ANNOTATION_DISK_IMAGE]
        assert image.is_file(), image
        assert dv["spec"]["source"] == {"upload": {}}
    vm_doc = docs[4]
    volumes = [v["dataVolume"]["name"] for v in vm_doc["spec"]["template"]["spec"]["volumes"]]
    assert volumes == [dv["metadata"]["name"] for dv in docs[1:4]]
    assert vm_doc == vm.virtual_machine


def test_duplicate_prepare_keeps_written_bytes(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path)
    vm = manifests.build(s.efi_vm(), s.plan(), "win2022")
    image = Path(target.prepare(vm)[0].uri)
    with open(image, "r+b") as out:
        out.write(b"guest bytes")
    assert target.prepare(vm)[0].uri == str(image)
    with open(image, "rb") as src:
        assert src.read(11) == b"guest bytes"


def test_another_vm_or_foreign_directory_is_not_taken_over(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path)
    target.prepare(manifests.build(s.efi_vm(), s.plan(), "win2022"))
    other = manifests.build(s.multi_disk_vm(), s.plan(), "win2022")  # vm-42 under vm-77's name
    with pytest.raises(ObjectConflictError) as info:
        target.prepare(other)
    assert info.value.field == "target_name"

    foreign = tmp_path / "migrated" / "db01"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ObjectConflictError):
        target.prepare(manifests.build(s.multi_disk_vm(), s.plan(), "db01"))
    assert (foreign / "notes.txt").read_text() == "mine"


def test_cleanup_deletes_only_our_vm_and_is_idempotent(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path)
    vm = manifests.build(s.efi_vm(), s.plan(), "win2022")
    target.prepare(vm)
    with pytest.raises(ObjectConflictError):
        target.cleanup(VmRef("migrated", "Plan A", "vm-42", "win2022"))
    deleted = target.cleanup(VmRef("migrated", "Plan A", "vm-77", "win2022"))
    assert any(d.endswith(".img") for d in deleted) and any(d.endswith(".yaml") for d in deleted)
    assert not (tmp_path / "migrated" / "win2022").exists()
    assert target.cleanup(VmRef("migrated", "Plan A", "vm-77", "win2022")) == []


def test_create_failure_lists_what_was_already_written(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path)
    vm = manifests.build(s.multi_disk_vm(), s.plan(), "db01")
    sinks = target.prepare(vm)
    Path(sinks[1].uri).unlink()  # a disk that never arrived
    with pytest.raises(TargetUnavailableError) as info:
        target.create(vm)
    assert info.value.field == "disks" and sinks[1].uri in str(info.value)
    assert sinks[0].uri in info.value.created_objects
    assert any(o.endswith("10-datavolume-plan-a-db01-disk-1.yaml") for o in info.value.created_objects)
    assert not (tmp_path / "migrated" / "db01" / "20-virtualmachine.yaml").exists()
