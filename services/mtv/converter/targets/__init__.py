"""Where migrated VMs go: one small protocol, two implementations (local directory, Kubernetes).

Lifecycle of one VM on a target, every step idempotent (a duplicate request repeats nothing):
  prepare(vm)  before the disk copy: the namespace and one volume per disk; returns where each
               disk must be written (its sink)
  create(vm)   after the copy (and any format conversion): the VirtualMachine itself
  cleanup(...) on cancel or failure: delete what we created, only objects that carry our labels
               and field manager; never someone else's
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mtv.converter.manifests import TargetVm


@dataclass(frozen=True)
class Sink:
    """Where the transfer worker writes one disk.

    `uri` is a local file path (local target: a sparse file of the disk's capacity) or
    `cdi-upload://<namespace>/<datavolume>` (Kubernetes target: the transfer service uploads the
    bytes through CDI's upload proxy into that DataVolume, which was created with `upload: {}`).
    """

    disk_key: int
    uri: str
    volume_name: str
    size_bytes: int


@dataclass(frozen=True)
class Created:
    location: str  # LOCAL: the manifest directory; KUBERNETES: the VirtualMachine's uid
    objects: tuple[str, ...]


@dataclass(frozen=True)
class VmRef:
    """What cleanup needs to find a VM's objects (the request carries no Vm)."""

    namespace: str
    plan_name: str
    vm_id: str
    name: str


class Target(Protocol):
    def prepare(self, vm: TargetVm) -> list[Sink]:
        """Create the namespace (if needed) and the volumes; return one sink per disk, in order."""
        ...

    def create(self, vm: TargetVm) -> Created:
        """Create (or leave unchanged) the VirtualMachine; its volumes exist from prepare."""
        ...

    def cleanup(self, ref: VmRef) -> list[str]:
        """Delete our objects of this VM; return what was deleted (empty when nothing was left)."""
        ...


CDI_UPLOAD_SCHEME = "cdi-upload://"


def cdi_upload_uri(namespace: str, name: str) -> str:
    return f"{CDI_UPLOAD_SCHEME}{namespace}/{name}"


__all__ = ["CDI_UPLOAD_SCHEME", "Created", "Sink", "Target", "VmRef", "cdi_upload_uri"]
