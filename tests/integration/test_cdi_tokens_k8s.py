"""CDI upload tokens against the real kube-apiserver: the worker waits for the DataVolume to be
UploadReady, requests a token through the API server (which proxies `upload.cdi.kubevirt.io` to the
stand-in of fixtures.cdi_api, after its own authentication and RBAC), and uploads with it.

The test plays CDI's controller: it patches the DataVolume's status (status subresource) through the
API server after a delay. Everything else is the worker's own path: `job.open_sink` with settings
naming a kubeconfig of a ServiceAccount that has exactly the transfer RBAC.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client

from fixtures import converter_vms
from fixtures.cdi_api import TRANSFER_RULES, CdiTokenApi, cdi_stand_ins, service_account_kubeconfig
from fixtures.cdi_upload import CdiUploadServer
from fixtures.k8s import KubeApi
from mtv.converter import manifests
from mtv.converter.targets.kubernetes import KubernetesTarget
from mtv.transfer.copier import StopSignal
from mtv.transfer.errors import Canceled, SinkRejected, SinkUnavailable
from mtv.transfer.job import open_sink
from mtv.transfer.settings import TransferSettings
from mtv.transfer.spec import CdiUploadSpec, FileSinkSpec, LocalFile, TransferSpec

pytestmark = pytest.mark.k8s
MiB = 1 << 20


@pytest.fixture(scope="module")
def cdi(k8s_api: KubeApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CdiTokenApi, CdiUploadServer]]:
    with cdi_stand_ins(k8s_api.client, tmp_path_factory.mktemp("cdi")) as stand_ins:
        yield stand_ins


def _volumes(k8s_api: KubeApi, namespace: str) -> list[str]:
    """The converter's DataVolumes of a 3-disk VM (upload source), as the demo's prepare step makes them."""
    k8s_api.storage_class("standard")
    k8s_api.storage_class("fast-block")
    vm = manifests.build(converter_vms.multi_disk_vm(), converter_vms.plan(namespace), "db01")
    return [s.uri.rsplit("/", 1)[1] for s in KubernetesTarget(k8s_api.client).prepare(vm)]


def _set_phase(k8s_api: KubeApi, namespace: str, name: str, phase: str) -> None:
    group, version, plural = manifests.DV_API
    client.CustomObjectsApi(k8s_api.client).patch_namespaced_custom_object_status(
        group, version, namespace, plural, name, {"status": {"phase": phase}})


def _kubeconfig(k8s_api: KubeApi, namespace: str, path: Path, rules: list[dict[str, Any]],
                name: str = "mtv-transfer") -> Path:
    ca = str(k8s_api.plane.run_dir / "certs" / "apiserver.crt")
    return service_account_kubeconfig(k8s_api.client, k8s_api.plane.url, ca, namespace, name, rules, path)


def _open(upload: CdiUploadServer, namespace: str, pvc: str, kubeconfig: Path, timeout: float = 60.0,
          signal: StopSignal | None = None, context: str = "") -> Any:
    spec = TransferSpec("p/vm/1", "p", "vm", 1, LocalFile("/unused"),
                        CdiUploadSpec(upload.url, "", namespace, pvc, upload.ca_pem, context=context), size=1)
    settings = TransferSettings(kafka_bootstrap="unused:9092", transfer_kubeconfig=str(kubeconfig),  # type: ignore[call-arg]
                                transfer_upload_ready_timeout=timeout)
    return open_sink(spec, SimpleNamespace(settings=settings), signal or StopSignal())  # type: ignore[arg-type]


def _disk(size: int) -> bytes:
    """Data, then a hole (zeros travel too: an upload stream carries every byte), then data."""
    third = size // 3
    return os.urandom(third) + bytes(third) + os.urandom(size - 2 * third)


def test_the_worker_waits_for_upload_ready_then_uploads_with_a_fresh_token(
        k8s_api: KubeApi, k8s_namespace: str, cdi: tuple[CdiTokenApi, CdiUploadServer], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    api, upload = cdi
    caplog.set_level(logging.DEBUG)
    pvc = _volumes(k8s_api, k8s_namespace)[0]
    kubeconfig = _kubeconfig(k8s_api, k8s_namespace, tmp_path / "kubeconfig", TRANSFER_RULES)
    asked_before = len(api.requests)
    ready_at: list[float] = []

    def cdi_controller() -> None:  # what CDI does once the upload server pod is up
        time.sleep(1.5)
        _set_phase(k8s_api, k8s_namespace, pvc, "UploadScheduled")
        time.sleep(2.0)
        ready_at.append(time.monotonic())
        _set_phase(k8s_api, k8s_namespace, pvc, "UploadReady")

    data = _disk(5 * MiB + 12345)
    controller = threading.Thread(target=cdi_controller)
    started = time.monotonic()
    controller.start()
    sink = _open(upload, k8s_namespace, pvc, kubeconfig)
    assert api.requests[asked_before:] == []  # no token before the upload starts
    sink.open(len(data), 0)
    opened = time.monotonic()
    controller.join()
    for offset in range(0, len(data), MiB):
        piece = memoryview(data)[offset:offset + MiB]
        sink.write(offset, piece, [(0, len(piece))])
    sink.finish()

    # It waited for UploadReady (the 2-second poll may add up to one interval), and no longer.
    assert ready_at and ready_at[0] <= opened <= ready_at[0] + 3.0, (started, ready_at, opened)
    # Exactly one token request, as virtctl makes it, by the worker's ServiceAccount, through the API server.
    asked = api.requests[asked_before:]
    assert len(asked) == 1 and not api.rejected
    assert asked[0].namespace == k8s_namespace
    assert asked[0].body == {"apiVersion": "upload.cdi.kubevirt.io/v1beta1", "kind": "UploadTokenRequest",
                             "metadata": {"name": pvc, "namespace": k8s_namespace}, "spec": {"pvcName": pvc}}
    assert asked[0].user == f"system:serviceaccount:{k8s_namespace}:mtv-transfer"
    # The proxy got byte-identical data with that token (it routes by the token to that PVC).
    assert upload.tokens[asked[0].token] == f"{k8s_namespace}/{pvc}"
    assert upload.uploads[-1].status == 200 and upload.uploads[-1].pvc == f"{k8s_namespace}/{pvc}"
    assert upload.uploads[-1].sha256 == hashlib.sha256(data).hexdigest()
    assert upload.stored_for(k8s_namespace, pvc).read_bytes() == data
    # The token is in no log line.
    assert asked[0].token not in caplog.text


def test_missing_rbac_is_reported_with_what_to_grant(
        k8s_api: KubeApi, k8s_namespace: str, cdi: tuple[CdiTokenApi, CdiUploadServer], tmp_path: Path) -> None:
    api, upload = cdi
    pvc = _volumes(k8s_api, k8s_namespace)[0]
    _set_phase(k8s_api, k8s_namespace, pvc, "UploadReady")
    asked_before = len(api.requests)

    # May read DataVolumes but not request tokens: the API server itself answers 403.
    kubeconfig = _kubeconfig(k8s_api, k8s_namespace, tmp_path / "kubeconfig", TRANSFER_RULES[:1])
    with pytest.raises(SinkRejected) as info:
        _open(upload, k8s_namespace, pvc, kubeconfig).open(1, 0)
    reason = info.value.reason
    assert f"may not create uploadtokenrequests.upload.cdi.kubevirt.io in namespace {k8s_namespace}" in reason
    assert "HTTP 403" in reason and "grant" in reason and not info.value.retryable
    assert len(api.requests) == asked_before  # refused before the request reached CDI

    # No rights at all: the DataVolume cannot even be read.
    none = _kubeconfig(k8s_api, k8s_namespace, tmp_path / "nobody.kubeconfig", [], name="nobody")
    with pytest.raises(SinkRejected, match=f"may not get datavolumes.cdi.kubevirt.io in namespace {k8s_namespace}"):
        _open(upload, k8s_namespace, pvc, none).open(1, 0)


def test_the_token_is_requested_in_the_plans_context_not_the_current_one(
        k8s_api: KubeApi, k8s_namespace: str, cdi: tuple[CdiTokenApi, CdiUploadServer], tmp_path: Path) -> None:
    """A kubeconfig with several clusters: the request's context (the plan's target.context) wins."""
    api, upload = cdi
    pvc = _volumes(k8s_api, k8s_namespace)[0]
    _set_phase(k8s_api, k8s_namespace, pvc, "UploadReady")
    path = _kubeconfig(k8s_api, k8s_namespace, tmp_path / "kubeconfig", TRANSFER_RULES)
    doc = json.loads(path.read_text())
    doc["contexts"][0]["name"] = "target"
    doc["clusters"].append({"name": "elsewhere", "cluster": {"server": "https://127.0.0.1:9"}})
    doc["contexts"].append({"name": "elsewhere", "context": {"cluster": "elsewhere", "user": doc["users"][0]["name"]}})
    doc["current-context"] = "elsewhere"
    path.write_text(json.dumps(doc))
    asked_before = len(api.requests)

    data = _disk(MiB)
    sink = _open(upload, k8s_namespace, pvc, path, context="target")
    sink.open(len(data), 0)
    sink.write(0, memoryview(data), [(0, len(data))])
    sink.finish()
    assert [r.body["spec"]["pvcName"] for r in api.requests[asked_before:]] == [pvc]
    assert upload.stored_for(k8s_namespace, pvc).read_bytes() == data

    with pytest.raises(SinkUnavailable, match="cannot reach the Kubernetes API server https://127.0.0.1:9"):
        _open(upload, k8s_namespace, pvc, path).open(1, 0)  # no context: the current one, another cluster
    with pytest.raises(SinkRejected, match="at context 'prod-west'"):
        _open(upload, k8s_namespace, pvc, path, context="prod-west").open(1, 0)


def test_the_wait_is_bounded_fails_fast_where_waiting_cannot_help_and_stops_on_cancel(
        k8s_api: KubeApi, k8s_namespace: str, cdi: tuple[CdiTokenApi, CdiUploadServer], tmp_path: Path) -> None:
    api, upload = cdi
    first, second, third = _volumes(k8s_api, k8s_namespace)
    kubeconfig = _kubeconfig(k8s_api, k8s_namespace, tmp_path / "kubeconfig", TRANSFER_RULES)
    asked_before = len(api.requests)

    _set_phase(k8s_api, k8s_namespace, first, "UploadScheduled")
    started = time.monotonic()
    with pytest.raises(SinkUnavailable) as info:
        _open(upload, k8s_namespace, first, kubeconfig, timeout=3).open(1, 0)
    assert 3 <= time.monotonic() - started < 8
    assert f"DataVolume {k8s_namespace}/{first} did not become UploadReady within 3 s" in info.value.reason
    assert "last seen: phase UploadScheduled" in info.value.reason and info.value.retryable

    _set_phase(k8s_api, k8s_namespace, second, "WaitForFirstConsumer")
    started = time.monotonic()
    with pytest.raises(SinkRejected, match="storage.bind.immediate.requested=true"):
        _open(upload, k8s_namespace, second, kubeconfig).open(1, 0)
    assert time.monotonic() - started < 2

    signal = StopSignal()
    threading.Timer(1.0, signal.cancel, args=("user asked",)).start()
    started = time.monotonic()
    with pytest.raises(Canceled):
        _open(upload, k8s_namespace, third, kubeconfig, signal=signal).open(1, 0)
    assert time.monotonic() - started < 4
    assert len(api.requests) == asked_before  # no token was requested for a volume that never got ready


def test_a_file_sink_needs_no_cluster(tmp_path: Path) -> None:
    spec = TransferSpec("p/vm/1", "p", "vm", 1, LocalFile("/unused"), FileSinkSpec(str(tmp_path / "d.img")), size=1)
    settings = TransferSettings(kafka_bootstrap="unused:9092", transfer_kubeconfig="/nonexistent")  # type: ignore[call-arg]
    sink = open_sink(spec, SimpleNamespace(settings=settings), StopSignal())  # type: ignore[arg-type]
    sink.open(4096, 0)
    sink.write(0, memoryview(b"x" * 4096), [(0, 4096)])
    sink.finish()
    assert (tmp_path / "d.img").read_bytes() == b"x" * 4096
