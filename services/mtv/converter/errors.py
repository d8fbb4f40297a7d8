"""Every error the converter reports, as one tree. Each names the VM, the field and the fix.

    ConverterError                    base: vm, field, reason, fix, created_objects
    ├── MappingError                  the plan or the VM cannot be mapped; retrying cannot help
    │   ├── InvalidNameError          a name is empty after normalization / not DNS-1123 / a template clash
    │   ├── UnmappedNetworkError      a NIC's network has no entry in the network map
    │   ├── UnmappedStorageError      a disk's datastore has no entry in the storage map
    │   └── InvalidMappingError       a map entry is malformed (two pod NICs, bad volume mode, ...)
    ├── TargetError                   the target refused or failed
    │   ├── ObjectConflictError       an object of that name exists and is not ours: never taken over
    │   ├── MissingStorageClassError  the storage class of a storage-map entry does not exist
    │   └── TargetUnavailableError    the target cannot be reached or written
    └── DiskConversionError           qemu-img could not read or convert a disk

The service turns any of these into a `TargetFailed` event (field, reason, created objects);
anything else is a bug and goes through the consumer's retry and dead-letter path.
"""

from __future__ import annotations

from collections.abc import Sequence


class ConverterError(Exception):
    """Base: `field` is the offending input (e.g. `network_map`), `fix` says what to do."""

    step = "convert"

    def __init__(
        self,
        reason: str,
        *,
        field: str,
        fix: str,
        vm_id: str = "",
        vm_name: str = "",
        created_objects: Sequence[str] = (),
    ) -> None:
        self.reason = reason
        self.field = field
        self.fix = fix
        self.vm_id = vm_id
        self.vm_name = vm_name
        self.created_objects = tuple(created_objects)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        who = f'VM "{self.vm_name}" ({self.vm_id})' if self.vm_name or self.vm_id else "target"
        return f"{who}: {self.field}: {self.reason}. Fix: {self.fix}"

    def __str__(self) -> str:
        return self.message

    def with_created(self, objects: Sequence[str]) -> ConverterError:
        """Record the objects created before this failure (TargetFailed.created_objects)."""
        self.created_objects = tuple(objects)
        return self


class MappingError(ConverterError):
    """Bad input: the plan or the source VM cannot be mapped to KubeVirt objects."""


class InvalidNameError(MappingError):
    pass


class UnmappedNetworkError(MappingError):
    pass


class UnmappedStorageError(MappingError):
    pass


class InvalidMappingError(MappingError):
    pass


class TargetError(ConverterError):
    """The target (directory or cluster) refused or failed."""


class ObjectConflictError(TargetError):
    pass


class MissingStorageClassError(TargetError):
    pass


class TargetUnavailableError(TargetError):
    pass


class DiskConversionError(ConverterError):
    pass
