"""The Kubernetes target: server-side apply of DataVolumes and the VirtualMachine.

Every write is a server-side apply with field manager `mtv-converter` and `fieldValidation=Strict`
(a field the cluster's CRD does not know fails instead of being pruned silently). Applying the
same manifest twice changes nothing, so duplicate requests are harmless. We never send
`force=true`: an object of the same name that another manager created is reported as a conflict,
not taken over — we check ownership before applying and also report the API's own 409.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from mtv.converter.errors import (
    ConverterError,
    MissingStorageClassError,
    ObjectConflictError,
    TargetError,
    TargetUnavailableError,
)
from mtv.converter.manifests import DV_API, FIELD_MANAGER, LABEL_MANAGED_BY, LABEL_PLAN, LABEL_VM_ID, VM_API, TargetVm
from mtv.converter.naming import label_value
from mtv.converter.targets import Created, Sink, VmRef, cdi_upload_uri

APPLY = "application/apply-patch+yaml"


def api_client(kubeconfig: str = "", context: str = "") -> client.ApiClient:
    """A client from `kubeconfig` (else $KUBECONFIG, else ~/.kube/config) and optional context."""
    try:
        return config.new_client_from_config(config_file=kubeconfig or None, context=context or None)
    except (config.ConfigException, OSError) as exc:
        raise TargetUnavailableError(
            f"cannot load kubeconfig {kubeconfig or '$KUBECONFIG'}: {exc}", field="kubeconfig",
            fix="set MTV_KUBECONFIG (or KUBECONFIG) to a kubeconfig of the target cluster",
        ) from exc


class KubernetesTarget:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    # --- the Target protocol -------------------------------------------------------------------

    def prepare(self, vm: TargetVm) -> list[Sink]:
        created: list[str] = []
        with _recording(vm, created):
            self._check_storage_classes(vm)
            self._ensure_namespace(vm, created)
            for dv in vm.datavolumes:
                self._apply(vm, DV_API, dv, field="pvc_name_template")
                created.append(_ref(dv))
        return [Sink(d.disk.key, cdi_upload_uri(vm.namespace, d.volume_name), d.volume_name, d.disk.capacity_bytes)
                for d in vm.disks]

    def create(self, vm: TargetVm) -> Created:
        created: list[str] = []
        with _recording(vm, created):
            # The volumes from prepare belong to this VM's record too, should the VM fail.
            created += self._ours(vm.namespace, DV_API, _selector(vm.labels))
            self._ensure_namespace(vm, created)
            applied = self._apply(vm, VM_API, vm.virtual_machine, field="target_name")
        return Created(str(applied["metadata"]["uid"]), (*created, _ref(vm.virtual_machine)))

    def cleanup(self, ref: VmRef) -> list[str]:
        selector = _selector({LABEL_MANAGED_BY: FIELD_MANAGER, LABEL_PLAN: label_value(ref.plan_name),
                              LABEL_VM_ID: label_value(ref.vm_id)})
        deleted: list[str] = []
        try:
            # The VM first, so nothing is left pointing at a deleted volume.
            for group, version, plural in (VM_API, DV_API):
                listed = self.custom.list_namespaced_custom_object(group, version, ref.namespace, plural,
                                                                   label_selector=selector)
                for obj in listed["items"]:
                    if not _managed_by_us(obj):
                        continue  # labels can be copied; the field manager shows who really applied it
                    self._delete(group, version, plural, obj)
                    deleted.append(_ref(obj))
        except ApiException as exc:
            raise _api_error(exc, ref.vm_id, "", "cleanup").with_created(()) from exc
        return deleted

    def _delete(self, group: str, version: str, plural: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        try:
            self.custom.delete_namespaced_custom_object(group, version, meta["namespace"], plural, meta["name"])
        except ApiException as exc:
            if exc.status != 404:  # already gone: a duplicate cleanup
                raise

    # --- helpers -------------------------------------------------------------------------------

    def _ours(self, namespace: str, api: tuple[str, str, str], selector: str) -> list[str]:
        group, version, plural = api
        listed = self.custom.list_namespaced_custom_object(group, version, namespace, plural, label_selector=selector)
        return [_ref(obj) for obj in listed["items"] if _managed_by_us(obj)]

    def _check_storage_classes(self, vm: TargetVm) -> None:
        for disk in vm.disks:
            name = disk.storage.storage_class
            try:
                self.storage.read_storage_class(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                raise MissingStorageClassError(
                    f"storage class {name!r} does not exist on the target cluster",
                    field=f"storage_map[{disk.storage.source}].storage_class", vm_id=vm.vm_id, vm_name=vm.vm_name,
                    fix="map the datastore to an existing StorageClass (kubectl get storageclass)",
                ) from None

    def _ensure_namespace(self, vm: TargetVm, created: list[str]) -> None:
        try:
            self.core.read_namespace(vm.namespace)
            return
        except ApiException as exc:
            if exc.status != 404:
                raise
        body = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": vm.namespace, "labels": {LABEL_MANAGED_BY: FIELD_MANAGER}}}
        try:
            self.core.create_namespace(body, field_manager=FIELD_MANAGER)
            created.append(f"Namespace/{vm.namespace}")
        except ApiException as exc:
            if exc.status != 409:  # created meanwhile by someone else: fine, it exists
                raise

    def _apply(self, vm: TargetVm, api: tuple[str, str, str], manifest: dict[str, Any], field: str) -> dict[str, Any]:
        group, version, plural = api
        name = manifest["metadata"]["name"]
        try:
            existing = self.custom.get_namespaced_custom_object(group, version, vm.namespace, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            existing = None
        if existing is not None and not _managed_by_us(existing):
            managers = sorted({m.get("manager", "?") for m in existing["metadata"].get("managedFields") or []})
            raise ObjectConflictError(
                f"{_ref(manifest)} already exists and is managed by {', '.join(managers) or 'someone else'}, "
                f"not {FIELD_MANAGER}; it was left unchanged",
                field=field, vm_id=vm.vm_id, vm_name=vm.vm_name,
                fix="delete or rename that object, or choose another target name / pvc_name_template",
            )
        try:
            # Raw response: the client maps only 200 for PATCH, so an apply that creates the
            # object (201) would come back as None.
            response = self.custom.patch_namespaced_custom_object(
                group, version, vm.namespace, plural, name, manifest,
                field_manager=FIELD_MANAGER, field_validation="Strict", _content_type=APPLY,
                _preload_content=False,
            )
        except ApiException as exc:
            raise _api_error(exc, vm.vm_id, vm.vm_name, field, _ref(manifest)) from exc
        result: dict[str, Any] = json.loads(response.data)
        return result


def _ref(manifest: dict[str, Any]) -> str:
    meta = manifest["metadata"]
    return f"{manifest['kind']}/{meta.get('namespace', '')}/{meta['name']}"


def _selector(labels: dict[str, str]) -> str:
    keys = (LABEL_MANAGED_BY, LABEL_PLAN, LABEL_VM_ID)
    return ",".join(f"{key}={labels[key]}" for key in keys)


def _managed_by_us(obj: dict[str, Any]) -> bool:
    entries = obj["metadata"].get("managedFields") or []
    return any(m.get("manager") == FIELD_MANAGER and m.get("operation") == "Apply" for m in entries)


def _api_error(exc: ApiException, vm_id: str, vm_name: str, field: str, what: str = "") -> TargetError:
    try:
        message = json.loads(exc.body or "{}").get("message", exc.reason)
    except ValueError:
        message = exc.reason
    if exc.status == 409:
        return ObjectConflictError(
            f"applying {what} conflicts with another field manager: {message}", field=field, vm_id=vm_id,
            vm_name=vm_name, fix="the object is owned by someone else; remove it or choose another name",
        )
    # A server-side apply with a field the schema does not know fails as 500 "failed to create
    # typed patch object ... field not declared in schema", not as a 4xx.
    if exc.status in (400, 422) or "typed patch object" in str(message):
        return TargetError(
            f"the cluster rejected {what}: {message}", field=field, vm_id=vm_id, vm_name=vm_name,
            fix="the target's KubeVirt/CDI version does not accept this manifest; check the CRDs installed",
        )
    return TargetUnavailableError(
        f"the API server answered {exc.status} for {what or 'a request'}: {message}", field="kubeconfig",
        vm_id=vm_id, vm_name=vm_name, fix="check the credentials and that KubeVirt and CDI are installed",
    )


class _recording:
    """Context manager: attach the objects created so far to any converter error, and turn
    connection failures into TargetUnavailableError naming the kubeconfig."""

    def __init__(self, vm: TargetVm, created: list[str]) -> None:
        self.vm = vm
        self.created = created

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, ConverterError):
            exc.created_objects = tuple(self.created)
            return
        if isinstance(exc, ApiException):
            raise _api_error(exc, self.vm.vm_id, self.vm.vm_name, "kubeconfig").with_created(self.created) from exc
        if isinstance(exc, HTTPError | OSError):
            raise TargetUnavailableError(
                f"the API server cannot be reached: {exc}", field="kubeconfig", vm_id=self.vm.vm_id,
                vm_name=self.vm.vm_name, fix="check MTV_KUBECONFIG points at a running cluster",
                created_objects=self.created,
            ) from exc
