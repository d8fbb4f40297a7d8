"""Inventory service against a simulator with 2,000 VMs: discovery time, memory, update latency.

Runs the real service as a subprocess (like `make up`), registers the simulator over gRPC and reads
what it publishes from Kafka (MTV_KAFKA_BOOTSTRAP, provided by benchmarks/run.py).

Prints:
  inventory_discovery_seconds=         discovery + translation + publishing every object (service side,
                                       InventorySynced.duration_seconds: RetrievePropertiesEx to last ack)
  inventory_discovery_wall_seconds=    AddProvider call → every ADDED event read back from Kafka
  inventory_objects=                   objects published by the discovery
  inventory_peak_rss_mb=               the service's peak resident memory (VmHWM)
  inventory_update_latency_p50_ms= / _p99_ms= / _max_ms=
                                       vSphere power-off/on call → UPDATED event read from Kafka
  inventory_update_publish_p99_ms=     of that: event built → read back (publish, flush, consume)
"""

from __future__ import annotations

import os
import random
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from mtv import topics
from mtv.bus import admin
from mtv.bus.codec import decode
from mtv.devstack.process import free_port
from mtv.devstack.vsphere_sim import SimHandle, start_sim, stop_sim
from mtv.inventory import cli, tls
from mtv.v1 import inventory_pb2

VMS = int(os.environ.get("MTV_BENCH_INVENTORY_VMS", "2000"))
UPDATES = int(os.environ.get("MTV_BENCH_INVENTORY_UPDATES", "100"))


class Tap:
    """InventoryChanged/InventorySynced events of one provider, read from the topic's current end."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time_ns()}",
                                  "enable.auto.commit": False})
        name = topics.INVENTORY_EVENTS.name
        self.consumer.assign([TopicPartition(name, p, self.consumer.get_watermark_offsets(
            TopicPartition(name, p), timeout=10)[1]) for p in range(topics.INVENTORY_EVENTS.partitions)])

    def next(self, timeout: float) -> object | None:
        msg = self.consumer.poll(timeout)
        if msg is None or msg.error():
            return None
        return decode(msg.value())


def start_service(bootstrap: str, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    grpc_port, http_port = free_port(), free_port()
    env = {**os.environ, "MTV_KAFKA_BOOTSTRAP": bootstrap, "MTV_GRPC_PORT": str(grpc_port),
           "MTV_HTTP_PORT": str(http_port), "MTV_PROVIDER_DIR": str(root / "providers")}
    with open(root / "inventory.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mtv.inventory"], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return proc, f"127.0.0.1:{grpc_port}"
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"inventory service not ready; see {root / 'inventory.log'}")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def discover(tap: Tap, address: str, sim: SimHandle) -> tuple[str, float, float, int]:
    """Register the simulator; wait until every ADDED event and the InventorySynced are read back."""
    started = time.monotonic()
    status = cli.add_provider(cli.stub_for(address), "bench", sim.url, sim.username, sim.password,
                              thumbprint=tls.fetch_thumbprint(sim.url), wait_seconds=60)
    provider_id = status.provider.id
    added, synced = 0, None
    deadline = time.monotonic() + 300
    while synced is None or added < synced.object_count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"discovery did not finish: {added} added, synced={synced}")
        event = tap.next(1.0)
        if event is None:
            continue
        if event.WhichOneof("payload") == "inventory_synced" and event.inventory_synced.provider_id == provider_id:
            synced = event.inventory_synced
        elif event.WhichOneof("payload") == "inventory_changed" and event.inventory_changed.provider_id == provider_id:
            added += event.inventory_changed.change == inventory_pb2.CHANGE_KIND_ADDED
    return provider_id, synced.duration_seconds, time.monotonic() - started, added


def vm_refs(content: vim.ServiceInstanceContent) -> list[object]:
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
        pc.TraversalSpec(name="v", path="view", skip=False, type=vim.view.ContainerView)])],
        propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])])
    refs, result = [], content.propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions(maxObjects=1000))
    while result is not None:
        refs += [o.obj for o in result.objects]
        result = content.propertyCollector.ContinueRetrievePropertiesEx(result.token) if result.token else None
    return refs


def wait_event(tap: Tap, provider_id: str, object_id: str, timeout: float = 30.0) -> tuple[float, float]:
    """When the change event was read (monotonic), and how long ago it was built (seconds): the part of
    the latency spent publishing and reading it back."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = tap.next(0.05)
        change = event.inventory_changed if event is not None else None
        if change is not None and change.provider_id == provider_id and change.object_id == object_id:
            return time.monotonic(), time.time() - event.envelope.occurred_at.ToNanoseconds() / 1e9
    raise RuntimeError(f"no event for {object_id} within {timeout}s")


def update_latencies(tap: Tap, provider_id: str, sim: SimHandle) -> tuple[list[float], list[float]]:
    host, port = tls.host_port(sim.url)
    si = SmartConnect(host=host, port=port, user=sim.username, pwd=sim.password,
                      sslContext=ssl._create_unverified_context())
    try:
        content = si.RetrieveContent()
        refs = vm_refs(content)
        rng = random.Random(7)
        warm = refs[0]
        warm.Rename_Task("warm-up")
        wait_event(tap, provider_id, warm._moId, 120)  # the watch is running (its initial update set is applied)
        off: set[str] = set()
        latencies, publishing = [], []
        for _ in range(UPDATES):
            vm = rng.choice(refs)
            started = time.monotonic()
            vm.PowerOnVM_Task() if vm._moId in off else vm.PowerOffVM_Task()
            off ^= {vm._moId}
            seen, publish = wait_event(tap, provider_id, vm._moId)
            latencies.append(seen - started)
            publishing.append(publish)
        return latencies, publishing
    finally:
        Disconnect(si)


def main() -> int:
    bootstrap = os.environ["MTV_KAFKA_BOOTSTRAP"]
    admin.ensure_topics(bootstrap)
    with tempfile.TemporaryDirectory(prefix="mtv-bench-inventory-") as tmp:
        root = Path(tmp)
        sim = start_sim(root / "sim", root / "pids", name="bench-sim", dc=1, cluster=1, host=4, standalone_host=0,
                        vm=VMS, ds=2, pg=2, std_pg=2, disks=2, nics=2, disk_size="8MiB", seed=False, timeout=600)
        proc = None
        try:
            proc, address = start_service(bootstrap, root)
            tap = Tap(bootstrap)
            provider_id, discovery, wall, added = discover(tap, address, sim)
            latencies, publishing = update_latencies(tap, provider_id, sim)
            rss = peak_rss_mb(proc.pid)
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
            stop_sim(root / "pids", name="bench-sim")
    cuts = statistics.quantiles(latencies, n=100)
    print(f"inventory_vms={VMS}")
    print(f"inventory_objects={added}")
    print(f"inventory_discovery_seconds={discovery:.2f}")
    print(f"inventory_discovery_wall_seconds={wall:.2f}")
    print(f"inventory_peak_rss_mb={rss:.0f}")
    print(f"inventory_update_latency_p50_ms={statistics.median(latencies) * 1000:.0f}")
    print(f"inventory_update_latency_p99_ms={cuts[98] * 1000:.0f}")
    print(f"inventory_update_latency_max_ms={max(latencies) * 1000:.0f}")
    print(f"inventory_update_publish_p99_ms={statistics.quantiles(publishing, n=100)[98] * 1000:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
