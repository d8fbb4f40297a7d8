"""VM migration concerns, Forklift style: rules as plain data, evaluated on `mtv.model.Vm`.

A rule is an id, a category, a short label, a predicate and an assessment (what was found and what to
do). To add one, append a `Rule` to `RULES` (or pass your own tuple to `evaluate`); nothing else needs
to change. Categories: CRITICAL blocks the migration, WARNING means the result may need work,
INFORMATION is worth knowing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mtv.model import Concern, ConcernCategory, Vm

CRITICAL, WARNING, INFO = ConcernCategory.CRITICAL, ConcernCategory.WARNING, ConcernCategory.INFORMATION

# Guests the conversion supports (Forklift: RHEL 7-10, Windows 10/11, Windows Server 2016-2025),
# as vSphere guest ids. Keep in sync with the converter's virt-v2v capabilities.
SUPPORTED_GUEST_IDS = frozenset({
    "rhel7_64Guest", "rhel8_64Guest", "rhel9_64Guest", "rhel10_64Guest",
    "windows9_64Guest",  # Windows 10
    "windows11_64Guest",
    "windows9Server64Guest",  # Windows Server 2016
    "windows2019srv_64Guest", "windows2019srvNext_64Guest",  # 2019, 2022
    "windows2022srvNext_64Guest",  # 2025
})
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Rule:
    id: str
    category: ConcernCategory
    label: str
    applies: Callable[[Vm], bool]
    # Text, or a function of the VM when the assessment should name what was found.
    assessment: str | Callable[[Vm], str]

    def concern(self, vm: Vm) -> Concern | None:
        if not self.applies(vm):
            return None
        text = self.assessment(vm) if callable(self.assessment) else self.assessment
        return Concern(id=self.id, category=self.category, label=self.label, assessment=text)


def _disk_files(vm: Vm, pick: Callable[..., bool]) -> str:
    return ", ".join(d.file or f"disk {d.key}" for d in vm.disks if pick(d))


RULES: tuple[Rule, ...] = (
    # --- critical -----------------------------------------------------------------------------------
    Rule("vm.device.passthrough", CRITICAL, "Passthrough device",
         lambda vm: vm.has_passthrough_device,
         "The VM has a PCI or SCSI passthrough device, which cannot be migrated. Remove the device "
         "before migrating."),
    Rule("vm.disk.not_on_datastore", CRITICAL, "Disk not on a datastore",
         lambda vm: any(not d.datastore_id and not d.datastore_name for d in vm.disks),
         lambda vm: f"Disk(s) {_disk_files(vm, lambda d: not d.datastore_id and not d.datastore_name)} are not "
                    "on a datastore, so they cannot be read. Move them to a datastore."),
    Rule("vm.disk.capacity_invalid", CRITICAL, "Disk with no capacity",
         lambda vm: any(d.capacity_bytes <= 0 for d in vm.disks),
         lambda vm: f"Disk(s) {_disk_files(vm, lambda d: d.capacity_bytes <= 0)} report a capacity of 0 bytes; "
                    "the target volume size cannot be determined. Check the disk in vSphere."),
    # --- warning ------------------------------------------------------------------------------------
    Rule("vm.cbt.disabled", WARNING, "Changed Block Tracking disabled",
         lambda vm: not vm.cbt_enabled,
         "CBT is not enabled, so only cold migration is possible. Enable it (ctkEnabled) for warm migration."),
    Rule("vm.disk.shared", WARNING, "Shared disk",
         lambda vm: any(d.sharing not in ("", "sharingNone") for d in vm.disks),
         lambda vm: f"Disk(s) {_disk_files(vm, lambda d: d.sharing not in ('', 'sharingNone'))} are shared "
                    "(multi-writer). Shared disks are migrated once; other VMs using them need manual work."),
    Rule("vm.disk.independent", WARNING, "Independent disk",
         lambda vm: any(d.mode.independent for d in vm.disks),
         lambda vm: f"Disk(s) {_disk_files(vm, lambda d: d.mode.independent)} are independent: snapshots do "
                    "not include them, so warm migration cannot copy them incrementally."),
    Rule("vm.disk.rdm", WARNING, "Raw device mapping",
         lambda vm: any(d.rdm for d in vm.disks),
         lambda vm: f"Disk(s) {_disk_files(vm, lambda d: d.rdm)} are raw device mappings (RDM); they are not "
                    "copied. Migrate the LUN separately."),
    Rule("vm.device.usb_controller", WARNING, "USB controller",
         lambda vm: vm.has_usb_controller,
         "The VM has a USB controller; USB devices are not migrated."),
    Rule("vm.nic.sriov", WARNING, "SR-IOV network interface",
         lambda vm: any(n.device_type == "sriov" for n in vm.nics),
         "The VM has an SR-IOV NIC; map it to a target network that supports SR-IOV, or it is lost."),
    Rule("vm.snapshot.present", WARNING, "Snapshots present",
         lambda vm: vm.snapshot_count > 0,
         lambda vm: f"The VM has {vm.snapshot_count} snapshot(s). Only the current state is migrated; "
                    "consolidate or remove snapshots first."),
    Rule("vm.os.unsupported", WARNING, "Unsupported guest operating system",
         lambda vm: vm.guest_id not in SUPPORTED_GUEST_IDS,
         lambda vm: f"Guest OS {vm.guest_full_name or vm.guest_id or 'unknown'!r} is not one the conversion "
                    "supports (RHEL 7-10, Windows 10/11, Windows Server 2016-2025); the VM may not boot."),
    Rule("vm.name.invalid", WARNING, "Name is not a valid DNS-1123 label",
         lambda vm: not DNS1123_LABEL.match(vm.name),
         lambda vm: f"VM name {vm.name!r} is not a DNS-1123 label; the target VM gets a converted name "
                    "(lowercase, '-' for other characters). Set a target name in the plan to choose it."),
    Rule("vm.guest.no_ips", WARNING, "No guest IP addresses",
         lambda vm: vm.power_state.value == "on" and not vm.guest_ips,
         "The running VM reports no IP address (VMware Tools not running?); static IPs cannot be preserved."),
    # --- information --------------------------------------------------------------------------------
    Rule("vm.firmware.secure_boot", INFO, "UEFI secure boot",
         lambda vm: vm.secure_boot,
         "Secure boot is enabled; the target VM is created with secure boot too."),
    Rule("vm.tools.not_running", INFO, "VMware Tools not running",
         lambda vm: vm.power_state.value == "on" and vm.tools_status not in ("guestToolsRunning", "toolsOk"),
         "VMware Tools are not running: the guest cannot be shut down gracefully; the VM is powered off."),
)


def evaluate(vm: Vm, rules: Sequence[Rule] = RULES) -> tuple[Concern, ...]:
    """The concerns of `vm`, critical first, in rule order within a category."""
    order = {CRITICAL: 0, WARNING: 1, INFO: 2}
    found = [c for c in (rule.concern(vm) for rule in rules) if c is not None]
    return tuple(sorted(found, key=lambda c: order[c.category]))
