"""The demo's calls to its Kubernetes target: read what the cluster offers (context, CDIConfig, StorageClasses,
DataVolumes) and create the namespace and Multus networks the demo plan maps to. Decisions: `cluster_target`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from mtv.converter.manifests import ANNOTATION_DISK_KEY, DV_API, LABEL_VM_ID
from mtv.devstack.cluster_target import ClusterTarget, choose_storage_class, choose_upload_url, network_attachment
from mtv.devstack.process import StackError

CDI_CONFIG = ("cdi.kubevirt.io", "v1beta1", "cdiconfigs", "config")
NAD_API = ("k8s.cni.cncf.io", "v1", "network-attachment-definitions")
T = TypeVar("T")


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


class Cluster:
    def __init__(self, kubeconfig: str, context: str = "") -> None:
        try:
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            self.context = context or str((active or {}).get("name", ""))
            self.api = config.new_client_from_config(config_file=kubeconfig, context=self.context or None)
        except (config.ConfigException, OSError, TypeError) as exc:
            raise StackError(f"KUBECONFIG={kubeconfig}: cannot load it ({exc}); unset KUBECONFIG or set "
                             "MTV_DEMO_TARGET=local for the local target") from None
        if not self.context:
            raise StackError(f"KUBECONFIG={kubeconfig} has no current context: kubectl config use-context NAME")
        self.kubeconfig = kubeconfig
        self.custom = client.CustomObjectsApi(self.api)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ApiException as exc:
            raise StackError(f"cluster {self.context!r} refused to {what} (HTTP {exc.status}): "
                             f"{_message(exc)}") from None
        except (HTTPError, OSError) as exc:
            raise StackError(f"cluster {self.context!r} ({self.api.configuration.host}) cannot be reached to {what}: "
                             f"{type(exc).__name__}; check KUBECONFIG, or MTV_DEMO_TARGET=local") from None

    def upload_proxy_url(self) -> str:
        """CDIConfig `config` status.uploadProxyURL; "" when CDI has none (or no CDIConfig at all)."""
        group, version, plural, name = CDI_CONFIG

        def read() -> str:
            try:
                found = self.custom.get_cluster_custom_object(group, version, plural, name)
            except ApiException as exc:
                if exc.status == 404:
                    return ""
                raise
            return str((found.get("status") or {}).get("uploadProxyURL") or "")

        return self._call("read CDIConfig config", read)

    def storage_classes(self) -> list[tuple[str, Mapping[str, str]]]:
        listed = self._call("list StorageClasses", lambda: client.StorageV1Api(self.api).list_storage_class())
        return [(sc.metadata.name, dict(sc.metadata.annotations or {})) for sc in listed.items]

    def resolve(self, configured_url: str, storage_class: str) -> ClusterTarget:
        url = choose_upload_url(configured_url, "" if configured_url.strip() else self.upload_proxy_url(),
                                self.context)
        sc = choose_storage_class(storage_class, self.storage_classes(), self.context)
        return ClusterTarget(self.kubeconfig, self.context, url, sc)

    def ensure_namespace(self, name: str) -> None:
        core = client.CoreV1Api(self.api)
        body = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "mtv-demo"}}}

        def create() -> None:
            try:
                core.create_namespace(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise

        self._call(f"create namespace {name}", create)

    def ensure_network(self, namespace: str, name: str) -> None:
        """A NetworkAttachmentDefinition (needs the Multus CRD); an existing one is kept."""
        group, version, plural = NAD_API

        def create() -> None:
            try:
                self.custom.create_namespaced_custom_object(group, version, namespace, plural,
                                                            network_attachment(namespace, name))
            except ApiException as exc:
                if exc.status == 404:
                    raise StackError(f"cluster {self.context!r} has no NetworkAttachmentDefinition CRD: install "
                                     "Multus, or map the demo's networks to the pod network") from None
                if exc.status != 409:
                    raise

        self._call(f"create NetworkAttachmentDefinition {namespace}/{name}", create)

    def datavolumes(self, namespace: str) -> list[tuple[str, int, str]]:
        """(source VM id, disk key, DataVolume name) of every DataVolume the converter made in `namespace`."""
        group, version, plural = DV_API
        listed: dict[str, Any] = self._call(f"list DataVolumes in {namespace}",
                                            lambda: self.custom.list_namespaced_custom_object(group, version,
                                                                                              namespace, plural))
        found = []
        for dv in listed.get("items", []):
            meta = dv["metadata"]
            key = (meta.get("annotations") or {}).get(ANNOTATION_DISK_KEY)
            vm_id = (meta.get("labels") or {}).get(LABEL_VM_ID)
            if key is not None and vm_id:
                found.append((vm_id, int(key), meta["name"]))
        return found

    def close(self) -> None:
        self.api.close()
