"""`mtvctl provider ...` and `mtvctl inventory ...`: clients of the gRPC InventoryService.

The server address comes from --server or MTV_INVENTORY_GRPC (written to .run/env by `make up`).
Every failure is one line on stderr (SystemExit with a message), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from mtv.v1 import common_pb2, inventory_pb2, inventory_service_pb2, inventory_service_pb2_grpc

pb = inventory_service_pb2
ENV = "MTV_INVENTORY_GRPC"
_PHASE = {v: k.removeprefix("PROVIDER_PHASE_") for k, v in inventory_pb2.ProviderPhase.items()}
_POWER = {"on": common_pb2.POWER_STATE_ON, "off": common_pb2.POWER_STATE_OFF,
          "suspended": common_pb2.POWER_STATE_SUSPENDED}
_CONCERN = {"critical": common_pb2.CONCERN_CATEGORY_CRITICAL, "warning": common_pb2.CONCERN_CATEGORY_WARNING,
            "information": common_pb2.CONCERN_CATEGORY_INFORMATION}
PAGE_SIZE = 500


def phase_name(phase: int) -> str:
    """"READY" → "Ready", "AUTH_FAILED" → "AuthFailed" (the names the issue and the README use)."""
    return "".join(w.capitalize() for w in _PHASE.get(phase, "UNSPECIFIED").split("_"))


def stub(args: argparse.Namespace) -> inventory_service_pb2_grpc.InventoryServiceStub:
    address = getattr(args, "server", None) or os.environ.get(ENV, "")
    if not address:
        raise SystemExit(f"mtvctl: no inventory service: pass --server HOST:PORT or set {ENV} (`. .run/env`)")
    return stub_for(address)


def stub_for(address: str) -> inventory_service_pb2_grpc.InventoryServiceStub:
    return inventory_service_pb2_grpc.InventoryServiceStub(grpc.insecure_channel(address))


def call(method: Callable[..., Any], request: Message, timeout: float = 60.0) -> Any:
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE and "failed to connect" in (exc.details() or "").lower():
            raise SystemExit(f"mtvctl: cannot reach the inventory service ({exc.details()}); is it running? "
                             f"(`make up`, {ENV})") from None
        raise SystemExit(f"mtvctl: {code.name.lower().replace('_', ' ')}: {exc.details()}") from None


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise SystemExit(f"mtvctl: cannot read {what} {path}: {exc.strerror}") from None


# -- provider ------------------------------------------------------------------------------------


def add_provider(server: inventory_service_pb2_grpc.InventoryServiceStub, name: str, url: str, username: str,
                 password: str, *, thumbprint: str = "", ca_pem: str = "", insecure: bool = False,
                 wait_seconds: float = 30.0) -> pb.ProviderWithStatus:
    """Register a vSphere provider and wait (up to `wait_seconds`) for its first status."""
    provider = inventory_pb2.Provider(name=name, type=inventory_pb2.PROVIDER_TYPE_VSPHERE, url=url,
                                      username=username, thumbprint=thumbprint, insecure_skip_verify=insecure)
    call(server.AddProvider, pb.AddProviderRequest(provider=provider, password=password, ca_pem=ca_pem))
    deadline = time.monotonic() + wait_seconds
    while True:
        status = call(server.GetProvider, pb.GetProviderRequest(name=name)).provider
        if status.phase not in (inventory_pb2.PROVIDER_PHASE_CONNECTING, inventory_pb2.PROVIDER_PHASE_UNSPECIFIED) \
                or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def cmd_provider_add(args: argparse.Namespace) -> int:
    password = _read(args.password_file, "password file").rstrip("\r\n")
    ca_pem = _read(args.ca_file, "CA file") if args.ca_file else ""
    status = add_provider(stub(args), args.name, args.url, args.username, password, thumbprint=args.thumbprint or "",
                          ca_pem=ca_pem, insecure=args.insecure_skip_verify, wait_seconds=args.wait)
    if args.insecure_skip_verify:
        print(f"warning: TLS certificate verification is disabled for provider {args.name}", file=sys.stderr)
    print(f"provider {args.name} added ({status.provider.id}): {phase_name(status.phase)}: {status.reason}")
    return 0


def _provider_doc(p: pb.ProviderWithStatus) -> dict[str, Any]:
    doc = json_format.MessageToDict(p.provider, preserving_proto_field_name=True)
    return {**doc, "phase": phase_name(p.phase), "reason": p.reason, "vm_count": p.vm_count}


def cmd_provider_ls(args: argparse.Namespace) -> int:
    providers = call(stub(args).ListProviders, pb.ListProvidersRequest()).providers
    docs = [_provider_doc(p) for p in providers]
    if args.output != "table":
        return _dump(docs, args.output)
    _table(docs, [("NAME", "name"), ("URL", "url"), ("PHASE", "phase"), ("VMS", "vm_count"), ("REASON", "reason")])
    return 0


def cmd_provider_show(args: argparse.Namespace) -> int:
    doc = _provider_doc(call(stub(args).GetProvider, pb.GetProviderRequest(name=args.name)).provider)
    if args.output == "table":
        for key, value in doc.items():
            print(f"{key + ':':22} {value}")
        return 0
    return _dump(doc, args.output)


# -- inventory -----------------------------------------------------------------------------------


def _pages(method: Callable[..., Any], make: Callable[[pb.Page], Message], field: str) -> Iterator[Message]:
    token = ""
    while True:
        response = call(method, make(pb.Page(page_size=PAGE_SIZE, page_token=token)))
        yield from getattr(response, field)
        token = response.next_page_token
        if not token:
            return


def _vm_row(vm: dict[str, Any]) -> dict[str, Any]:
    categories = [c.get("category", "").removeprefix("CONCERN_CATEGORY_")[:1] for c in vm.get("concerns", [])]
    return {**vm, "power": vm.get("power_state", "").removeprefix("POWER_STATE_").lower(),
            "cpu": int(vm.get("cpu_sockets", 1)) * int(vm.get("cores_per_socket", 1)),
            "memory_mib": int(vm.get("memory_bytes", 0)) >> 20, "disk_count": len(vm.get("disks", [])),
            "nic_count": len(vm.get("nics", [])),
            "concern_summary": f"{categories.count('C')}/{categories.count('W')}/{categories.count('I')}"}


_COLUMNS = {
    "vms": [("NAME", "name"), ("ID", "id"), ("POWER", "power"), ("CPU", "cpu"), ("MEM(MiB)", "memory_mib"),
            ("DISKS", "disk_count"), ("NICS", "nic_count"), ("CONCERNS C/W/I", "concern_summary"), ("PATH", "path")],
    "hosts": [("NAME", "name"), ("ID", "id"), ("CLUSTER", "cluster_id"), ("MAINTENANCE", "in_maintenance_mode")],
    "networks": [("NAME", "name"), ("ID", "id"), ("KIND", "kind"), ("VLAN", "vlan")],
    "datastores": [("NAME", "name"), ("ID", "id"), ("TYPE", "type"), ("CAPACITY", "capacity_bytes"),
                   ("FREE", "free_bytes")],
}


def cmd_inventory(args: argparse.Namespace) -> int:
    server, what = stub(args), args.what
    if what == "vms":
        items = _pages(server.ListVms, lambda page: pb.ListVmsRequest(
            provider=args.provider, name_glob=args.name or "", power_state=_POWER.get(args.power or "", 0),
            folder=args.folder or "", concern_category=_CONCERN.get(args.concern or "", 0), page=page), "vms")
    else:
        method, request, field = {
            "hosts": (server.ListHosts, pb.ListHostsRequest, "hosts"),
            "networks": (server.ListNetworks, pb.ListNetworksRequest, "networks"),
            "datastores": (server.ListDatastores, pb.ListDatastoresRequest, "datastores"),
        }[what]
        items = _pages(method, lambda page: request(provider=args.provider, name_glob=args.name or "", page=page),
                       field)
    docs = [json_format.MessageToDict(i, preserving_proto_field_name=True,
                                      always_print_fields_with_no_presence=True) for i in items]
    if args.output != "table":
        return _dump(docs, args.output)
    if what == "networks":
        docs = [{**d, "kind": d.get("kind", "").removeprefix("NETWORK_KIND_").lower()} for d in docs]
    _table([_vm_row(d) for d in docs] if what == "vms" else docs, _COLUMNS[what])
    return 0


# -- output --------------------------------------------------------------------------------------


def _dump(doc: Any, fmt: str) -> int:
    if fmt == "json":
        print(json.dumps(doc, indent=2))
    else:
        print(yaml.safe_dump(doc, sort_keys=False), end="")
    return 0


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    cells = [[str(r.get(key, "")) for _, key in columns] for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, (h, _) in enumerate(columns)]
    for line in [[h for h, _ in columns], *cells]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def add_parsers(sub: Any) -> None:
    """Add the `provider` and `inventory` command groups to mtvctl's subparsers."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--server", help=f"inventory gRPC address HOST:PORT (default: ${ENV})")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")

    p = sub.add_parser("provider", help="source providers (vCenters) known to the inventory service")
    psub = p.add_subparsers(dest="action", required=True)
    add = psub.add_parser("add", help="register a provider", parents=[server])
    add.add_argument("type", choices=["vsphere"])
    add.add_argument("name", help="provider name (a DNS-1123 label)")
    add.add_argument("--url", required=True, help="https://HOST[:PORT]/sdk")
    add.add_argument("--username", required=True)
    add.add_argument("--password-file", required=True,
                     help="file holding the password (kept out of ps and shell history)")
    trust = add.add_mutually_exclusive_group()
    trust.add_argument("--ca-file", help="PEM CA bundle to verify the server certificate")
    trust.add_argument("--thumbprint", help="pin the server certificate by its SHA-256 thumbprint (AA:BB:...)")
    trust.add_argument("--insecure-skip-verify", action="store_true", help="do not verify TLS (reported as a warning)")
    add.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the first status")
    add.set_defaults(func=cmd_provider_add)
    psub.add_parser("ls", help="list providers and their status", parents=[server, output]).set_defaults(
        func=cmd_provider_ls)
    show = psub.add_parser("show", help="one provider and its status", parents=[server, output])
    show.add_argument("name")
    show.set_defaults(func=cmd_provider_show)

    inv = sub.add_parser("inventory", help="query a provider's inventory")
    isub = inv.add_subparsers(dest="what", required=True)
    for what in ("vms", "hosts", "networks", "datastores"):
        q = isub.add_parser(what, help=f"list {what}", parents=[server, output])
        q.add_argument("--provider", required=True, help="provider name or id")
        q.add_argument("--name", help="shell-style glob on the name")
        if what == "vms":
            q.add_argument("--power", choices=sorted(_POWER))
            q.add_argument("--folder", help="inventory path prefix, e.g. /DC0/vm/prod, or a folder id")
            q.add_argument("--concern", choices=sorted(_CONCERN), help="only VMs with a concern of this category")
        q.set_defaults(func=cmd_inventory)
