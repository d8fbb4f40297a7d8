"""The demo's Kubernetes target, decided from the environment and what the cluster says (pure).

With `KUBECONFIG` set (and `MTV_DEMO_TARGET` not `local`) `make up` / `make demo` migrate into that
cluster: the converter applies VirtualMachines and DataVolumes there, the transfer workers request
CDI upload tokens there and upload through the upload proxy. The cluster calls are in `cluster_api`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mtv.devstack.process import StackError
from mtv.transfer.cdi_upload import upload_url

DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                             "storageclass.beta.kubernetes.io/is-default-class")
PORT_FORWARD_HINT = "kubectl port-forward -n cdi svc/cdi-uploadproxy 8443:443"


@dataclass(frozen=True)
class ClusterTarget:
    kubeconfig: str  # as given in KUBECONFIG (may list several files)
    context: str  # its current context: the plan's target.context
    upload_url: str  # https://.../v1beta1/upload
    storage_class: str

    def service_env(self) -> dict[str, dict[str, str]]:
        """What each service needs beyond the local stack's settings."""
        return {
            "converter": {"MTV_KUBECONFIG": self.kubeconfig},
            "planner": {"MTV_CDI_UPLOAD_URL": self.upload_url},
            "transfer": {"MTV_TRANSFER_KUBECONFIG": self.kubeconfig},
        }

    def client_env(self) -> dict[str, str]:
        """What `. .run/env` and the demo get: where the demo migrates to."""
        return {"MTV_DEMO_TARGET": "kubernetes", "MTV_DEMO_KUBECONFIG": self.kubeconfig,
                "MTV_DEMO_CONTEXT": self.context, "MTV_DEMO_STORAGE_CLASS": self.storage_class,
                "MTV_CDI_UPLOAD_URL": self.upload_url}


def cluster_mode(env: Mapping[str, str]) -> bool:
    """A cluster target when KUBECONFIG is set, unless MTV_DEMO_TARGET=local asks for the local one."""
    target = env.get("MTV_DEMO_TARGET", "").strip().lower()
    if target not in ("", "local", "kubernetes"):
        raise StackError(f"MTV_DEMO_TARGET={target!r}: use local or kubernetes")
    if target == "kubernetes" and not env.get("KUBECONFIG"):
        raise StackError("MTV_DEMO_TARGET=kubernetes needs KUBECONFIG set to the target cluster's kubeconfig")
    return bool(env.get("KUBECONFIG")) and target != "local"


def choose_upload_url(configured: str, from_cdiconfig: str, context: str) -> str:
    """MTV_CDI_UPLOAD_URL if set, else CDIConfig `config` status.uploadProxyURL; an error naming both if neither."""
    source, value = ("MTV_CDI_UPLOAD_URL", configured) if configured.strip() else (
        "CDIConfig config status.uploadProxyURL", from_cdiconfig)
    if not value.strip():
        raise StackError(
            f"no CDI upload proxy for cluster {context!r}: MTV_CDI_UPLOAD_URL is not set and the CDIConfig `config` "
            "has no status.uploadProxyURL. Make the proxy reachable from this machine and set it, e.g. "
            f"`{PORT_FORWARD_HINT}` and MTV_CDI_UPLOAD_URL=https://127.0.0.1:8443 (with MTV_CDI_UPLOAD_INSECURE=true "
            "or MTV_CDI_UPLOAD_CA_FILE, since its certificate names the service), or set "
            "spec.uploadProxyURLOverride in the CDIConfig")
    try:
        return upload_url(value)
    except ValueError as exc:
        raise StackError(f"{source}={value!r}: {exc}") from None


def choose_storage_class(requested: str, classes: Iterable[tuple[str, Mapping[str, str]]], context: str) -> str:
    """MTV_DEMO_STORAGE_CLASS if set (it must exist), else the cluster's default StorageClass.
    `classes` are (name, annotations) of the cluster's StorageClasses."""
    known = {name: annotations for name, annotations in classes}
    if requested:
        if requested not in known:
            raise StackError(f"MTV_DEMO_STORAGE_CLASS={requested!r} is not a StorageClass of cluster {context!r} "
                             f"(it has: {', '.join(sorted(known)) or 'none'}; kubectl get storageclass)")
        return requested
    defaults = sorted(name for name, annotations in known.items()
                      if any(annotations.get(a) == "true" for a in DEFAULT_CLASS_ANNOTATIONS))
    if not defaults:
        raise StackError(f"cluster {context!r} has no default StorageClass "
                         f"(it has: {', '.join(sorted(known)) or 'none'}): set MTV_DEMO_STORAGE_CLASS to one "
                         "(kubectl get storageclass)")
    return defaults[0]


def network_attachment(namespace: str, name: str) -> dict[str, object]:
    """A Multus NetworkAttachmentDefinition for a demo network: a plain Linux bridge per network, no IPAM
    (the migrated guests keep their own addressing)."""
    config = json.dumps({"cniVersion": "0.3.1", "name": name, "type": "bridge", "bridge": f"mtv-{name}"[:15],
                         "ipam": {}})
    return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "mtv-demo"}},
            "spec": {"config": config}}
