"""`make demo`: a cold migration of the simulator's VMs into the local target, end to end.

Starts the stack (`make up`), writes a plan for every simulator VM with network and storage maps,
creates and approves it with mtvctl (as a user would), shows live progress (`mtvctl watch`), then
prints where the VMs are and a table of source vs target checksums, and stops everything.

With KUBECONFIG set (see `cluster_target`) the target is that cluster: the demo creates the plan's
namespace and a Multus NetworkAttachmentDefinition per secondary network there, and the table says
which PVC each disk was uploaded to (through the upload proxy: the demo does not read PVCs back).
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
from typing import TYPE_CHECKING, Any

import yaml

from mtv.cli import watch
from mtv.devstack import stack
from mtv.devstack.process import StackError

if TYPE_CHECKING:
    from mtv.devstack.cluster_api import Cluster


def run_name() -> str:
    """Plan name and target namespace of one demo run: Kafka keeps earlier runs' plans (an approved plan
    never changes), so every run migrates under a new name, e.g. demo-20261127-152501."""
    return time.strftime("demo-%Y%m%d-%H%M%S")


def plan_document(manifest: dict[str, Any], name: str, target: dict[str, str],
                  storage_class: str = "standard") -> dict[str, Any]:
    """The demo plan: every VM; the first network to the pod network, the others to Multus
    (NetworkAttachmentDefinitions `net-<n>` in the plan's namespace)."""
    networks = sorted({n for vm in manifest["vms"] for n in vm.get("network_names", [])})
    datastores = sorted({d["datastore"] for vm in manifest["vms"] for d in vm["disks"]})
    network_map = [{"source": {"name": networks[0]}, "destination": {"type": "pod"}}] if networks else []
    for i, network in enumerate(networks[1:], start=1):
        network_map.append({"source": {"name": network},
                            "destination": {"type": "multus", "namespace": name, "name": f"net-{i}"}})
    return {
        "name": name,
        "description": f"make demo: every simulator VM to the {target['type']} target",
        "provider": {"source": stack.SIM_PROVIDER},
        "target": target,
        "targetNamespace": name,
        "type": "cold",
        "targetPowerState": "auto",
        "maxInFlight": 10,
        "vms": [{"name": vm["name"]} for vm in manifest["vms"]],
        "map": {
            "network": network_map,
            "storage": [{"source": {"name": ds},
                         "destination": {"storageClass": storage_class, "volumeMode": "Filesystem",
                                         "accessMode": "ReadWriteOnce"}} for ds in datastores],
        },
    }


MISSING = "(missing)"


@dataclass(frozen=True)
class ChecksumRow:
    vm: str
    disk_key: int
    source: str  # sha256 of the source disk (simulator manifest)
    reported: str  # sha256 in DiskTransferCompleted
    target: str  # sha256 of the target's copy, recomputed now; "" where it is not read back
    where: str  # the image file, or "<namespace>/<pvc> via the upload proxy", or MISSING
    reread: bool = True  # False for a PVC: only the worker's hash of the bytes it uploaded is known

    @property
    def ok(self) -> bool:
        if not self.source or self.source != self.reported or self.where == MISSING:
            return False
        return self.target == self.source if self.reread else True


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
                where=str(image) if image else MISSING,
            ))
    return rows


def cluster_rows(manifest: dict[str, Any], volumes: list[tuple[str, int, str]], namespace: str,
                 reported: dict[tuple[str, int], str]) -> list[ChecksumRow]:
    """One row per source disk, matched by VM id and disk key to the DataVolume the converter made. The PVC
    is not read back (that needs a pod in the cluster): the target column says where the bytes went."""
    pvcs = {(vm_id, key): name for vm_id, key, name in volumes}
    rows = []
    for vm in manifest["vms"]:
        for disk in vm["disks"]:
            key = (vm["moref"], int(disk["key"]))
            pvc = pvcs.get(key)
            rows.append(ChecksumRow(vm=vm["name"], disk_key=int(disk["key"]), source=disk["sha256"],
                                    reported=reported.get(key, ""), target="",
                                    where=f"{namespace}/{pvc} via the upload proxy" if pvc else MISSING,
                                    reread=False))
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
    for col in ("VM", "disk", "source", "transfer reported", "target", "where", "match"):
        table.add_column(col)
    for r in rows:
        target = r.target[:16] if r.reread else "not re-read"
        table.add_row(r.vm, str(r.disk_key), r.source[:16], r.reported[:16], target, r.where,
                      "[green]yes[/]" if r.ok else "[red]NO[/]")
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@dataclass(frozen=True)
class DemoResult:
    plan_id: str
    state: watch.WatchState
    rows: list[ChecksumRow]
    target: Path  # <target root>/<namespace> (local target)
    namespace: str = ""
    context: str = ""  # the cluster's kubeconfig context; "" for the local target

    @property
    def ok(self) -> bool:
        return not self.state.failed() and bool(self.rows) and all(r.ok for r in self.rows)


def migrate(env: dict[str, str], layout: stack.Layout, timeout: float = 900.0) -> DemoResult:
    """On a running stack: plan every simulator VM, approve, follow to the end, check every disk."""
    manifest = json.loads(Path(env["MTV_VSPHERE_MANIFEST"]).read_text())
    target_root = Path(env["MTV_TARGET_DIR"])
    plan_file = layout.root / "demo-plan.yaml"
    name = run_name()
    cluster = _cluster(env)
    if cluster is not None:
        plan = plan_document(manifest, name, {"type": "kubernetes", "context": cluster.context},
                             env["MTV_DEMO_STORAGE_CLASS"])
        _prepare_cluster(cluster, plan)
    else:
        plan = plan_document(manifest, name, {"type": "local", "path": str(target_root)})
    plan_file.write_text(yaml.safe_dump(plan, sort_keys=False))
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
    if cluster is None:
        return DemoResult(plan_id, state, checksum_rows(manifest, target_root / name, reported), target_root / name,
                          name)
    try:
        rows = cluster_rows(manifest, cluster.datavolumes(name), name, reported)
    finally:
        cluster.close()
    return DemoResult(plan_id, state, rows, target_root / name, name, cluster.context)


def _cluster(env: dict[str, str]) -> Cluster | None:
    if env.get("MTV_DEMO_TARGET") != "kubernetes":
        return None
    from mtv.devstack.cluster_api import Cluster  # the kubernetes client only for a cluster target

    return Cluster(env["MTV_DEMO_KUBECONFIG"], env["MTV_DEMO_CONTEXT"])


def _prepare_cluster(cluster: Cluster, plan: dict[str, Any]) -> None:
    """The namespace and the Multus networks the plan maps to (the converter does not create networks)."""
    namespace = plan["targetNamespace"]
    cluster.ensure_namespace(namespace)
    for entry in plan["map"]["network"]:
        dest = entry["destination"]
        if dest["type"] == "multus":
            cluster.ensure_network(dest["namespace"], dest["name"])
            print(f"created NetworkAttachmentDefinition {dest['namespace']}/{dest['name']} in cluster "
                  f"{cluster.context!r}", flush=True)


def run(layout: stack.Layout, timeout: float = 900.0) -> int:
    env = stack.up(layout)
    try:
        result = migrate(env, layout, timeout)
        if result.context:
            print(f"\nmigrated VMs: cluster {result.context!r}, namespace {result.namespace}; look at them with "
                  f"`kubectl get vm,dv -n {result.namespace}`")
        else:
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
