"""The Kubernetes target against a real kube-apiserver with the upstream KubeVirt/CDI CRDs
(strict field validation: a field the CRD does not know fails the apply)."""

from __future__ import annotations

import pytest
from kubernetes import client

from fixtures import converter_vms as s
from fixtures.k8s import KubeApi
from mtv.converter import manifests
from mtv.converter.errors import MissingStorageClassError, ObjectConflictError, TargetError
from mtv.converter.targets import VmRef
from mtv.converter.targets.kubernetes import KubernetesTarget

pytestmark = pytest.mark.k8s


def _get(api: KubeApi, kind: tuple[str, str, str], namespace: str, name: str) -> dict:
    group, version, plural = kind
    return client.CustomObjectsApi(api.client).get_namespaced_custom_object(group, version, namespace, plural, name)


def _build(namespace: str) -> manifests.TargetVm:
    return manifests.build(s.multi_disk_vm(), s.plan(namespace), "db01")


def test_prepare_and_create_make_namespace_volumes_and_vm(k8s_api: KubeApi, k8s_namespace: str) -> None:
    k8s_api.storage_class("standard")
    k8s_api.storage_class("fast-block")
    target = KubernetesTarget(k8s_api.client)
    vm = _build(k8s_namespace)

    sinks = target.prepare(vm)
    assert [x.uri for x in sinks] == [f"cdi-upload://{k8s_namespace}/plan-a-db01-disk-{i}" for i in range(3)]
    created = target.create(vm)

    ns = client.CoreV1Api(k8s_api.client).read_namespace(k8s_namespace)
    assert ns.metadata.labels[manifests.LABEL_MANAGED_BY] == manifests.FIELD_MANAGER
    for dv in vm.datavolumes:
        live = _get(k8s_api, manifests.DV_API, k8s_namespace, dv["metadata"]["name"])
        assert live["spec"] == dv["spec"]
        assert live["metadata"]["labels"] == dv["metadata"]["labels"]
        assert live["metadata"]["annotations"] == dv["metadata"]["annotations"]
    live_vm = _get(k8s_api, manifests.VM_API, k8s_namespace, "db01")
    assert live_vm["metadata"]["uid"] == created.location
    # Nothing was pruned or defaulted away: what we mapped is what the cluster stores.
    assert live_vm["spec"] == vm.virtual_machine["spec"]
    assert live_vm["metadata"]["annotations"] == {
        manifests.ANNOTATION_SOURCE_NAME: "db01", manifests.ANNOTATION_SOURCE_ID: "vm-42"}
    managers = {m["manager"] for m in live_vm["metadata"]["managedFields"]}
    assert managers == {manifests.FIELD_MANAGER}


def test_applying_twice_changes_nothing(k8s_api: KubeApi, k8s_namespace: str) -> None:
    k8s_api.storage_class("standard")
    k8s_api.storage_class("fast-block")
    target = KubernetesTarget(k8s_api.client)
    vm = _build(k8s_namespace)
    target.prepare(vm)
    target.create(vm)
    before = {dv["metadata"]["name"]: _get(k8s_api, manifests.DV_API, k8s_namespace, dv["metadata"]["name"])
              ["metadata"]["resourceVersion"] for dv in vm.datavolumes}
    vm_before = _get(k8s_api, manifests.VM_API, k8s_namespace, "db01")["metadata"]["resourceVersion"]

    target.prepare(vm)
    again = target.create(vm)

    after = {name: _get(k8s_api, manifests.DV_API, k8s_namespace, name)["metadata"]["resourceVersion"]
             for name in before}
    assert after == before
    assert _get(k8s_api, manifests.VM_API, k8s_namespace, "db01")["metadata"]["resourceVersion"] == vm_before
    assert again.location == _get(k8s_api, manifests.VM_API, k8s_namespace, "db01")["metadata"]["uid"]


def test_foreign_object_is_reported_not_overwritten(k8s_api: KubeApi, k8s_namespace: str) -> None:
    k8s_api.storage_class("standard")
    k8s_api.storage_class("fast-block")
    client.CoreV1Api(k8s_api.client).create_namespace({"metadata": {"name": k8s_namespace}})
    foreign = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
               "metadata": {"name": "db01", "namespace": k8s_namespace},
               "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {"devices": {}}}}}}
    group, version, plural = manifests.VM_API
    custom = client.CustomObjectsApi(k8s_api.client)
    custom.create_namespaced_custom_object(group, version, k8s_namespace, plural, foreign, field_manager="someone-else")
    original = _get(k8s_api, manifests.VM_API, k8s_namespace, "db01")

    target = KubernetesTarget(k8s_api.client)
    vm = _build(k8s_namespace)
    target.prepare(vm)
    with pytest.raises(ObjectConflictError) as info:
        target.create(vm)
    assert info.value.field == "target_name"
    assert "someone-else" in str(info.value) and "vm-42" in str(info.value)
    still = _get(k8s_api, manifests.VM_API, k8s_namespace, "db01")
    assert still["metadata"]["resourceVersion"] == original["metadata"]["resourceVersion"]
    assert still["spec"] == original["spec"]

    # The API's own conflict check too: apply a field the other manager owns, without force.
    with pytest.raises(client.exceptions.ApiException) as api_info:
        custom.patch_namespaced_custom_object(
            group, version, k8s_namespace, plural, "db01",
            {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
             "metadata": {"name": "db01", "namespace": k8s_namespace}, "spec": {"runStrategy": "Halted"}},
            field_manager=manifests.FIELD_MANAGER, _content_type="application/apply-patch+yaml")
    assert api_info.value.status == 409


def test_missing_storage_class_names_the_field(k8s_api: KubeApi, k8s_namespace: str) -> None:
    k8s_api.storage_class("standard")
    plan = s.plan(k8s_namespace, storage_map=(s.plan().storage_map[0],
                                              s.plan().storage_map[1].__class__("fast-ds", "no-such-class", "Block")))
    vm = manifests.build(s.multi_disk_vm(), plan, "db01")
    with pytest.raises(MissingStorageClassError) as info:
        KubernetesTarget(k8s_api.client).prepare(vm)
    assert info.value.field == "storage_map[fast-ds].storage_class"
    assert "no-such-class" in str(info.value)
    # Checked before anything is created.
    assert info.value.created_objects == ()
    with pytest.raises(client.exceptions.ApiException) as ns:
        client.CoreV1Api(k8s_api.client).read_namespace(k8s_namespace)
    assert ns.value.status == 404


def test_cleanup_deletes_only_our_objects(k8s_api: KubeApi, k8s_namespace: str) -> None:
    k8s_api.storage_class("standard")
    k8s_api.storage_class("fast-block")
    target = KubernetesTarget(k8s_api.client)
    vm = _build(k8s_namespace)
    target.prepare(vm)
    target.create(vm)
    # A foreign object carrying our labels (copied, not applied by us) survives cleanup.
    group, version, plural = manifests.DV_API
    custom = client.CustomObjectsApi(k8s_api.client)
    impostor = {**vm.datavolumes[0], "metadata": {**vm.datavolumes[0]["metadata"], "name": "not-ours"}}
    custom.create_namespaced_custom_object(group, version, k8s_namespace, plural, impostor, field_manager="kubectl")

    ref = VmRef(k8s_namespace, "Plan A", "vm-42", "db01")
    deleted = target.cleanup(ref)
    assert deleted[0] == f"VirtualMachine/{k8s_namespace}/db01"
    assert sorted(deleted[1:]) == [f"DataVolume/{k8s_namespace}/plan-a-db01-disk-{i}" for i in range(3)]
    left = custom.list_namespaced_custom_object(group, version, k8s_namespace, plural)["items"]
    assert [o["metadata"]["name"] for o in left] == ["not-ours"]
    assert target.cleanup(ref) == []


def test_strict_validation_rejects_a_field_the_crd_does_not_know(k8s_api: KubeApi, k8s_namespace: str) -> None:
    k8s_api.storage_class("standard")
    vm = manifests.build(s.efi_vm(), s.plan(k8s_namespace), "win2022")
    domain = vm.virtual_machine["spec"]["template"]["spec"]["domain"]
    domain["cpu"]["sokets"] = 2  # misspelled: pruned silently without fieldValidation=Strict
    target = KubernetesTarget(k8s_api.client)
    target.prepare(vm)
    with pytest.raises(TargetError) as info:
        target.create(vm)
    assert "sokets" in str(info.value) and info.value.field == "target_name"
    assert f"DataVolume/{k8s_namespace}/plan-a-win2022-disk-0" in info.value.created_objects
