"""Domain dataclasses survive the protobuf edge unchanged."""

from __future__ import annotations

from mtv import model as m


def _vm() -> m.Vm:
    return m.Vm(
        id="vm-42", name="Web 01", instance_uuid="5012-ab", path="/DC0/vm/prod/Web 01", power_state=m.PowerState.ON,
        guest_id="rhel9_64Guest", guest_full_name="Red Hat Enterprise Linux 9 (64-bit)", firmware=m.Firmware.EFI,
        secure_boot=True, cpu_sockets=2, cores_per_socket=4, memory_bytes=8 << 30,
        disks=(m.Disk(key=2000, file="[ds1] web/web.vmdk", capacity_bytes=20 << 30, datastore_id="datastore-1",
                      datastore_name="ds1", datacenter_path="DC0", thin=False,
                      mode=m.DiskMode.INDEPENDENT_PERSISTENT, sharing="sharingMultiWriter", bus="sata"),
               m.Disk(key=2001, file="[ds2] web/web_1.vmdk", capacity_bytes=1 << 30)),
        nics=(m.Nic(mac="00:50:56:aa:bb:cc", network_id="dvportgroup-1", device_type="e1000e",
                    network_name="prod"),),
        guest_ips=("10.0.0.5",), cbt_enabled=True, snapshot_count=2, tools_status="toolsOk", host_id="host-1",
        cluster_id="domain-c1", folder_id="group-v1", datacenter_id="datacenter-1", has_usb_controller=True,
        concerns=(m.Concern("vm.cbt.disabled", m.ConcernCategory.WARNING, "CBT off", "enable CBT"),),
    )


def test_vm_round_trips_through_protobuf() -> None:
    vm = _vm()
    assert m.vm_from_proto(m.vm_to_proto(vm)) == vm


def test_plan_round_trips_through_protobuf() -> None:
    plan = m.PlanSpec(
        name="wave-1", source_provider="vcenter", target_namespace="apps",
        vms=(m.PlanVm(id="vm-42"), m.PlanVm(name="db", target_name="db-new")),
        network_map=(m.NetworkMapping("prod", m.NetworkDestination.MULTUS, "apps/prod-net"),
                     m.NetworkMapping("backup", m.NetworkDestination.IGNORED)),
        storage_map=(m.StorageMapping("ds1", "fast", "Block", "ReadWriteMany"),),
        target_kind=m.TargetKind.KUBERNETES, target_context="prod-cluster",
        target_power_state=m.TargetPowerState.OFF, pvc_name_template="{{vm}}-{{index}}", max_in_flight=3,
    )
    assert m.plan_from_proto(m.plan_to_proto(plan)) == plan


def test_unset_proto_fields_get_domain_defaults() -> None:
    from mtv.v1 import plan_pb2

    plan = m.plan_from_proto(plan_pb2.PlanSpec(name="p"))
    assert plan.pvc_name_template == m.DEFAULT_PVC_NAME_TEMPLATE
    assert plan.max_in_flight == 10
    assert plan.target_power_state is m.TargetPowerState.AUTO
