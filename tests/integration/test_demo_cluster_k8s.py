"""What `make up` reads from a cluster target and what the demo creates there, against the real
kube-apiserver: the upload proxy from CDIConfig, StorageClass checks, the namespace and Multus NADs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from fixtures.k8s import KubeApi
from mtv.devstack import stack
from mtv.devstack.cluster_api import CDI_CONFIG, NAD_API, Cluster
from mtv.devstack.cluster_target import ClusterTarget
from mtv.devstack.kube_apiserver import install_crds
from mtv.devstack.process import StackError

pytestmark = pytest.mark.k8s

# CDI's CDIConfig (cluster-scoped, status subresource). The upstream CRD is not in shared/crds, so a minimal
# schema: enough for the one field the demo reads.
CDI_CONFIG_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "cdiconfigs.cdi.kubevirt.io"},
    "spec": {"group": "cdi.kubevirt.io", "scope": "Cluster",
             "names": {"kind": "CDIConfig", "plural": "cdiconfigs", "singular": "cdiconfig",
                       "listKind": "CDIConfigList"},
             "versions": [{"name": "v1beta1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def _cdi_config(k8s_api: KubeApi, tmp_path: Path, proxy: str) -> None:
    crds = tmp_path / "crds"
    crds.mkdir()
    (crds / "cdiconfig.yaml").write_text(yaml.safe_dump(CDI_CONFIG_CRD))
    install_crds(Path(k8s_api.kubeconfig), crds)
    group, version, plural, name = CDI_CONFIG
    custom = client.CustomObjectsApi(k8s_api.client)
    body = {"apiVersion": f"{group}/{version}", "kind": "CDIConfig", "metadata": {"name": name}, "spec": {}}
    for _ in range(50):  # the new resource may take a moment to be served
        try:
            custom.create_cluster_custom_object(group, version, plural, body)
            break
        except client.exceptions.ApiException as exc:
            if exc.status == 409:
                break
            time.sleep(0.1)
    custom.patch_cluster_custom_object_status(group, version, plural, name, {"status": {"uploadProxyURL": proxy}})


def test_the_upload_proxy_comes_from_the_environment_else_cdiconfig_else_an_error(
        k8s_api: KubeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k8s_api.storage_class("standard")
    cluster = Cluster(k8s_api.kubeconfig)
    try:
        group, version, plural, name = CDI_CONFIG
        try:
            client.CustomObjectsApi(k8s_api.client).get_cluster_custom_object(group, version, plural, name)
            has_config = True
        except client.exceptions.ApiException:
            has_config = False
        if not has_config:  # no CDI at all: the error names both places
            with pytest.raises(StackError, match="MTV_CDI_UPLOAD_URL is not set and the CDIConfig `config` has no"):
                cluster.resolve("", "standard")
            _cdi_config(k8s_api, tmp_path, "cdi-uploadproxy.apps.example.com")

        assert cluster.resolve("", "standard") == ClusterTarget(
            k8s_api.kubeconfig, "mtv-test", "https://cdi-uploadproxy.apps.example.com/v1beta1/upload", "standard")
        assert cluster.resolve("https://127.0.0.1:8443", "standard").upload_url == \
            "https://127.0.0.1:8443/v1beta1/upload"
    finally:
        cluster.close()

    # What `make up` does with it: the services' settings, or a clear refusal before anything starts.
    monkeypatch.setenv("KUBECONFIG", k8s_api.kubeconfig)
    monkeypatch.delenv("MTV_DEMO_TARGET", raising=False)
    monkeypatch.setenv("MTV_CDI_UPLOAD_URL", "https://127.0.0.1:8443")
    monkeypatch.setenv("MTV_DEMO_STORAGE_CLASS", "standard")
    target = stack.cluster_target()
    assert target is not None and target.service_env()["transfer"] == {"MTV_TRANSFER_KUBECONFIG": k8s_api.kubeconfig}
    monkeypatch.setenv("MTV_DEMO_STORAGE_CLASS", "gold")
    with pytest.raises(StackError, match=r"MTV_DEMO_STORAGE_CLASS='gold' is not a StorageClass of cluster 'mtv-test'"):
        stack.cluster_target()
    monkeypatch.setenv("MTV_DEMO_TARGET", "local")
    assert stack.cluster_target() is None


def test_the_demo_creates_namespace_and_networks_once(k8s_api: KubeApi, k8s_namespace: str) -> None:
    cluster = Cluster(k8s_api.kubeconfig)
    try:
        for _ in range(2):  # a second run of the same steps changes nothing and does not fail
            cluster.ensure_namespace(k8s_namespace)
            cluster.ensure_network(k8s_namespace, "net-1")
    finally:
        cluster.close()
    ns = client.CoreV1Api(k8s_api.client).read_namespace(k8s_namespace)
    assert ns.metadata.labels["app.kubernetes.io/managed-by"] == "mtv-demo"
    group, version, plural = NAD_API
    nads = client.CustomObjectsApi(k8s_api.client).list_namespaced_custom_object(group, version, k8s_namespace,
                                                                                 plural)["items"]
    assert [n["metadata"]["name"] for n in nads] == ["net-1"]
    assert json.loads(nads[0]["spec"]["config"])["type"] == "bridge"


def test_an_unusable_kubeconfig_is_refused_with_the_way_out(tmp_path: Path) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    with pytest.raises(StackError, match="MTV_DEMO_TARGET=local"):
        Cluster(str(bad))
