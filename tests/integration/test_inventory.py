"""The inventory service against a real broker and the vSphere simulator: discovery, live updates,
resyncs, provider status, queries through gRPC and mtvctl, and passwords that never leak.

One service subprocess and one simulator serve the whole module; tests run in file order (later ones
restart the service and the simulator).
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from fixtures.inventory_support import EXPECTED, EventTap, InventoryProcess, Record, RestartableSim, payload
from mtv import events, topics
from mtv.bus import Publisher
from mtv.inventory import state_log
from mtv.inventory.tls import fetch_thumbprint, peer_certificate
from mtv.model import PowerState, vm_from_proto
from mtv.provider_store import ProviderStore
from mtv.v1 import common_pb2, inventory_pb2, inventory_service_pb2

pytest_plugins = ["fixtures.inventory"]
pytestmark = [pytest.mark.kafka, pytest.mark.vsphere,
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

pb = inventory_service_pb2
P = inventory_pb2
UPDATE_DEADLINE = 2.0  # seconds from the vSphere call to the event on Kafka (the goal)
WRONG_PASSWORD = f"wrong-Passw0rd-{time.time_ns()}"
CLI_OUTPUT: list[str] = []  # everything mtvctl printed, grepped for passwords at the end
IDS: dict[str, str] = {}  # provider name -> id


# -- helpers -------------------------------------------------------------------------------------


def _add(service: InventoryProcess, name: str, sim: RestartableSim, password: str | None = None,
         **provider: Any) -> str:
    assert sim.handle is not None
    request = pb.AddProviderRequest(password=sim.password if password is None else password,
                                    ca_pem=provider.pop("ca_pem", ""))
    url = provider.pop("url", sim.handle.url)
    request.provider.CopyFrom(P.Provider(name=name, type=P.PROVIDER_TYPE_VSPHERE, url=url,
                                         username=sim.handle.username, **provider))
    response = service.stub.AddProvider(request, timeout=30)
    assert response.provider.secret_ref == f"{name}.password"
    IDS[name] = response.provider.id
    return response.provider.id


def _status(tap: EventTap, provider_id: str, phase: int, timeout: float, mark: int = 0) -> Any:
    def match(r: Record) -> bool:
        status = payload(r, "provider_status_changed")
        return status is not None and status.provider.id == provider_id and status.phase == phase

    return payload(tap.wait_for(match, timeout, mark), "provider_status_changed")


def _synced(tap: EventTap, provider_id: str, timeout: float, mark: int = 0) -> Any:
    def match(r: Record) -> bool:
        synced = payload(r, "inventory_synced")
        return synced is not None and synced.provider_id == provider_id

    return payload(tap.wait_for(match, timeout, mark), "inventory_synced")


def _change(tap: EventTap, provider_id: str, object_id: str, kind: int, timeout: float, mark: int) -> tuple[Any, float]:
    def match(r: Record) -> bool:
        change = payload(r, "inventory_changed")
        return (r.topic == topics.INVENTORY_EVENTS.name and change is not None
                and change.provider_id == provider_id and change.object_id == object_id and change.change == kind)

    record = tap.wait_for(match, timeout, mark)
    return payload(record, "inventory_changed"), record.at


def _changes(tap: EventTap, provider_id: str, mark: int) -> list[Any]:
    found = [payload(r, "inventory_changed") for r in tap.since(mark) if r.topic == topics.INVENTORY_EVENTS.name]
    return [c for c in found if c is not None and c.provider_id == provider_id]


def _all_vms(service: InventoryProcess, provider: str) -> list[Any]:
    vms, token = [], ""
    while True:
        page = pb.Page(page_size=3, page_token=token)
        response = service.stub.ListVms(pb.ListVmsRequest(provider=provider, page=page), timeout=30)
        vms += response.vms
        token = response.next_page_token
        if not token:
            return vms


def _mtvctl(service: InventoryProcess, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MTV_INVENTORY_GRPC": service.address}
    result = subprocess.run([sys.executable, "-m", "mtv.cli", *args], env=env, capture_output=True, text=True,
                            timeout=120)
    CLI_OUTPUT.extend([result.stdout, result.stderr])
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _vm_refs(si: vim.ServiceInstance) -> dict[str, Any]:
    """VM name -> managed object, read through the PropertyCollector."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
        pc.TraversalSpec(name="v", path="view", skip=False, type=vim.view.ContainerView)])],
        propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])])
    try:
        result = content.propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
        return {o.propSet[0].val: o.obj for o in result.objects}
    finally:
        view.Destroy()


def _run_task(task: Any) -> Any:
    while task.info.state not in ("success", "error"):
        time.sleep(0.01)
    assert task.info.state == "success", task.info.error
    return task.info.result


@pytest.fixture(autouse=True)
def _service_stays_up(inventory_service: InventoryProcess) -> Iterator[None]:
    """A service that died mid-test (crash, or killed from outside) is reported as such, with its log."""
    yield
    proc = inventory_service.proc
    if proc is not None and proc.poll() is not None:
        pytest.fail(f"the inventory service exited with code {proc.returncode}:\n"
                    f"{inventory_service.log.read_text()[-4000:]}", pytrace=False)


@pytest.fixture(scope="module")
def si(inventory_sim: RestartableSim) -> Iterator[vim.ServiceInstance]:
    assert inventory_sim.handle is not None
    url = inventory_sim.handle.url.split("/")[2]
    host, port = url.split(":")
    instance = SmartConnect(host=host, port=int(port), user=inventory_sim.handle.username,
                            pwd=inventory_sim.password, disableSslCertValidation=True)
    yield instance
    with contextlib.suppress(Exception):  # the last tests restart the simulator: the session may be gone
        Disconnect(instance)


@pytest.fixture(scope="module")
def sim_provider(inventory_service: InventoryProcess, inventory_sim: RestartableSim, tap: EventTap) -> str:
    """Provider `sim`, pinned by the thumbprint computed from the TLS handshake, discovered once."""
    assert inventory_sim.handle is not None
    mark = tap.mark()
    provider_id = _add(inventory_service, "sim", inventory_sim, thumbprint=fetch_thumbprint(inventory_sim.handle.url))
    ready = _status(tap, provider_id, P.PROVIDER_PHASE_READY, 30, mark)
    assert "connected to" in ready.reason and not ready.insecure
    _synced(tap, provider_id, 30, mark)
    return provider_id


# -- discovery -----------------------------------------------------------------------------------


def test_discovery_counts_match_the_simulator(inventory_service: InventoryProcess, inventory_sim: RestartableSim,
                                              sim_provider: str, tap: EventTap) -> None:
    assert inventory_sim.handle is not None
    counts = inventory_sim.handle.counts
    stub = inventory_service.stub
    listed = {
        "vms": stub.ListVms(pb.ListVmsRequest(provider="sim"), timeout=30).total,
        "hosts": stub.ListHosts(pb.ListHostsRequest(provider="sim"), timeout=30).total,
        "networks": stub.ListNetworks(pb.ListNetworksRequest(provider="sim"), timeout=30).total,
        "datastores": stub.ListDatastores(pb.ListDatastoresRequest(provider="sim"), timeout=30).total,
    }
    # Every kind, including those without a listing RPC, from the ADDED events of the first discovery.
    added = [c for c in _changes(tap, sim_provider, 0) if c.change == P.CHANGE_KIND_ADDED]
    kinds = Counter(c.object.WhichOneof("kind") for c in added)
    assert len(added) == len({c.object_id for c in added}), "an object was added twice"
    assert {"datacenters": kinds["datacenter"], "clusters": kinds["cluster"], "folders": kinds["folder"],
            **listed} == EXPECTED
    assert {k: kinds[k[:-1]] for k in ("vms", "hosts", "networks", "datastores")} == listed
    assert listed == {"vms": counts["vms"], "hosts": counts["hosts"], "datastores": counts["datastores"],
                      "networks": counts["networks"]["standard"] + counts["networks"]["dvportgroup"]}
    synced = _synced(tap, sim_provider, 1)
    assert synced.object_count == sum(EXPECTED.values()) and synced.duration_seconds > 0


def test_vms_carry_disks_nics_and_fields_from_vsphere(inventory_service: InventoryProcess,
                                                      inventory_sim: RestartableSim, sim_provider: str) -> None:
    assert inventory_sim.handle is not None
    manifest = {vm["moref"]: vm for vm in inventory_sim.handle.load_manifest()["vms"]}
    vms = {vm.id: vm_from_proto(vm) for vm in _all_vms(inventory_service, "sim")}  # pages of 3: paging works
    assert set(vms) == set(manifest)
    for vm_id, vm in vms.items():
        expected = manifest[vm_id]
        assert (vm.name, vm.instance_uuid, vm.path) == (expected["name"], expected["instance_uuid"],
                                                        f"/DC0/vm/{expected['name']}")
        assert vm.power_state is PowerState.ON and vm.host_id and vm.datacenter_id
        assert [(d.key, d.file, d.capacity_bytes, d.datastore_name, d.datacenter_path) for d in vm.disks] == [
            (d["key"], d["file_name"], d["capacity"], d["datastore"], d["dc_path"]) for d in expected["disks"]]
        assert all(d.datastore_id.startswith("datastore-") and d.bus == "scsi" and d.thin for d in vm.disks)
        assert [(n.network_id, n.network_name) for n in vm.nics] == list(
            zip(expected["networks"], expected["network_names"], strict=True))
        assert all(n.mac and n.device_type == "vmxnet3" for n in vm.nics)
        # The simulator's guests: other Linux, no CBT, no tools, no IPs.
        assert {"vm.os.unsupported", "vm.cbt.disabled", "vm.guest.no_ips"} <= {c.id for c in vm.concerns}
    one = next(iter(vms.values()))
    got = inventory_service.stub.GetVm(pb.GetVmRequest(provider=IDS["sim"], id_or_name=one.name), timeout=30).vm
    assert got.id == one.id


def test_mtvctl_inventory_vms_json_lists_every_vm(inventory_service: InventoryProcess, inventory_sim: RestartableSim,
                                                  sim_provider: str) -> None:
    assert inventory_sim.handle is not None
    manifest = inventory_sim.handle.load_manifest()["vms"]
    listed = json.loads(_mtvctl(inventory_service, "inventory", "vms", "--provider", "sim", "-o", "json").stdout)
    by_id = {vm["id"]: vm for vm in listed}
    assert set(by_id) == {vm["moref"] for vm in manifest} and len(listed) == len(manifest)
    for expected in manifest:
        vm = by_id[expected["moref"]]
        assert vm["name"] == expected["name"]
        assert [d["file"] for d in vm["disks"]] == [d["file_name"] for d in expected["disks"]]
        assert [int(d["capacity_bytes"]) for d in vm["disks"]] == [d["capacity"] for d in expected["disks"]]
        assert [n["network_id"] for n in vm["nics"]] == expected["networks"]
        assert all(n["mac"] for n in vm["nics"])
    as_yaml = yaml.safe_load(_mtvctl(inventory_service, "inventory", "vms", "--provider", "sim", "-o", "yaml").stdout)
    assert [vm["id"] for vm in as_yaml] == [vm["id"] for vm in listed]
    table = _mtvctl(inventory_service, "inventory", "vms", "--provider", "sim", "--power", "on").stdout
    assert all(vm["name"] in table for vm in manifest)
    for what, count in (("hosts", EXPECTED["hosts"]), ("networks", EXPECTED["networks"]),
                        ("datastores", EXPECTED["datastores"])):
        out = json.loads(_mtvctl(inventory_service, "inventory", what, "--provider", "sim", "-o", "json").stdout)
        assert len(out) == count, what
    none = json.loads(_mtvctl(inventory_service, "inventory", "vms", "--provider", "sim", "--concern", "critical",
                              "-o", "json").stdout)
    assert none == []


def test_the_state_topic_rebuilds_the_inventory(kafka_bootstrap: str, inventory_service: InventoryProcess,
                                                sim_provider: str) -> None:
    rebuilt = state_log.read_state(kafka_bootstrap, [sim_provider])[sim_provider]
    listed = {vm.id for vm in _all_vms(inventory_service, "sim")}
    assert {i for i, o in rebuilt.items() if type(o).__name__ == "Vm"} == listed
    assert len(rebuilt) == sum(EXPECTED.values())


# -- live updates --------------------------------------------------------------------------------


def test_live_updates_arrive_within_two_seconds(inventory_service: InventoryProcess, sim_provider: str,
                                                tap: EventTap, si: vim.ServiceInstance) -> None:
    refs = _vm_refs(si)
    name = sorted(refs)[0]
    vm = refs[name]

    def expect(kind: int, object_id: str, action: Any) -> Any:
        mark, started = tap.mark(), time.monotonic()
        result = _run_task(action())
        try:
            change, at = _change(tap, sim_provider, object_id, kind, UPDATE_DEADLINE + 3, mark)
        except AssertionError as exc:
            raise AssertionError(f"{P.ChangeKind.Name(kind)} of {object_id}: {exc}") from None
        assert at - started < UPDATE_DEADLINE, f"{P.ChangeKind.Name(kind)} took {at - started:.2f}s"
        return change, result

    change, _ = expect(P.CHANGE_KIND_UPDATED, vm._moId, vm.PowerOffVM_Task)
    assert change.object.vm.power_state == common_pb2.POWER_STATE_OFF and "power_state" in change.changed_fields
    change, _ = expect(P.CHANGE_KIND_UPDATED, vm._moId, lambda: vm.Rename_Task(f"{name}-renamed"))
    assert change.object.vm.name == f"{name}-renamed" and change.object.vm.path.endswith("-renamed")
    change, _ = expect(P.CHANGE_KIND_UPDATED, vm._moId,
                       lambda: vm.ReconfigVM_Task(vim.vm.ConfigSpec(changeTrackingEnabled=True)))
    assert change.object.vm.cbt_enabled and "vm.cbt.disabled" not in {c.id for c in change.object.vm.concerns}

    folder = si.RetrieveContent().rootFolder.childEntity[0].vmFolder
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(), powerOn=False)
    mark, started = tap.mark(), time.monotonic()
    clone = _run_task(vm.CloneVM_Task(folder=folder, name="clone-1", spec=spec))
    change, at = _change(tap, sim_provider, clone._moId, P.CHANGE_KIND_ADDED, UPDATE_DEADLINE + 3, mark)
    assert at - started < UPDATE_DEADLINE and change.object.vm.name == "clone-1"
    assert len(change.object.vm.disks) == 2 and len(change.object.vm.nics) == 2
    assert not [c for c in _changes(tap, sim_provider, mark) if c.change == P.CHANGE_KIND_ADDED
                and c.object_id != clone._moId], "only the clone is new"

    change, _ = expect(P.CHANGE_KIND_REMOVED, clone._moId, clone.Destroy_Task)
    assert not change.HasField("object")
    key = topics.object_key(sim_provider, clone._moId)
    tap.wait_for(lambda r: r.topic == topics.INVENTORY_STATE.name and r.key == key and r.value is None, 5)
    with pytest.raises(grpc.RpcError) as err:
        inventory_service.stub.GetVm(pb.GetVmRequest(provider="sim", id_or_name=clone._moId), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_lost_session_resyncs_without_duplicates(inventory_service: InventoryProcess, sim_provider: str,
                                                   tap: EventTap, si: vim.ServiceInstance) -> None:
    before = {vm.id: vm for vm in _all_vms(inventory_service, "sim")}
    content = si.RetrieveContent()
    mine = content.sessionManager.currentSession.key
    others = [s.key for s in content.sessionManager.sessionList if s.key != mine]
    assert others, "the service holds a session"
    mark = tap.mark()
    content.sessionManager.TerminateSession(others)
    refs = _vm_refs(si)
    target = next(ref for _, ref in sorted(refs.items()) if before[ref._moId].power_state == common_pb2.POWER_STATE_ON)
    _run_task(target.PowerOffVM_Task())  # a change while the service logs in again

    _synced(tap, sim_provider, 20, mark)  # a full resync ran
    change, _ = _change(tap, sim_provider, target._moId, P.CHANGE_KIND_UPDATED, 20, mark)
    assert change.object.vm.power_state == common_pb2.POWER_STATE_OFF
    time.sleep(1)
    changes = _changes(tap, sim_provider, mark)
    assert all(c.change == P.CHANGE_KIND_UPDATED and c.changed_fields for c in changes), \
        "nothing added or removed, every update a real difference"
    # Datastores may report new free space (the previous test cloned and deleted a VM); of the VMs only
    # the one powered off changed.
    assert [c.object_id for c in changes if c.object.WhichOneof("kind") == "vm"] == [target._moId]
    after = _all_vms(inventory_service, "sim")
    assert sorted(vm.id for vm in after) == sorted(before)


def test_source_power_requests_are_run_with_the_provider_credentials(
        kafka_bootstrap: str, inventory_service: InventoryProcess, sim_provider: str, tap: EventTap) -> None:
    vm = next(v for v in _all_vms(inventory_service, "sim") if v.power_state == common_pb2.POWER_STATE_ON)
    publisher = Publisher(kafka_bootstrap, "test-power")
    mark = tap.mark()
    for provider_id in (sim_provider, "no-such-provider"):
        request = P.SourcePowerRequested(provider_id=provider_id, vm_id=vm.id, action=P.POWER_ACTION_POWER_OFF,
                                         plan_id="plan-1")
        publisher.publish(events.make(request, source="test", correlation_id="plan-1"))
    publisher.flush()

    def answer(provider_id: str) -> Any:
        return payload(tap.wait_for(lambda r: (payload(r, "source_power_changed") is not None
                                               and payload(r, "source_power_changed").provider_id == provider_id),
                                    30, mark), "source_power_changed")

    done = answer(sim_provider)
    assert (done.error, done.power_state, done.plan_id) == ("", common_pb2.POWER_STATE_OFF, "plan-1")
    _change(tap, sim_provider, vm.id, P.CHANGE_KIND_UPDATED, 10, mark)
    assert "no-such-provider" in answer("no-such-provider").error


# -- provider status -----------------------------------------------------------------------------


def test_wrong_password_is_auth_failed_then_ready_once_the_secret_is_fixed(
        inventory_service: InventoryProcess, inventory_sim: RestartableSim, tap: EventTap, sim_provider: str) -> None:
    mark = tap.mark()
    provider_id = _add(inventory_service, "badpw", inventory_sim, password=WRONG_PASSWORD, insecure_skip_verify=True)
    failed = _status(tap, provider_id, P.PROVIDER_PHASE_AUTH_FAILED, 20, mark)
    assert "rejected user" in failed.reason and "badpw.password" in failed.reason
    with pytest.raises(grpc.RpcError) as err:
        inventory_service.stub.ListVms(pb.ListVmsRequest(provider="badpw"), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "AuthFailed" in (err.value.details() or "")
    shown = inventory_service.stub.GetProvider(pb.GetProviderRequest(name="badpw"), timeout=30).provider
    assert shown.phase == P.PROVIDER_PHASE_AUTH_FAILED

    fixed = tap.mark()
    ProviderStore(inventory_service.provider_dir).set_password("badpw", inventory_sim.password)
    _status(tap, provider_id, P.PROVIDER_PHASE_READY, 10, fixed)  # no restart, no 10-minute auth back-off
    _synced(tap, provider_id, 20, fixed)
    assert len(_all_vms(inventory_service, "badpw")) == EXPECTED["vms"]


def test_certificates_are_verified_or_pinned_and_skipping_is_a_warning(
        inventory_service: InventoryProcess, inventory_sim: RestartableSim, tap: EventTap, sim_provider: str) -> None:
    assert inventory_sim.handle is not None
    mark = tap.mark()
    actual = fetch_thumbprint(inventory_sim.handle.url)
    pinned = ":".join(["AB"] * 32)
    mismatch = _status(tap, _add(inventory_service, "badtp", inventory_sim, thumbprint=pinned),
                       P.PROVIDER_PHASE_CERTIFICATE_MISMATCH, 20, mark)
    assert actual in mismatch.reason and pinned in mismatch.reason

    untrusted = _status(tap, _add(inventory_service, "nopin", inventory_sim), P.PROVIDER_PHASE_CERTIFICATE_MISMATCH,
                        20, mark)
    assert "not trusted by the system CA bundle" in untrusted.reason

    ca_pem = ssl.DER_cert_to_PEM_cert(peer_certificate(inventory_sim.handle.url))
    _status(tap, _add(inventory_service, "withca", inventory_sim, ca_pem=ca_pem), P.PROVIDER_PHASE_READY, 20, mark)

    insecure = _status(tap, _add(inventory_service, "insecure", inventory_sim, insecure_skip_verify=True),
                       P.PROVIDER_PHASE_READY, 20, mark)
    assert insecure.insecure and "WARNING" in insecure.reason


def test_an_unreachable_provider_does_not_stop_the_others(inventory_service: InventoryProcess,
                                                          inventory_sim: RestartableSim, tap: EventTap,
                                                          sim_provider: str) -> None:
    from mtv.devstack.process import free_port

    mark = tap.mark()
    down = _add(inventory_service, "down", inventory_sim, url=f"https://127.0.0.1:{free_port()}/sdk",
                insecure_skip_verify=True)
    status = _status(tap, down, P.PROVIDER_PHASE_UNREACHABLE, 20, mark)
    assert "refused" in status.reason
    assert len(_all_vms(inventory_service, "sim")) >= EXPECTED["vms"]
    listed = {p.provider.name: p for p in inventory_service.stub.ListProviders(pb.ListProvidersRequest(), timeout=30)
              .providers}
    assert listed["down"].phase == P.PROVIDER_PHASE_UNREACHABLE and listed["sim"].phase == P.PROVIDER_PHASE_READY
    assert listed["sim"].vm_count >= EXPECTED["vms"]


def test_bad_requests_are_named(inventory_service: InventoryProcess, inventory_sim: RestartableSim,
                                tmp_path: Path, sim_provider: str) -> None:
    assert inventory_sim.handle is not None
    cases = [({"name": "sim"}, grpc.StatusCode.ALREADY_EXISTS, "already exists"),
             ({"name": "badurl", "url": "ftp://nowhere"}, grpc.StatusCode.INVALID_ARGUMENT, "url"),
             ({"name": "Bad_Name"}, grpc.StatusCode.INVALID_ARGUMENT, "name"),
             ({"name": "two-pins", "thumbprint": ":".join(["AB"] * 32), "insecure_skip_verify": True},
              grpc.StatusCode.INVALID_ARGUMENT, "choose one")]
    for fields, code, words in cases:
        name = fields.pop("name")
        with pytest.raises(grpc.RpcError) as err:
            _add(inventory_service, name, inventory_sim, **fields)
        assert err.value.code() == code and words in (err.value.details() or ""), err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        inventory_service.stub.ListVms(pb.ListVmsRequest(provider="sim", page=pb.Page(page_token="junk")), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    password_file = tmp_path / "pw"
    password_file.write_text(inventory_sim.password + "\n")
    base = ["provider", "add", "vsphere", "sim", "--url", inventory_sim.handle.url, "--username",
            inventory_sim.handle.username, "--password-file", str(password_file), "--insecure-skip-verify"]
    for args, words in ((base, "already exists"), ([*base[:3], "x", "--url", "nope", *base[6:]], "url"),
                        ([*base[:-2], str(tmp_path / "missing"), base[-1]], "cannot read password file"),
                        (["inventory", "vms", "--provider", "nope"], "not found")):
        result = _mtvctl(inventory_service, *args, check=False)
        assert result.returncode != 0 and words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_mtvctl_provider_add_ls_show(inventory_service: InventoryProcess, inventory_sim: RestartableSim,
                                     tmp_path: Path, sim_provider: str) -> None:
    assert inventory_sim.handle is not None
    password_file = tmp_path / "pw"
    password_file.write_text(inventory_sim.password)
    out = _mtvctl(inventory_service, "provider", "add", "vsphere", "cli-sim", "--url", inventory_sim.handle.url,
                  "--username", inventory_sim.handle.username, "--password-file", str(password_file),
                  "--thumbprint", fetch_thumbprint(inventory_sim.handle.url)).stdout
    assert "provider cli-sim added" in out and ": Ready: connected" in out
    providers = {p["name"]: p for p in json.loads(_mtvctl(inventory_service, "provider", "ls", "-o", "json").stdout)}
    assert providers["cli-sim"]["phase"] == "Ready" and providers["badtp"]["phase"] == "CertificateMismatch"
    shown = yaml.safe_load(_mtvctl(inventory_service, "provider", "show", "cli-sim", "-o", "yaml").stdout)
    assert shown["secret_ref"] == "cli-sim.password" and "password" not in shown
    assert "cli-sim" in _mtvctl(inventory_service, "provider", "ls").stdout


# -- restarts ------------------------------------------------------------------------------------


def test_a_restarted_service_republishes_nothing_unchanged(inventory_service: InventoryProcess, sim_provider: str,
                                                           tap: EventTap) -> None:
    assert inventory_service.stop() == 0
    mark = tap.mark()
    inventory_service.start()
    _synced(tap, sim_provider, 30, mark)
    time.sleep(0.5)
    assert _changes(tap, sim_provider, mark) == [], "the state restored from the log was the diff base"
    assert len(_all_vms(inventory_service, "sim")) == EXPECTED["vms"]


def test_a_restarted_simulator_is_resynced_to_its_new_state(kafka_bootstrap: str, inventory_service: InventoryProcess,
                                                            inventory_sim: RestartableSim, sim_provider: str,
                                                            tap: EventTap) -> None:
    mark = tap.mark()
    inventory_sim.stop()
    _status(tap, sim_provider, P.PROVIDER_PHASE_UNREACHABLE, 20, mark)
    handle = inventory_sim.start()  # same port and password; its inventory is the original one again
    _status(tap, sim_provider, P.PROVIDER_PHASE_READY, 30, mark)
    _synced(tap, sim_provider, 30, mark)
    manifest = {vm["moref"]: vm["name"] for vm in handle.load_manifest()["vms"]}
    listed = _all_vms(inventory_service, "sim")
    assert {vm.id: vm.name for vm in listed} == manifest and len(listed) == len(manifest)
    # The renamed, reconfigured and powered-off VMs are back to the simulator's state, as real updates.
    kinds = Counter(c.change for c in _changes(tap, sim_provider, mark))
    assert kinds[P.CHANGE_KIND_ADDED] == 0 and kinds[P.CHANGE_KIND_REMOVED] == 0 and kinds[P.CHANGE_KIND_UPDATED] >= 2
    rebuilt = state_log.read_state(kafka_bootstrap, [sim_provider])[sim_provider]
    assert {i for i, o in rebuilt.items() if type(o).__name__ == "Vm"} == set(manifest)


def test_no_password_in_logs_events_or_output(inventory_service: InventoryProcess, inventory_sim: RestartableSim,
                                              tap: EventTap) -> None:
    secrets = [inventory_sim.password, WRONG_PASSWORD]
    logs = inventory_service.log.read_bytes()
    assert b"discovered" in logs and b"AuthFailed" in logs, "the log captured the interesting parts"
    records = tap.since(0)
    assert len(records) > 100
    stored = b"".join(p.read_bytes() for p in inventory_service.provider_dir.glob("*.json"))
    for secret in secrets:
        needle = secret.encode()
        assert needle not in logs
        assert not [r for r in records if needle in r.raw]
        assert needle not in stored
        assert not [out for out in CLI_OUTPUT if secret in out]
    for path in inventory_service.provider_dir.glob("*.password"):
        assert path.stat().st_mode & 0o077 == 0
