"""The demo's cluster mode, decided without a cluster: when it applies, which upload proxy and StorageClass,
the plan it writes (parsed by the planner's own plan reader), and what the checksum table claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mtv.devstack import demo
from mtv.devstack.cluster_target import (
    ClusterTarget,
    choose_storage_class,
    choose_upload_url,
    cluster_mode,
    network_attachment,
)
from mtv.devstack.process import StackError
from mtv.model import TargetKind
from mtv.planner import plan_yaml


@pytest.mark.parametrize(("env", "expected"), [
    ({}, False),
    ({"KUBECONFIG": "/k"}, True),
    ({"KUBECONFIG": "/k", "MTV_DEMO_TARGET": "local"}, False),
    ({"KUBECONFIG": "/k", "MTV_DEMO_TARGET": "Kubernetes"}, True),
    ({"MTV_DEMO_TARGET": "local"}, False),
])
def test_cluster_mode_needs_kubeconfig_and_can_be_turned_off(env: dict[str, str], expected: bool) -> None:
    assert cluster_mode(env) is expected


@pytest.mark.parametrize(("env", "message"), [
    ({"MTV_DEMO_TARGET": "kubernetes"}, "needs KUBECONFIG"),
    ({"KUBECONFIG": "/k", "MTV_DEMO_TARGET": "openstack"}, "use local or kubernetes"),
])
def test_cluster_mode_refuses_what_it_cannot_do(env: dict[str, str], message: str) -> None:
    with pytest.raises(StackError, match=message):
        cluster_mode(env)


def test_the_configured_upload_url_wins_over_cdiconfig() -> None:
    assert choose_upload_url("https://127.0.0.1:8443", "cdi-uploadproxy.apps.example.com", "kind") == \
        "https://127.0.0.1:8443/v1beta1/upload"
    assert choose_upload_url("", "cdi-uploadproxy.apps.example.com", "kind") == \
        "https://cdi-uploadproxy.apps.example.com/v1beta1/upload"


def test_no_upload_url_names_both_places_and_the_port_forward() -> None:
    with pytest.raises(StackError) as info:
        choose_upload_url(" ", "", "kind-mtv")
    text = str(info.value)
    for word in ("'kind-mtv'", "MTV_CDI_UPLOAD_URL", "CDIConfig", "status.uploadProxyURL",
                 "kubectl port-forward -n cdi svc/cdi-uploadproxy 8443:443", "MTV_CDI_UPLOAD_INSECURE"):
        assert word in text
    with pytest.raises(StackError, match="MTV_CDI_UPLOAD_URL='http://proxy'"):
        choose_upload_url("http://proxy", "", "kind")


CLASSES = [("standard", {"storageclass.kubernetes.io/is-default-class": "true"}), ("fast", {}),
           ("old", {"storageclass.beta.kubernetes.io/is-default-class": "false"})]


def test_storage_class_is_the_requested_one_else_the_default() -> None:
    assert choose_storage_class("fast", CLASSES, "kind") == "fast"
    assert choose_storage_class("", CLASSES, "kind") == "standard"
    assert choose_storage_class("", [("legacy", {"storageclass.beta.kubernetes.io/is-default-class": "true"})],
                                "kind") == "legacy"


def test_storage_class_errors_say_what_exists() -> None:
    with pytest.raises(StackError, match=r"MTV_DEMO_STORAGE_CLASS='gold' is not a StorageClass .*fast, old, standard"):
        choose_storage_class("gold", CLASSES, "kind")
    with pytest.raises(StackError, match=r"no default StorageClass \(it has: fast\): set MTV_DEMO_STORAGE_CLASS"):
        choose_storage_class("", [("fast", {})], "kind")


def test_the_services_get_the_cluster_settings() -> None:
    target = ClusterTarget("/home/u/.kube/config", "kind-mtv", "https://127.0.0.1:8443/v1beta1/upload", "standard")
    assert target.service_env() == {
        "converter": {"MTV_KUBECONFIG": "/home/u/.kube/config"},
        "planner": {"MTV_CDI_UPLOAD_URL": "https://127.0.0.1:8443/v1beta1/upload"},
        "transfer": {"MTV_TRANSFER_KUBECONFIG": "/home/u/.kube/config"},
    }
    assert target.client_env()["MTV_DEMO_CONTEXT"] == "kind-mtv"


MANIFEST = {"vms": [
    {"name": "vm-a", "moref": "vm-1", "network_names": ["VM Network", "DVPG-1"],
     "disks": [{"key": 2000, "datastore": "LocalDS_0", "sha256": "aa" * 32},
               {"key": 2001, "datastore": "LocalDS_0", "sha256": "bb" * 32}]},
]}


def test_the_cluster_plan_is_a_valid_kubernetes_plan() -> None:
    doc = demo.plan_document(MANIFEST, "demo-20261127-101010", {"type": "kubernetes", "context": "kind-mtv"},
                             "fast")
    spec = plan_yaml.parse(yaml.safe_dump(doc))
    assert spec.target_kind is TargetKind.KUBERNETES and spec.target_context == "kind-mtv"
    assert {m.storage_class for m in spec.storage_map} == {"fast"}
    # Networks sorted: the first to the pod network, the other to the NAD the demo creates in the namespace.
    assert [(n.source, n.type.value, n.name) for n in spec.network_map] == [
        ("DVPG-1", "pod", ""), ("VM Network", "multus", "demo-20261127-101010/net-1")]


def test_a_network_attachment_is_a_bridge_in_the_plan_namespace() -> None:
    nad = network_attachment("demo-1", "net-1")
    assert nad["metadata"] == {"name": "net-1", "namespace": "demo-1",
                               "labels": {"app.kubernetes.io/managed-by": "mtv-demo"}}
    config = json.loads(nad["spec"]["config"])  # type: ignore[index]
    assert config["type"] == "bridge" and config["name"] == "net-1" and len(config["bridge"]) <= 15


def test_cluster_rows_say_where_the_bytes_went_and_do_not_claim_a_reread() -> None:
    reported = {("vm-1", 2000): "aa" * 32, ("vm-1", 2001): "cc" * 32}
    rows = demo.cluster_rows(MANIFEST, [("vm-1", 2000, "demo-vm-a-disk-0")], "demo-1", reported)
    assert [(r.disk_key, r.where, r.target, r.reread, r.ok) for r in rows] == [
        (2000, "demo-1/demo-vm-a-disk-0 via the upload proxy", "", False, True),
        (2001, demo.MISSING, "", False, False),  # no DataVolume, and the worker reported other bytes
    ]
    # The same disk with a matching report but no DataVolume is not ok either.
    assert not demo.cluster_rows(MANIFEST, [], "demo-1", reported)[0].ok


def test_local_rows_compare_the_image_read_back(tmp_path: Path) -> None:
    row = demo.ChecksumRow("vm-a", 2000, "aa" * 32, "aa" * 32, "ab" * 32, str(tmp_path / "x.img"))
    assert not row.ok  # the worker's hash matched, the file did not: a local target is read back
    assert demo.ChecksumRow("vm-a", 2000, "aa" * 32, "aa" * 32, "aa" * 32, "x.img").ok
