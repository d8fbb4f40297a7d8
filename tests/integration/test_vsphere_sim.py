"""The vSphere simulator looks like vCenter to pyvmomi and serves seeded disks the way MTV will read them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from mtv.devstack.vsphere_sim import SimHandle

# The `vsphere_sim` and `vsphere_expected` fixtures.

pytestmark = [
    pytest.mark.vsphere,
    # The simulator has a self-signed certificate.
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

PARTITION_OFFSET = 1 << 20
EXT4_MAGIC_AT = PARTITION_OFFSET + 1024 + 56


def _connect(sim: SimHandle, password: str) -> vim.ServiceInstance:
    url = urlparse(sim.url)
    return SmartConnect(host=url.hostname, port=url.port, user=sim.username, pwd=password,
                        disableSslCertValidation=True)


@pytest.fixture(scope="module")
def si(vsphere_sim: SimHandle) -> Iterator[vim.ServiceInstance]:
    instance = _connect(vsphere_sim, vsphere_sim.password)
    yield instance
    Disconnect(instance)


@pytest.fixture(scope="module")
def manifest(vsphere_sim: SimHandle) -> dict[str, Any]:
    return json.loads(vsphere_sim.manifest.read_text())


def _retrieve(si: vim.ServiceInstance, kind: type, paths: list[str]) -> dict[Any, dict[str, Any]]:
    """Objects of `kind` (and subtypes) with the given properties: ContainerView + RetrievePropertiesEx."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(
        objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
            pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView),
        ])],
        propSet=[pc.PropertySpec(type=kind, pathSet=paths)],
    )
    found: dict[Any, dict[str, Any]] = {}
    try:
        # A small page size makes the ContinueRetrievePropertiesEx path run too.
        result = content.propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions(maxObjects=3))
        while result is not None:
            for obj in result.objects:
                found[obj.obj] = {prop.name: prop.val for prop in obj.propSet}
            if not result.token:
                break
            result = content.propertyCollector.ContinueRetrievePropertiesEx(result.token)
    finally:
        view.Destroy()
    return found


def _get(sim: SimHandle, path: str, cookie: str | None, **headers: str) -> requests.Response:
    url = urlparse(sim.url)
    if cookie is not None:
        headers["Cookie"] = cookie
    return requests.get(f"https://{url.netloc}{path}", headers=headers, verify=False, timeout=60)


def _download(sim: SimHandle, disk: dict[str, Any], cookie: str, parts: int = 4) -> bytes:
    """The whole flat file in `parts` Range requests, each checked for 206 and its Content-Range."""
    size = disk["size"]
    step = -(-size // parts)
    data = bytearray()
    for start in range(0, size, step):
        end = min(start + step, size) - 1
        response = _get(sim, disk["download"], cookie, Range=f"bytes={start}-{end}")
        assert response.status_code == 206, response.text[:200]
        assert response.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert len(response.content) == end - start + 1
        data += response.content
    return bytes(data)


def test_login_needs_the_password(vsphere_sim: SimHandle, si: vim.ServiceInstance) -> None:
    assert si.content.about.apiType == "VirtualCenter"
    with pytest.raises(vim.fault.InvalidLogin):
        _connect(vsphere_sim, vsphere_sim.password + "x")


def test_inventory_counts_match_manifest_and_config(
    vsphere_sim: SimHandle,
    vsphere_expected: dict[str, Any],
    si: vim.ServiceInstance,
    manifest: dict[str, Any],
) -> None:
    expected = vsphere_expected["counts"]
    counts = manifest["counts"]
    assert counts == vsphere_sim.counts
    seen = {
        "datacenters": len(_retrieve(si, vim.Datacenter, ["name"])),
        "clusters": len(_retrieve(si, vim.ClusterComputeResource, ["name"])),
        "hosts": len(_retrieve(si, vim.HostSystem, ["name"])),
        "vms": len(_retrieve(si, vim.VirtualMachine, ["name"])),
        "datastores": len(_retrieve(si, vim.Datastore, ["name"])),
    }
    networks = _retrieve(si, vim.Network, ["name"])
    dvpgs = _retrieve(si, vim.dvs.DistributedVirtualPortgroup, ["name", "config.uplink"])
    dvpg = vim.dvs.DistributedVirtualPortgroup
    seen["standard_networks"] = sum(1 for n in networks if not isinstance(n, dvpg))
    seen["dvportgroups"] = sum(1 for p in dvpgs.values() if not p.get("config.uplink"))
    seen["dvuplinks"] = sum(1 for p in dvpgs.values() if p.get("config.uplink"))

    assert seen == expected
    from_manifest = {key: counts[key] for key in ("datacenters", "clusters", "hosts", "vms", "datastores")}
    from_manifest |= {
        "standard_networks": counts["networks"]["standard"],
        "dvportgroups": counts["networks"]["dvportgroup"],
        "dvuplinks": counts["networks"]["dvuplink"],
    }
    assert from_manifest == expected
    assert len(manifest["vms"]) == expected["vms"]


def test_vms_have_the_configured_disks_and_nics(
    vsphere_expected: dict[str, Any], si: vim.ServiceInstance, manifest: dict[str, Any]
) -> None:
    disks_per_vm, nics_per_vm = vsphere_expected["disks_per_vm"], vsphere_expected["nics_per_vm"]
    by_moref = {vm["moref"]: vm for vm in manifest["vms"]}
    vms = _retrieve(si, vim.VirtualMachine, ["name", "config.hardware.device", "config.instanceUuid"])
    assert {vm._moId for vm in vms} == set(by_moref)
    for vm, props in vms.items():
        expected = by_moref[vm._moId]
        assert props["name"] == expected["name"]
        assert props["config.instanceUuid"] == expected["instance_uuid"]
        devices = props["config.hardware.device"]
        disks = [d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
        nics = [d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)]
        assert len(disks) == disks_per_vm
        assert len(nics) == nics_per_vm
        assert {d.capacityInBytes for d in disks} == {vsphere_expected["disk_size"]}
        assert [d.backing.fileName for d in disks] == [d["file_name"] for d in expected["disks"]]
        assert len({n.backing.port.portgroupKey if hasattr(n.backing, "port") else n.backing.deviceName
                    for n in nics}) == nics_per_vm, "each NIC on its own network"


def test_disk_downloads_in_ranges_and_matches_manifest(
    vsphere_sim: SimHandle,
    vsphere_expected: dict[str, Any],
    si: vim.ServiceInstance,
    manifest: dict[str, Any],
) -> None:
    vm = manifest["vms"][0]
    disk = vm["disks"][0]
    assert disk["size"] == vsphere_expected["disk_size"]
    assert disk["allocated"] < disk["size"] // 4, "the disk should be mostly holes"

    image = _download(vsphere_sim, disk, si._stub.cookie)
    assert hashlib.sha256(image).hexdigest() == disk["sha256"]
    assert image[510:512] == b"\x55\xaa", "MBR boot signature"
    assert image[450] == 0x83, "first partition is Linux"
    assert int.from_bytes(image[454:458], "little") * 512 == PARTITION_OFFSET
    assert int.from_bytes(image[EXT4_MAGIC_AT:EXT4_MAGIC_AT + 2], "little") == 0xEF53, "ext4 superblock"
    identity = image[disk["identity_at"]:disk["identity_at"] + 4096].rstrip(b"\0").decode()
    header, body = identity.split("\n", 1)
    assert header == manifest["layout"]["identity_magic"].strip()
    assert json.loads(body)["vm"] == vm["name"]
    assert json.loads(body)["file_name"] == disk["file_name"]


def test_different_vms_have_different_disks(
    vsphere_sim: SimHandle, si: vim.ServiceInstance, manifest: dict[str, Any]
) -> None:
    first, second = manifest["vms"][0]["disks"][0], manifest["vms"][1]["disks"][0]
    cookie = si._stub.cookie
    sums = [hashlib.sha256(_download(vsphere_sim, d, cookie, parts=1)).hexdigest() for d in (first, second)]
    assert sums == [first["sha256"], second["sha256"]]
    assert sums[0] != sums[1]
    all_sums = [d["sha256"] for vm in manifest["vms"] for d in vm["disks"]]
    assert len(set(all_sums)) == len(all_sums), "every disk is distinct"


def test_folder_needs_a_live_session(vsphere_sim: SimHandle, manifest: dict[str, Any]) -> None:
    path = manifest["vms"][0]["disks"][0]["download"]
    assert _get(vsphere_sim, path, None, Range="bytes=0-511").status_code == 401
    assert _get(vsphere_sim, path, "vmware_soap_session=not-a-session").status_code == 401

    session = _connect(vsphere_sim, vsphere_sim.password)
    cookie = session._stub.cookie
    assert _get(vsphere_sim, path, cookie, Range="bytes=0-511").status_code == 206
    Disconnect(session)
    assert _get(vsphere_sim, path, cookie, Range="bytes=0-511").status_code == 401
