"""The converter process on a real broker: requests on mtv.target.requests.v1, results on
mtv.target.results.v1, for the local target (kafka) and the Kubernetes target (kafka + k8s)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer
from kubernetes import client

from fixtures import converter_vms as s
from fixtures.k8s import KubeApi
from mtv import events, topics
from mtv import model as m
from mtv.bus import Publisher, admin, decode
from mtv.converter import manifests
from mtv.devstack.process import free_port
from mtv.v1 import event_pb2, target_pb2

pytestmark = pytest.mark.kafka


@pytest.fixture
def converter(kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A running `python -m mtv.converter`; yields its local target root."""
    admin.ensure_topics(kafka_bootstrap)
    port = free_port()
    root = tmp_path / "target"
    env = {**os.environ, "MTV_KAFKA_BOOTSTRAP": kafka_bootstrap, "MTV_HTTP_PORT": str(port),
           "MTV_LOCAL_TARGET_ROOT": str(root)}
    if "k8s_api" in request.fixturenames:
        env["MTV_KUBECONFIG"] = request.getfixturevalue("k8s_api").kubeconfig
    log = tmp_path / "converter.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mtv.converter"], env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while not _ready(port):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        yield root
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


class Results:
    """Reads mtv.target.results.v1 from the end, keeping the events of one correlation id."""

    def __init__(self, bootstrap: str, correlation_id: str) -> None:
        self.correlation_id = correlation_id
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}",
                                  "auto.offset.reset": "earliest"})
        self.consumer.subscribe([topics.TARGET_RESULTS.name])

    def next(self, timeout: float = 60.0) -> event_pb2.Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            event = decode(msg.value())
            if event.envelope.correlation_id == self.correlation_id:
                assert msg.topic() == topics.TARGET_RESULTS.name
                return event
        raise AssertionError("no result from the converter")

    def close(self) -> None:
        self.consumer.close()


def _send(bootstrap: str, payload: object, plan_id: str) -> None:
    publisher = Publisher(bootstrap, "test")
    publisher.publish(events.make(payload, source="test", correlation_id=plan_id))  # type: ignore[arg-type]
    publisher.flush()


def _prepare(plan_id: str, vm: m.Vm, plan: m.PlanSpec, name: str) -> target_pb2.TargetPrepareRequested:
    return target_pb2.TargetPrepareRequested(plan_id=plan_id, vm=m.vm_to_proto(vm), plan=m.plan_to_proto(plan),
                                             target_name=name)


def test_local_prepare_and_unmapped_network(kafka_bootstrap: str, converter: Path) -> None:
    plan_id = f"plan-{uuid.uuid4().hex[:8]}"
    results = Results(kafka_bootstrap, plan_id)
    try:
        _send(kafka_bootstrap, _prepare(plan_id, s.efi_vm(), s.plan(), "win2022"), plan_id)
        event = results.next()
        assert events.payload_field(event) == "target_prepared", event
        prepared = event.target_prepared
        assert prepared.vm_id == "vm-77" and len(prepared.disks) == 1
        sink = Path(prepared.disks[0].sink_uri)
        assert sink == converter / "migrated" / "win2022" / "disks" / "plan-a-win2022-disk-0.img"
        assert sink.stat().st_size == 40 << 30

        bad = s.plan(network_map=())
        _send(kafka_bootstrap, _prepare(plan_id, s.efi_vm(), bad, "win2022"), plan_id)
        failed = results.next()
        assert events.payload_field(failed) == "target_failed", failed
        assert failed.target_failed.field == "network_map"
        assert failed.target_failed.step == "prepare"
        assert 'network "prod" (dvportgroup-12) is not mapped' in failed.target_failed.reason
    finally:
        results.close()


def test_local_convert_creates_vm_without_faking_guest_conversion(kafka_bootstrap: str, converter: Path) -> None:
    plan_id = f"plan-{uuid.uuid4().hex[:8]}"
    vm = replace(s.efi_vm(), disks=(replace(s.efi_vm().disks[0], capacity_bytes=8 << 20),))
    results = Results(kafka_bootstrap, plan_id)
    try:
        _send(kafka_bootstrap, _prepare(plan_id, vm, s.plan(), "win2022"), plan_id)
        sink = Path(results.next().target_prepared.disks[0].sink_uri)
        # Stand in for the transfer worker: it wrote a streamOptimized VMDK into the sink.
        raw = sink.with_suffix(".raw")
        raw.write_bytes(os.urandom(1 << 20) + bytes(7 << 20))
        subprocess.run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw), str(sink)],
                       check=True)
        request = target_pb2.ConvertRequested(plan_id=plan_id, vm=m.vm_to_proto(vm),
                                              plan=m.plan_to_proto(s.plan()), target_name="win2022")
        _send(kafka_bootstrap, request, plan_id)
        created = results.next().vm_created
        assert created.name == "win2022" and created.namespace == "migrated"
        assert created.guest_converted is False  # virt-v2v-in-place is not installed here
        assert sink.read_bytes() == raw.read_bytes()  # converted to raw in place
        vm_doc = yaml.safe_load((Path(created.location) / "20-virtualmachine.yaml").read_text())
        assert vm_doc["spec"]["template"]["spec"]["domain"]["devices"]["disks"][0]["disk"]["bus"] == "sata"
    finally:
        results.close()


@pytest.mark.k8s
def test_kubernetes_prepare_convert_duplicate_and_cleanup(kafka_bootstrap: str, k8s_api: KubeApi,
                                                         k8s_namespace: str, converter: Path) -> None:
    k8s_api.storage_class("standard")
    k8s_api.storage_class("fast-block")
    plan_id = f"plan-{uuid.uuid4().hex[:8]}"
    plan = s.plan(k8s_namespace, target_kind=m.TargetKind.KUBERNETES)
    vm = s.multi_disk_vm()
    results = Results(kafka_bootstrap, plan_id)
    try:
        _send(kafka_bootstrap, _prepare(plan_id, vm, plan, "db01"), plan_id)
        prepared = results.next().target_prepared
        assert [d.sink_uri for d in prepared.disks] == [
            f"cdi-upload://{k8s_namespace}/plan-a-db01-disk-{i}" for i in range(3)]

        convert = target_pb2.ConvertRequested(plan_id=plan_id, vm=m.vm_to_proto(vm), plan=m.plan_to_proto(plan),
                                              target_name="db01", disks=prepared.disks)
        _send(kafka_bootstrap, convert, plan_id)
        first = results.next().vm_created
        _send(kafka_bootstrap, convert, plan_id)  # a duplicate request
        second = results.next().vm_created
        assert first.location == second.location and first.guest_converted is False
        group, version, plural = manifests.VM_API
        custom = client.CustomObjectsApi(k8s_api.client)
        live = custom.get_namespaced_custom_object(group, version, k8s_namespace, plural, "db01")
        assert live["metadata"]["uid"] == first.location

        cleanup = target_pb2.TargetCleanupRequested(plan_id=plan_id, vm_id=vm.id, plan=m.plan_to_proto(plan),
                                                    target_name="db01")
        _send(kafka_bootstrap, cleanup, plan_id)
        deadline = time.monotonic() + 30
        while custom.list_namespaced_custom_object(group, version, k8s_namespace, plural)["items"]:
            assert time.monotonic() < deadline, "cleanup did not delete the VM"
            time.sleep(0.3)
        dv_group, dv_version, dv_plural = manifests.DV_API
        assert custom.list_namespaced_custom_object(dv_group, dv_version, k8s_namespace, dv_plural)["items"] == []

        missing_sc = s.plan(k8s_namespace, target_kind=m.TargetKind.KUBERNETES,
                            storage_map=(m.StorageMapping("datastore-1", "gone"),
                                         m.StorageMapping("fast-ds", "fast-block", "Block")))
        _send(kafka_bootstrap, _prepare(plan_id, vm, missing_sc, "db01"), plan_id)
        failed = results.next().target_failed
        assert failed.field == "storage_map[datastore-1].storage_class" and "gone" in failed.reason
    finally:
        results.close()
