"""End to end with a Kubernetes target: the `make demo` flow with KUBECONFIG set — real Kafka, simulator,
the four services with two transfer worker processes, and the real kube-apiserver of fixtures.k8s.

The cluster has the real KubeVirt/CDI/Multus CRDs but no CDI: `upload.cdi.kubevirt.io` is proxied by the
API server to the stand-in of fixtures.cdi_api (tokens per PVC), uploads go to the proxy stand-in of
fixtures.cdi_upload, and this test plays CDI's controller by setting each DataVolume UploadReady a moment
after the converter created it. Everything MTV does is real: the demo creates the namespace and the NADs,
the converter applies DataVolumes and VirtualMachines, each worker waits for UploadReady, requests its own
token through the API server and uploads the disk.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from fixtures.cdi_api import CdiTokenApi, cdi_stand_ins
from fixtures.cdi_upload import CdiUploadServer
from fixtures.k8s import KubeApi
from mtv.converter.manifests import DV_API, FIELD_MANAGER, LABEL_MANAGED_BY, VM_API
from mtv.devstack import demo, stack
from mtv.devstack.process import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.vsphere, pytest.mark.k8s]
DEFAULT_CLASS = "mtv-e2e-default"


@pytest.fixture
def cdi(k8s_api: KubeApi, tmp_path: Path) -> Iterator[tuple[CdiTokenApi, CdiUploadServer]]:
    with cdi_stand_ins(k8s_api.client, tmp_path) as stand_ins:
        yield stand_ins


class CdiController:
    """Sets every DataVolume of the converter UploadReady about a second after it appeared (status
    subresource, through the API server), as CDI does once the upload server pod runs."""

    def __init__(self, api: client.ApiClient, delay: float = 1.0) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._delay = delay
        self._seen: dict[tuple[str, str], float] = {}
        self.ready: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CdiController:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        group, version, plural = DV_API
        while not self._stop.wait(0.3):
            listed = self._custom.list_cluster_custom_object(group, version, plural,
                                                             label_selector=f"{LABEL_MANAGED_BY}={FIELD_MANAGER}")
            for dv in listed["items"]:
                key = (dv["metadata"]["namespace"], dv["metadata"]["name"])
                first = self._seen.setdefault(key, time.monotonic())
                if (dv.get("status") or {}).get("phase") == "UploadReady" or time.monotonic() - first < self._delay:
                    continue
                self._custom.patch_namespaced_custom_object_status(group, version, key[0], plural, key[1],
                                                                   {"status": {"phase": "UploadReady"}})
                self.ready.append(key)


def test_demo_migrates_every_simulator_vm_into_the_cluster(
        k8s_api: KubeApi, cdi: tuple[CdiTokenApi, CdiUploadServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    token_api, upload = cdi
    client.StorageV1Api(k8s_api.client).create_storage_class({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": DEFAULT_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "example.com/none"})
    ca_file = tmp_path / "proxy-ca.pem"
    ca_file.write_text(upload.ca_pem)
    for var in stack.PORT_VARS:
        monkeypatch.setenv(var, str(free_port()))
    monkeypatch.setenv("MTV_TRANSFER_WORKERS", "2")
    monkeypatch.setenv("KUBECONFIG", k8s_api.kubeconfig)
    monkeypatch.delenv("MTV_DEMO_TARGET", raising=False)
    monkeypatch.delenv("MTV_DEMO_STORAGE_CLASS", raising=False)  # the cluster's default class is chosen
    monkeypatch.setenv("MTV_CDI_UPLOAD_URL", upload.url.removesuffix("/v1beta1/upload"))
    monkeypatch.setenv("MTV_CDI_UPLOAD_CA_FILE", str(ca_file))
    layout = stack.Layout(tmp_path / "run")

    env = stack.up(layout)
    try:
        with CdiController(k8s_api.client) as controller:
            result = demo.migrate(env, layout, timeout=600)
    finally:
        stack.down(layout)

    ns = result.namespace
    custom = client.CustomObjectsApi(k8s_api.client)
    assert result.context == "mtv-test" and env["MTV_DEMO_STORAGE_CLASS"] == DEFAULT_CLASS
    plan = yaml.safe_load((layout.root / "demo-plan.yaml").read_text())
    assert plan["target"] == {"type": "kubernetes", "context": "mtv-test"}

    # Every disk: the worker's hash equals the source's, and the row names its PVC without claiming a re-read.
    assert len(result.rows) == 3 * 2 and not result.state.failed()
    bad = [r for r in result.rows if not r.ok]
    assert not bad, bad
    assert all(not r.reread and r.where.startswith(f"{ns}/") and r.where.endswith(" via the upload proxy")
               for r in result.rows)

    # The upload proxy got every disk byte-identical, each with a token requested for exactly that PVC.
    manifest = stack_manifest(env)
    uploads = {u.pvc: u for u in upload.uploads if u.pvc.startswith(f"{ns}/")}
    assert len(uploads) == 6 and all(u.status == 200 for u in uploads.values())
    rows = {r.where.removesuffix(" via the upload proxy"): r for r in result.rows}
    assert set(rows) == set(uploads)
    for pvc, row in rows.items():
        assert uploads[pvc].sha256 == row.source == manifest[(row.vm, row.disk_key)]
        stored = upload.stored_for(*pvc.split("/"))
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == row.source
    asked = [r for r in token_api.requests if r.namespace == ns]
    assert sorted(f"{ns}/{r.body['spec']['pvcName']}" for r in asked) == sorted(uploads)
    assert len({r.token for r in asked}) == 6 and not token_api.rejected
    assert {(ns, pvc.split("/")[1]) for pvc in uploads} <= set(controller.ready)
    logs = "".join(f.read_text(errors="replace") for f in layout.logs.glob("*.log"))
    assert "waiting for DataVolume" in logs and not [r for r in asked if r.token in logs]

    # What the cluster holds: 3 VirtualMachines with 2 disks each, 6 DataVolumes, the demo's NAD.
    vms = custom.list_namespaced_custom_object(*VM_API[:2], ns, VM_API[2])["items"]
    dvs = custom.list_namespaced_custom_object(*DV_API[:2], ns, DV_API[2])["items"]
    assert len(vms) == 3 and len(dvs) == 6
    assert {dv["spec"]["pvc"]["storageClassName"] for dv in dvs} == {DEFAULT_CLASS}
    assert {f"{ns}/{dv['metadata']['name']}" for dv in dvs} == set(uploads)
    for vm in vms:
        spec = vm["spec"]["template"]["spec"]
        assert len(spec["domain"]["devices"]["disks"]) == 2
        assert {v["dataVolume"]["name"] for v in spec["volumes"] if "dataVolume" in v} <= \
            {dv["metadata"]["name"] for dv in dvs}
        assert [n["multus"]["networkName"] for n in spec["networks"] if "multus" in n] == [f"{ns}/net-1"]
    nad = custom.get_namespaced_custom_object("k8s.cni.cncf.io", "v1", ns, "network-attachment-definitions", "net-1")
    assert nad["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mtv-demo"


def stack_manifest(env: dict[str, str]) -> dict[tuple[str, int], str]:
    """(VM name, disk key) -> SHA-256 of the simulator's disk, from its manifest."""
    import json

    doc = json.loads(Path(env["MTV_VSPHERE_MANIFEST"]).read_text())
    return {(vm["name"], int(d["key"])): d["sha256"] for vm in doc["vms"] for d in vm["disks"]}
