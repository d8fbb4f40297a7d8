"""`make demo`: a cold migration of the simulator's VMs into the local target, end to end.

Starts the stack (`make up`), writes a plan for every simulator VM with network and storage maps,
creates and approves it with mtvctl (as a user would), shows live progress (`mtvctl watch`), then
prints where the VMs are and a table of source vs target checksums, and stops everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mtv.cli import watch
from mtv.devstack import stack
from mtv.devstack.process import StackError


def run_name() -> str:
    """Plan name and target namespace of one demo run: Kafka keeps earlier runs' plans (an approved plan
    never changes), so every run migrates under a new name, e.g. demo-20261127-152501."""
    return time.strftime("demo-%Y%m%d-%H%M%S")


def plan_document(manifest: dict[str, Any], target_dir: Path, name: str) -> dict[str, Any]:
    """The demo plan: every VM; the first network to the pod network, the others to Multus."""
    networks = sorted({n for vm in manifest["vms"] for n in vm.get("network_names", [])})
    datastores = sorted({d["datastore"] for vm in manifest["vms"] for d in vm["disks"]})
    network_map = [{"source": {"name": networks[0]}, "destination": {"type": "pod"}}] if networks else []
    for i, network in enumerate(networks[1:], start=1):
        network_map.append({"source": {"name": network},
                            "destination": {"type": "multus", "namespace": name, "name": f"net-{i}"}})
    return {
        "name": name,
        "description": "make demo: every simulator VM to the local target",
        "provider": {"source": stack.SIM_PROVIDER},
        "target": {"type": "local", "path": str(target_dir)},
        "targetNamespace": name,
        "type": "cold",
        "targetPowerState": "auto",
        "maxInFlight": 10,
        "vms": [{"name": vm["name"]} for vm in manifest["vms"]],
        "map": {
            "network": network_map,
            "storage": [{"source": {"name": ds},
                         "destination": {"storageClass": "standard", "volumeMode": "Filesystem",
                                         "accessMode": "ReadWriteOnce"}} for ds in datastores],
        },
    }


@dataclass(frozen=True)
class ChecksumRow:
    vm: str
    disk_key: int
    source: str  # sha256 of the source disk (simulator manifest)
    reported: str  # sha256 in DiskTransferCompleted
    target: str  # sha256 of the image in the target, recomputed now
    image: str

    @property
    def ok(self) -> bool:
        return bool(self.source) and self.source == self.reported == self.target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def target_disks(target_root: Path) -> list[tuple[str, int, Path]]:
    """(source vm id, disk key, image path) for every DataVolume the local target wrote."""
    found = []
    for doc_file in sorted(target_root.rglob("*.yaml")):
        for doc in yaml.safe_load_all(doc_file.read_text()):
            if not doc or doc.get("kind") != "DataVolume":
                continue
            meta = doc["metadata"]
            image = meta.get("annotations", {}).get("mtv.konveyor.io/disk-image")
            if image:
                found.append((meta["labels"]["mtv.konveyor.io/vm-id"],
                              int(meta["annotations"]["mtv.konveyor.io/disk-key"]), doc_file.parent / image))
    return found


def checksum_rows(manifest: dict[str, Any], target_root: Path, reported: dict[tuple[str, int], str]
                  ) -> list[ChecksumRow]:
    """One row per source disk, matched to its target image by VM id and disk key."""
    images = {(vm_id, key): path for vm_id, key, path in target_disks(target_root)}
    rows = []
    for vm in manifest["vms"]:
        for disk in vm["disks"]:
            image = images.get((vm["moref"], int(disk["key"])))
            rows.append(ChecksumRow(
                vm=vm["name"], disk_key=int(disk["key"]), source=disk["sha256"],
                reported=reported.get((vm["moref"], int(disk["key"])), ""),
                target=_sha256(image) if image and image.exists() else "",
                image=str(image) if image else "(missing)",
            ))
    return rows


def _mtvctl(env: dict[str, str], *args: str) -> None:
    print(f"$ mtvctl {' '.join(args)}", flush=True)
    result = subprocess.run([sys.executable, "-m", "mtv.cli", *args], env={**os.environ, **env})
    if result.returncode != 0:
        raise StackError(f"mtvctl {args[0]} {args[1]} failed (exit {result.returncode})")


def _print_table(rows: list[ChecksumRow]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="source vs target checksums (SHA-256)")
    for col in ("VM", "disk", "source", "transfer reported", "target image", "match"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.vm, str(r.disk_key), r.source[:16], r.reported[:16], r.target[:16],
                      "[green]yes[/]" if r.ok else "[red]NO[/]")
    Console(width=None if sys.stdout.isatty() else 150).print(table)


@dataclass(frozen=True)
class DemoResult:
    plan_id: str
    state: watch.WatchState
    rows: list[ChecksumRow]
    target: Path  # <target root>/<namespace>

    @property
    def ok(self) -> bool:
        return not self.state.failed() and bool(self.rows) and all(r.ok for r in self.rows)


def migrate(env: dict[str, str], layout: stack.Layout, timeout: float = 900.0) -> DemoResult:
    """On a running stack: plan every simulator VM, approve, follow to the end, check every disk."""
    manifest = json.loads(Path(env["MTV_VSPHERE_MANIFEST"]).read_text())
    target_root = Path(env["MTV_TARGET_DIR"])
    plan_file = layout.root / "demo-plan.yaml"
    name = run_name()
    plan_file.write_text(yaml.safe_dump(plan_document(manifest, target_root, name), sort_keys=False))
    print(f"\nplan file: {plan_file}", flush=True)
    _mtvctl(env, "plan", "create", "-f", str(plan_file))
    _mtvctl(env, "plan", "approve", name)
    plan_id = _plan_id(env, name)
    print(f"$ mtvctl watch {plan_id}", flush=True)
    state = watch.follow(env["MTV_KAFKA_BOOTSTRAP"], plan_id, until_done=True, timeout=timeout)
    view = state.plans.get(plan_id)
    reported = {}
    for disk in (view.disks.values() if view else ()):
        _plan, vm_id, key = disk.transfer_id.rsplit("/", 2)
        reported[(vm_id, int(key))] = disk.sha256
    rows = checksum_rows(manifest, target_root / name, reported)
    return DemoResult(plan_id, state, rows, target_root / name)


def run(layout: stack.Layout, timeout: float = 900.0) -> int:
    env = stack.up(layout)
    try:
        result = migrate(env, layout, timeout)
        print(f"\nmigrated VMs (manifests for `kubectl apply -f`, disk images beside them): {result.target}")
        _print_table(result.rows)
        print("demo: every disk matches its source" if result.ok else
              f"demo: FAILED (see the table above and the logs under {layout.logs})")
        return 0 if result.ok else 1
    finally:
        print()
        stack.down(layout)


def _plan_id(env: dict[str, str], name: str) -> str:
    from mtv.planner.client import stub_for
    from mtv.v1 import planner_service_pb2

    request = planner_service_pb2.GetPlanRequest(name=name)
    return str(stub_for(env["MTV_PLANNER_GRPC"]).GetPlan(request, timeout=10).plan.plan_id)
