"""CDI's upload protocol as pure rules: when a DataVolume takes an upload, how long to wait for it,
which upload proxy URL, and what an answer of the Kubernetes API means for the user.

As `virtctl image-upload` does it: wait until the DataVolume is `UploadReady` (CDI's upload server
pod runs and is ready), then ask the cluster for a token for that PVC (an `UploadTokenRequest`,
answered at once by cdi-apiserver; the token is valid for a few minutes and only for that PVC),
then `POST <proxy>/v1beta1/upload` with it. The Kubernetes calls are in `cdi_tokens`.

No message built here contains a token: they name namespaces, DataVolumes and resources only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse, urlunparse

from mtv.transfer.errors import SinkError, SinkRejected, SinkUnavailable

UPLOAD_PATH = "/v1beta1/upload"
UPLOAD_API = ("upload.cdi.kubevirt.io", "v1beta1", "uploadtokenrequests")
DV_API = ("cdi.kubevirt.io", "v1beta1", "datavolumes")
# Set by CDI's upload controller on the PVC; virtctl reads them where a DataVolume is not used.
POD_PHASE_ANNOTATION = "cdi.kubevirt.io/storage.pod.phase"
POD_READY_ANNOTATION = "cdi.kubevirt.io/storage.pod.ready"
BIND_IMMEDIATE_ANNOTATION = "cdi.kubevirt.io/storage.bind.immediate.requested"


@dataclass(frozen=True)
class Readiness:
    """What one look at a DataVolume (and its PVC) says about uploading to it."""

    ready: bool
    seen: str  # what was seen, for the messages: "phase UploadScheduled", "not created yet"
    fatal: str = ""  # waiting cannot help: the reason for the user


def readiness(namespace: str, name: str, dv: Mapping[str, Any] | None,
              pvc_annotations: Mapping[str, str] | None = None) -> Readiness:
    """Decide from a DataVolume (None: not found) and, optionally, its PVC's annotations."""
    ref = f"{namespace}/{name}"
    if dv is None:
        return Readiness(False, "the DataVolume does not exist yet")
    phase = str((dv.get("status") or {}).get("phase") or "")
    if phase == "UploadReady":
        return Readiness(True, "phase UploadReady")
    annotations = pvc_annotations or {}
    if annotations.get(POD_PHASE_ANNOTATION) == "Running" and annotations.get(POD_READY_ANNOTATION) == "true":
        return Readiness(True, "upload pod Running and ready (PVC annotations)")
    seen = f"phase {phase}" if phase else "no phase yet (CDI has not seen it)"
    if phase in ("WaitForFirstConsumer", "PendingPopulation"):
        # Nothing will ever consume an upload volume before its upload: virtctl gives up here too.
        return Readiness(False, seen, fatal=(
            f"DataVolume {ref} is {phase}: its StorageClass binds volumes only for a pod that uses them. "
            f"Annotate it {BIND_IMMEDIATE_ANNOTATION}=true (kubectl annotate dv -n {namespace} {name} "
            f"{BIND_IMMEDIATE_ANNOTATION}=true) or map the datastore to a StorageClass with "
            "volumeBindingMode Immediate, then retry the disk"))
    if phase == "Failed":
        return Readiness(False, seen, fatal=(
            f"DataVolume {ref} failed in CDI: see `kubectl describe dv -n {namespace} {name}` and the events of "
            "its PVC; delete it (the converter re-creates it) and retry the disk"))
    if phase == "Succeeded":
        return Readiness(False, seen, fatal=(
            f"DataVolume {ref} already holds a finished import and takes no further upload: delete it (the "
            "converter re-creates it) and retry the disk"))
    return Readiness(False, seen)


def wait_until_ready(probe: Callable[[], Readiness], ref: str, *, timeout: float, interval: float = 2.0,
                     clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> float:
    """Poll `probe` until ready; return the seconds waited. `sleep` may raise to stop the wait (cancel,
    worker stopping). Raises SinkRejected when waiting cannot help, SinkUnavailable after `timeout`."""
    started = clock()
    while True:
        state = probe()
        if state.ready:
            return clock() - started
        if state.fatal:
            raise SinkRejected(state.fatal)
        waited = clock() - started
        if waited >= timeout:
            raise SinkUnavailable(not_ready_reason(ref, state.seen, waited), retryable=True)
        sleep(min(interval, max(0.0, timeout - waited)))


def not_ready_reason(ref: str, seen: str, waited: float) -> str:
    namespace, _, name = ref.partition("/")
    return (f"DataVolume {ref} did not become UploadReady within {waited:.0f} s (last seen: {seen}). Check that "
            "CDI is installed and running (kubectl get pods -n cdi), that its PVC gets bound "
            f"(kubectl get pvc -n {namespace} {name}: a working provisioner for its StorageClass), and "
            f"`kubectl describe dv -n {namespace} {name}`; then retry the disk "
            "(MTV_TRANSFER_UPLOAD_READY_TIMEOUT sets the wait)")


def upload_url(proxy: str) -> str:
    """The upload endpoint of a proxy given as `host[:port]`, `https://host[:port]` or a full URL, as virtctl
    builds it: https, and `/v1beta1/upload` appended unless the path has it already."""
    text = proxy.strip()
    if not text:
        raise ValueError("no upload proxy URL")
    url = urlparse(text if "://" in text else f"https://{text}")
    if url.scheme != "https" or not url.hostname:
        raise ValueError(f"upload proxy {proxy!r}: expected https://HOST[:PORT]")
    path = url.path if UPLOAD_PATH in url.path else url.path.rstrip("/") + UPLOAD_PATH
    return urlunparse(url._replace(path=path, params="", query="", fragment=""))


@dataclass(frozen=True)
class ApiCall:
    """One Kubernetes API call of the worker, for error messages: verb, resource, namespace, object."""

    verb: str
    resource: str  # e.g. "uploadtokenrequests.upload.cdi.kubevirt.io"
    namespace: str
    name: str

    @property
    def doing(self) -> str:
        return f"{self.verb} {self.resource} {self.namespace}/{self.name}"


UPLOAD_TOKEN_RESOURCE = f"{UPLOAD_API[2]}.{UPLOAD_API[0]}"
DV_RESOURCE = f"{DV_API[2]}.{DV_API[0]}"


def api_error(call: ApiCall, status: int, message: str) -> SinkError:
    """What an HTTP status of the Kubernetes API means for a disk copy, in words a user can act on.
    `message` is the API's own Status message (never a token: error answers carry none)."""
    detail = f": {message[:200]}" if message else ""
    if status == 401:
        return SinkRejected(f"the Kubernetes API refused the transfer worker's credentials (HTTP 401) for "
                            f"{call.doing}: renew the kubeconfig the worker uses (MTV_TRANSFER_KUBECONFIG, else "
                            "KUBECONFIG, else its ServiceAccount), then retry the disk")
    if status == 403:
        return SinkRejected(
            f"the worker's kubeconfig may not {call.verb} {call.resource} in namespace {call.namespace} "
            f"(HTTP 403): grant it, e.g. kubectl create role mtv-transfer -n {call.namespace} "
            f"--verb={call.verb} --resource={call.resource} and bind it to the worker's user or ServiceAccount "
            "(the helm chart's transfer RBAC grants create on uploadtokenrequests and get on datavolumes), "
            "then retry the disk")
    if status == 404 and call.resource == UPLOAD_TOKEN_RESOURCE:
        return SinkRejected(f"the cluster does not serve {UPLOAD_API[0]}/{UPLOAD_API[1]} (HTTP 404): install "
                            f"CDI, or check `kubectl get apiservice {UPLOAD_API[1]}.{UPLOAD_API[0]}`")
    if status == 503 and call.resource == UPLOAD_TOKEN_RESOURCE:
        return SinkUnavailable(f"cdi-apiserver is not available (HTTP 503) to {call.doing}{detail}: check "
                               f"`kubectl get apiservice {UPLOAD_API[1]}.{UPLOAD_API[0]}` and the cdi-apiserver "
                               "pod (kubectl get pods -n cdi)", retryable=True)
    if status >= 500 or status in (0, 408, 429):
        return SinkUnavailable(f"the Kubernetes API failed to {call.doing} (HTTP {status}){detail}", retryable=True)
    return SinkRejected(f"the Kubernetes API refused to {call.doing} (HTTP {status}){detail}")


def token_from(answer: Mapping[str, Any], call: ApiCall) -> str:
    """The token of an UploadTokenRequest answer (`status.token`)."""
    token = (answer.get("status") or {}).get("token")
    if not isinstance(token, str) or not token:
        raise SinkRejected(f"cdi-apiserver answered {call.doing} without status.token: check the CDI version "
                           "(upload.cdi.kubevirt.io/v1beta1 is needed)")
    return token


def token_request(namespace: str, pvc_name: str) -> dict[str, Any]:
    """The UploadTokenRequest body for one PVC (cdi-apiserver reads spec.pvcName and the path's namespace)."""
    return {"apiVersion": f"{UPLOAD_API[0]}/{UPLOAD_API[1]}", "kind": "UploadTokenRequest",
            "metadata": {"name": pvc_name, "namespace": namespace}, "spec": {"pvcName": pvc_name}}
