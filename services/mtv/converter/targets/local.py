"""The local-directory target (the embedded default): manifests plus disk images, ready for
`kubectl apply -f <dir>` followed by `virtctl image-upload dv <name> --no-create --image-path=<image>`.

Layout of one VM:

    <root>/<namespace>/<vm>/
        00-namespace.yaml
        10-datavolume-<volume>.yaml   annotation mtv.konveyor.io/disk-image: disks/<volume>.img
        20-virtualmachine.yaml
        disks/<volume>.img            sparse raw image the transfer worker writes
        .mtv-owner.json               plan and VM id: cleanup deletes only directories we own

The numeric prefixes make `kubectl apply -f <dir>` create the namespace first (it reads files in
name order); kubectl only reads .yaml/.json files, so the images beside them are left alone.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from mtv.converter.errors import ConverterError, ObjectConflictError, TargetUnavailableError
from mtv.converter.manifests import ANNOTATION_DISK_IMAGE, TargetVm
from mtv.converter.targets import Created, Sink, VmRef

OWNER_FILE = ".mtv-owner.json"
VM_FILE = "20-virtualmachine.yaml"


class LocalTarget:
    def __init__(self, root: Path) -> None:
        self.root = root

    def vm_dir(self, namespace: str, name: str) -> Path:
        return self.root / namespace / name

    def prepare(self, vm: TargetVm) -> list[Sink]:
        directory = self.vm_dir(vm.namespace, vm.name)
        created: list[str] = []
        try:
            self._claim(directory, vm.vm_id, vm.labels)
            _write_yaml(directory / "00-namespace.yaml", _namespace(vm.namespace))
            sinks = []
            for disk, dv in zip(vm.disks, vm.datavolumes, strict=True):
                image = directory / "disks" / f"{disk.volume_name}.img"
                _sparse_file(image, disk.disk.capacity_bytes)
                dv = _with_annotation(dv, ANNOTATION_DISK_IMAGE, str(image.relative_to(directory)))
                manifest = directory / f"10-datavolume-{disk.volume_name}.yaml"
                _write_yaml(manifest, dv)
                created += [str(manifest), str(image)]
                sinks.append(Sink(disk.disk.key, str(image), disk.volume_name, disk.disk.capacity_bytes))
            return sinks
        except OSError as exc:
            raise TargetUnavailableError(
                f"cannot write {directory}: {exc}", field="target.path", vm_id=vm.vm_id, vm_name=vm.vm_name,
                fix="choose a writable directory (plan target.path or MTV_LOCAL_TARGET_ROOT)",
                created_objects=created,
            ) from exc

    def image_paths(self, vm: TargetVm) -> list[Path]:
        directory = self.vm_dir(vm.namespace, vm.name)
        return [directory / "disks" / f"{d.volume_name}.img" for d in vm.disks]

    def existing(self, vm: TargetVm) -> list[str]:
        """Files already written for this VM (what a failure report lists as created)."""
        directory = self.vm_dir(vm.namespace, vm.name)
        if _read_owner(directory) is None:
            return []
        return sorted(str(p) for p in directory.rglob("*") if p.is_file() and p.name != OWNER_FILE)

    def create(self, vm: TargetVm) -> Created:
        directory = self.vm_dir(vm.namespace, vm.name)
        try:
            self._claim(directory, vm.vm_id, vm.labels)
            missing = [str(p) for p in self.image_paths(vm) if not p.exists()]
            if missing:
                raise TargetUnavailableError(
                    f"disk images are missing: {', '.join(missing)}", field="disks", vm_id=vm.vm_id,
                    vm_name=vm.vm_name, fix="run prepare and the disk transfer before creating the VM",
                    created_objects=self.existing(vm),
                )
            _write_yaml(directory / VM_FILE, vm.virtual_machine)
        except OSError as exc:
            raise TargetUnavailableError(
                f"cannot write {directory}: {exc}", field="target.path", vm_id=vm.vm_id, vm_name=vm.vm_name,
                fix="choose a writable directory (plan target.path or MTV_LOCAL_TARGET_ROOT)",
            ) from exc
        return Created(str(directory), (str(directory / VM_FILE),))

    def cleanup(self, ref: VmRef) -> list[str]:
        directory = self.vm_dir(ref.namespace, ref.name)
        owner = _read_owner(directory)
        if owner is None:
            return []
        if owner.get("vm_id") != ref.vm_id:
            raise ObjectConflictError(
                f"{directory} belongs to VM {owner.get('vm_id')!r}, not to {ref.vm_id!r}", field="target_name",
                vm_id=ref.vm_id, fix="nothing was deleted; check the target name of the cleanup request",
            )
        deleted = sorted(str(p) for p in directory.rglob("*") if p.is_file() and p.name != OWNER_FILE)
        shutil.rmtree(directory)
        return deleted

    def _claim(self, directory: Path, vm_id: str, labels: dict[str, str]) -> None:
        """Mark the directory as this VM's; refuse one that another VM (or a person) owns."""
        owner = _read_owner(directory)
        if owner is None and directory.exists() and any(directory.iterdir()):
            raise ObjectConflictError(
                f"{directory} exists and was not created by mtv-converter", field="target_name", vm_id=vm_id,
                fix="move that directory away or give the VM another target name",
            )
        if owner is not None and owner.get("vm_id") != vm_id:
            raise ObjectConflictError(
                f"{directory} already holds VM {owner.get('vm_id')!r}", field="target_name", vm_id=vm_id,
                fix="give the VM another target name (the planner adds a suffix on collisions)",
            )
        if owner is None:
            directory.mkdir(parents=True, exist_ok=True)
            _atomic_write(directory / OWNER_FILE, json.dumps({"vm_id": vm_id, "labels": labels}, indent=1))


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _with_annotation(manifest: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    metadata = {**manifest["metadata"], "annotations": {**manifest["metadata"].get("annotations", {}), key: value}}
    return {**manifest, "metadata": metadata}


def _sparse_file(path: Path, size: int) -> None:
    """A sparse file of `size` bytes. An existing image is kept as it is: a duplicate prepare
    must never wipe bytes the transfer already wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return
    with open(path, "xb") as out:
        out.truncate(size)


def _read_owner(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / OWNER_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConverterError(f"{directory / OWNER_FILE} is unreadable: {exc}", field="target.path",
                             fix="remove the directory by hand") from exc
    return data if isinstance(data, dict) else None


def _write_yaml(path: Path, manifest: dict[str, Any]) -> None:
    _atomic_write(path, yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False))


def _atomic_write(path: Path, text: str) -> None:
    # Write beside and rename, so a reader (or a crash) never sees half a manifest.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
