"""Fault classification into provider status phases, privilege checks, TLS thumbprints, proto edges.

The simulator grants every privilege to every user, so InsufficientPrivileges is proven here: on the
faults and privilege answers a real vCenter gives a user without the MTV role.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import ssl

import pytest
from pyVmomi import Security, vim

from mtv.inventory.errors import (
    AuthFailed,
    CertificateMismatch,
    InsufficientPrivileges,
    Unreachable,
    classify,
    missing_privileges,
    redact,
)
from mtv.inventory.grpc_server import record_from_request
from mtv.inventory.objects import (
    Cluster,
    Datacenter,
    Datastore,
    Folder,
    Host,
    Network,
    NetworkKind,
    from_proto,
    to_proto,
)
from mtv.inventory.tls import format_thumbprint, thumbprint_of, trust_for, verify_pin
from mtv.model import Concern, ConcernCategory, Disk, Nic, Vm
from mtv.provider_store import ProviderRecord
from mtv.v1 import inventory_pb2, inventory_service_pb2

PIN = ":".join(["AB"] * 32)
REC = ProviderRecord(id="p1", name="vc", type="vsphere", url="https://vc.example.com:8443/sdk", username="admin",
                     thumbprint=PIN)


@pytest.mark.parametrize(
    ("exc", "cls", "words"),
    [
        (vim.fault.InvalidLogin(), AuthFailed, ["rejected user 'admin'", "vc.password"]),
        (vim.fault.NoPermission(privilegeId="System.View"), InsufficientPrivileges, ["System.View"]),
        (Security.ThumbprintMismatchException("ab" * 32, "cd" * 32), CertificateMismatch, ["cd" * 32, PIN]),
        (ssl.SSLCertVerificationError(1, "verify failed"), CertificateMismatch, ["not trusted"]),
        (ConnectionRefusedError(111, "refused"), Unreachable, ["refused", "vc.example.com:8443"]),
        (socket.gaierror(-2, "Name or service not known"), Unreachable, ["resolve", "Name or service"]),
        (TimeoutError(), Unreachable, ["timed out"]),
        (http.client.RemoteDisconnected("x"), Unreachable, ["dropped"]),
        (ssl.SSLError(1, "wrong version"), Unreachable, ["TLS"]),
        (Exception("vc:443 is down or is not a VIM server"), Unreachable, ["not reachable as a vSphere API"]),
    ],
)
def test_classify(exc: BaseException, cls: type, words: list[str]) -> None:
    fault = classify(exc, REC)
    assert type(fault) is cls
    for word in words:
        assert word in fault.reason


def test_not_authenticated_is_not_a_privilege_problem() -> None:
    # NotAuthenticated subclasses NoPermission in the vSphere API.
    assert isinstance(classify(vim.fault.NotAuthenticated(), REC), AuthFailed)


def test_missing_privileges_from_has_privilege_on_entities() -> None:
    avail = vim.AuthorizationManager.PrivilegeAvailability
    answer = [vim.AuthorizationManager.EntityPrivilege(entity=vim.Folder("group-d1"), privAvailability=[
        avail(privId="System.View", isGranted=True), avail(privId="Datastore.Browse", isGranted=False)])]
    assert missing_privileges(answer, ["System.View", "Datastore.Browse", "System.Read"]) == [
        "Datastore.Browse", "System.Read"]
    assert missing_privileges([], []) == []


def test_redact() -> None:
    assert redact("login with hunter2 failed: hunter2", ["hunter2", ""]) == "login with *** failed: ***"


def test_thumbprints() -> None:
    der = b"certificate bytes"
    digest = hashlib.sha256(der).hexdigest()
    assert thumbprint_of(der) == format_thumbprint(digest) == format_thumbprint(digest.upper())
    assert format_thumbprint(":".join(digest[i:i + 2] for i in range(0, 64, 2))) == thumbprint_of(der)
    with pytest.raises(ValueError, match="64 hex"):
        format_thumbprint("AB:CD")
    verify_pin(ProviderRecord(**{**REC.__dict__, "thumbprint": thumbprint_of(der)}), der)
    with pytest.raises(CertificateMismatch, match=thumbprint_of(der)):
        verify_pin(REC, der)


def test_trust_modes() -> None:
    pinned = trust_for(REC)
    assert pinned.pin == "ab" * 32 and pinned.session.verify_mode == ssl.CERT_REQUIRED and not pinned.insecure
    insecure = trust_for(ProviderRecord(**{**REC.__dict__, "thumbprint": "", "insecure_skip_verify": True}))
    assert insecure.insecure and insecure.session.verify_mode == ssl.CERT_NONE and insecure.pin is None
    system = trust_for(ProviderRecord(**{**REC.__dict__, "thumbprint": ""}))
    assert system.session.verify_mode == ssl.CERT_REQUIRED and system.session.check_hostname


def test_add_provider_request_normalises_the_thumbprint() -> None:
    digest = "ab" * 32
    request = inventory_service_pb2.AddProviderRequest(provider=inventory_pb2.Provider(
        name="vc", url=" https://vc/sdk ", username="u", thumbprint=digest), password="pw")
    record = record_from_request(request)
    assert record.thumbprint == PIN and record.url == "https://vc/sdk" and record.type == "vsphere"
    assert "pw" not in repr(record)
    request.provider.type = inventory_pb2.PROVIDER_TYPE_OVIRT
    with pytest.raises(ValueError, match="^type"):
        record_from_request(request)


@pytest.mark.parametrize("item", [
    Datacenter("datacenter-1", "DC0"), Folder("group-1", "vm", "datacenter-1", "/DC0/vm"),
    Cluster("domain-c1", "C0", "datacenter-1"), Host("host-1", "esx", "domain-c1", "datacenter-1", True),
    Network("dvportgroup-1", "pg", NetworkKind.DISTRIBUTED_PORTGROUP, 42, "datacenter-1"),
    Datastore("datastore-1", "DS", 10, 5, "VMFS", "datacenter-1"),
    Vm(id="vm-1", name="a", disks=(Disk(key=1, file="[DS] a/a.vmdk", capacity_bytes=3),),
       nics=(Nic(mac="m", network_id="n"),), concerns=(Concern("x", ConcernCategory.WARNING, "l", "a"),)),
])
def test_objects_round_trip_through_protobuf(item: object) -> None:
    assert from_proto(to_proto(item)) == item  # type: ignore[arg-type]
    assert from_proto(inventory_pb2.InventoryObject()) is None


def test_log_filter_scrubs_secrets_from_messages_and_tracebacks() -> None:
    import io
    import logging

    from mtv.inventory.errors import RedactFilter, Secrets

    secrets = Secrets()
    secrets.add("hunter2-secret")
    secrets.add("abc")  # too short to scrub safely: ignored
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactFilter(secrets))
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("login with %s failed", "hunter2-secret")
        try:
            raise RuntimeError("server echoed hunter2-secret")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    assert "hunter2-secret" not in out.getvalue()
    assert out.getvalue().count("***") >= 2 and "abc" not in secrets.redact("xyz")
