"""`make up` / `make down`: the whole local stack as background processes under `.run/`.

Order: Kafka (+ topics) → vSphere simulator → the four services. Each part is checked ready
before the next starts; if one fails, what was started is stopped again and the error says
what to do. `.run/env` is written last, so its presence means the stack is up.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mtv.bus import admin
from mtv.devstack import kafka_broker, vsphere_sim
from mtv.devstack.cluster_target import ClusterTarget, cluster_mode
from mtv.devstack.paths import repo_root, run_dir
from mtv.devstack.process import StackError, alive, log_tail, port_in_use, spawn, stop_named

SERVICES = ("inventory", "planner", "transfer", "converter")
DEFAULT_KAFKA_PORTS = (29092, 29093)
DEFAULT_SIM_PORT = 18989
DEFAULT_HTTP_PORTS = {"inventory": 18081, "planner": 18082, "transfer": 18083, "converter": 18084}
DEFAULT_INVENTORY_GRPC_PORT = 18091
DEFAULT_PLANNER_GRPC_PORT = 18092
DEFAULT_TRANSFER_WORKERS = 2  # the demo shows two workers sharing the disks (one consumer group)
# Every port `make up` takes, by the variable that changes it (tests set them all to free ports).
PORT_VARS = ("MTV_KAFKA_PORT", "MTV_KAFKA_CONTROLLER_PORT", "MTV_VSPHERE_PORT", "MTV_INVENTORY_HTTP_PORT",
             "MTV_PLANNER_HTTP_PORT", "MTV_TRANSFER_HTTP_PORT", "MTV_CONVERTER_HTTP_PORT", "MTV_INVENTORY_GRPC_PORT",
             "MTV_PLANNER_GRPC_PORT")
APPROVER_ID = "local-admin"  # the approver `mtvctl plan approve` signs as on the local stack
SIM_PROVIDER = "vsphere-sim"  # the simulator as the inventory's provider, registered by `make up`
# The demo inventory: 3 VMs per resource pool on one cluster of 2 hosts, 2 disks and 2 NICs each.
SIM_DEFAULTS = {"dc": 1, "cluster": 1, "host": 2, "standalone_host": 0, "vm": 3, "ds": 1, "pg": 1,
                "disks": 2, "nics": 2}


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def env_file(self) -> Path:
        return self.root / "env"


def _say(msg: str) -> None:
    print(f"mtv-stack: {msg}", file=sys.stderr, flush=True)


def _port(var: str, default: int) -> int:
    raw = os.environ.get(var, str(default)).strip()
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StackError(f"{var}={raw!r} is not a TCP port; use 1-65535")
    port = int(raw)
    if port_in_use(port):
        raise StackError(f"port {port} is already in use on 127.0.0.1 (see `ss -ltnp 'sport = :{port}'`); "
                         f"set {var} to a free port, or run `make down` if an old stack holds it")
    return port


def _wait_http_ready(name: str, pid: int, url: str, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise StackError(f"{name} exited during start-up; log {log}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise StackError(f"{name} not ready at {url} after {timeout:.0f}s; log {log}:\n{log_tail(log)}")


def running(layout: Layout) -> list[str]:
    names = []
    for pid_file in sorted(layout.pids.glob("*.pid")):
        text = pid_file.read_text().strip()
        if text.isdigit() and alive(int(text)):
            names.append(pid_file.stem)
    return names


def up(layout: Layout) -> dict[str, str]:
    if running(layout):
        raise StackError(f"already running: {', '.join(running(layout))}; `make down` first")
    # Check every port before starting anything, so a clash is reported at once.
    kafka_ports = kafka_broker.ports_from_env(DEFAULT_KAFKA_PORTS)
    for var, p in zip((kafka_broker.PORT_ENV, kafka_broker.CONTROLLER_PORT_ENV), kafka_ports, strict=True):
        _port(var, p)
    sim_port = _port("MTV_VSPHERE_PORT", DEFAULT_SIM_PORT)
    http_ports = {s: _port(f"MTV_{s.upper()}_HTTP_PORT", p) for s, p in DEFAULT_HTTP_PORTS.items()}
    grpc_port = _port("MTV_INVENTORY_GRPC_PORT", DEFAULT_INVENTORY_GRPC_PORT)
    planner_port = _port("MTV_PLANNER_GRPC_PORT", DEFAULT_PLANNER_GRPC_PORT)
    cluster = cluster_target()  # before anything starts: a cluster that cannot be used fails at once

    _say("resolving Kafka jars and building the vSphere simulator (cached under ~/.cache/mtv)")
    kafka_broker.ensure_jars()
    vsphere_sim.ensure_binary()
    try:
        _say(f"starting Kafka {kafka_broker.KAFKA_VERSION} (KRaft) on 127.0.0.1:{kafka_ports[0]}")
        broker = kafka_broker.start_broker(layout.root / "kafka", layout.logs / "kafka.log", layout.pids,
                                           *kafka_ports)
        created = admin.ensure_topics(broker.bootstrap)
        _say(f"topics ready ({len(created)} created)")
        _say(f"starting the vSphere simulator on 127.0.0.1:{sim_port}")
        sim = vsphere_sim.start_sim(layout.root / "vsphere-sim", layout.pids, port=sim_port, **SIM_DEFAULTS)
        env = {
            "MTV_KAFKA_BOOTSTRAP": broker.bootstrap,
            "MTV_VSPHERE_URL": sim.url,
            "MTV_VSPHERE_USER": sim.username,
            "MTV_VSPHERE_PASSWORD_FILE": str(sim.password_file),
            "MTV_VSPHERE_MANIFEST": str(sim.manifest),
        }
        config = _configure(layout, cluster)
        env.update(config.client_env)
        for name, service, port in _processes(http_ports):
            log = layout.logs / f"{name}.log"
            extra = config.service_env.get(service, {})
            if service == "inventory":
                extra = {**extra, "MTV_GRPC_PORT": str(grpc_port)}
            if service == "planner":
                extra = {**extra, "MTV_PLANNER_GRPC_PORT": str(planner_port)}
            daemon = spawn(name, [sys.executable, "-m", f"mtv.{service}"], log, layout.pids,
                           env={"MTV_KAFKA_BOOTSTRAP": broker.bootstrap, "MTV_HTTP_PORT": str(port),
                                "MTV_INSTANCE_ID": name, **extra},
                           cwd=repo_root())
            _wait_http_ready(name, daemon.pid, f"http://127.0.0.1:{port}/readyz", log)
            if service == "inventory":
                env["MTV_INVENTORY_GRPC"] = f"127.0.0.1:{grpc_port}"
                _say(f"registering the simulator as provider {SIM_PROVIDER}: "
                     f"{_register_sim(env['MTV_INVENTORY_GRPC'], sim)}")
            if service == "planner":
                env["MTV_PLANNER_GRPC"] = f"127.0.0.1:{planner_port}"
            env[f"MTV_{name.upper().replace('-', '_')}_URL"] = f"http://127.0.0.1:{port}"
            _say(f"{name} ready (metrics and health on http://127.0.0.1:{port})")
    except BaseException:
        down(layout, quiet=True)
        raise
    layout.env_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    return env


@dataclass(frozen=True)
class StackConfig:
    service_env: dict[str, dict[str, str]]  # extra environment per service
    client_env: dict[str, str]  # what `. .run/env` gives a shell (mtvctl)


def cluster_target() -> ClusterTarget | None:
    """The Kubernetes target of this stack when KUBECONFIG is set (see cluster_target), else None."""
    if not cluster_mode(os.environ):
        return None
    from mtv.devstack.cluster_api import Cluster

    cluster = Cluster(os.environ["KUBECONFIG"])
    try:
        target = cluster.resolve(os.environ.get("MTV_CDI_UPLOAD_URL", ""), os.environ.get("MTV_DEMO_STORAGE_CLASS", ""))
    finally:
        cluster.close()
    _say(f"target: cluster {target.context!r} (KUBECONFIG), StorageClass {target.storage_class}, CDI upload proxy "
         f"{target.upload_url}; MTV_DEMO_TARGET=local for the local target")
    return target


def _configure(layout: Layout, cluster: ClusterTarget | None = None) -> StackConfig:
    """Provider directory, approver key and target directory shared by the services of this stack, and the
    cluster settings of converter, planner and transfer workers when the target is a cluster.

    The simulator's provider from an earlier run is dropped (this run's simulator has a new
    password, maybe a new port); other providers are kept. The approver key is made once per
    checkout and kept, like a real approver's.
    """
    import base64
    import json
    import secrets
    from contextlib import suppress

    from mtv.provider_store import ProviderNotFound, ProviderStore, write_private

    providers = layout.root / "providers"
    with suppress(ProviderNotFound):
        ProviderStore(providers).remove(SIM_PROVIDER)
    approvers = layout.root / "approvers"
    approvers.mkdir(parents=True, exist_ok=True)
    key_file = approvers / f"{APPROVER_ID}.key"
    if not key_file.exists():
        write_private(key_file, base64.b64encode(secrets.token_bytes(32)).decode())
    keys_file = approvers / "keys.json"
    write_private(keys_file, json.dumps({APPROVER_ID: key_file.read_text().strip()}))
    target = layout.root / "target"
    provider_env = {"MTV_PROVIDER_DIR": str(providers)}
    service_env = {
        "inventory": provider_env,
        "transfer": provider_env,
        "planner": {"MTV_APPROVER_KEYS_FILE": str(keys_file)},
        "converter": {"MTV_LOCAL_TARGET_ROOT": str(target)},
    }
    client_env = {"MTV_APPROVER_ID": APPROVER_ID, "MTV_APPROVER_KEY_FILE": str(key_file),
                  "MTV_PROVIDER_DIR": str(providers), "MTV_TARGET_DIR": str(target)}
    if cluster is not None:
        for service, extra in cluster.service_env().items():
            service_env[service] = {**service_env[service], **extra}
        client_env.update(cluster.client_env())
    return StackConfig(service_env=service_env, client_env=client_env)


def _processes(http_ports: dict[str, int]) -> list[tuple[str, str, int]]:
    """(process name, service, health port) in start order; extra transfer workers get free ports."""
    from mtv.devstack.process import free_port

    raw = os.environ.get("MTV_TRANSFER_WORKERS", str(DEFAULT_TRANSFER_WORKERS)).strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 12:
        raise StackError(f"MTV_TRANSFER_WORKERS={raw!r}: use 1-12 (the transfer topic has 12 partitions)")
    procs = []
    for service in SERVICES:
        procs.append((service, service, http_ports[service]))
        if service == "transfer":
            procs += [(f"transfer-{i}", "transfer", free_port()) for i in range(2, int(raw) + 1)]
    return procs


def _register_sim(address: str, sim: vsphere_sim.SimHandle) -> str:
    """Add the simulator to the inventory, pinned by its certificate's thumbprint; wait for Ready."""
    from mtv.inventory import cli, tls
    from mtv.v1 import inventory_pb2

    try:
        status = cli.add_provider(cli.stub_for(address), SIM_PROVIDER, sim.url, sim.username, sim.password,
                                  thumbprint=tls.fetch_thumbprint(sim.url), wait_seconds=60)
    except SystemExit as exc:  # mtvctl's one-line errors
        raise StackError(str(exc)) from None
    if status.phase != inventory_pb2.PROVIDER_PHASE_READY:
        raise StackError(f"provider {SIM_PROVIDER} is {cli.phase_name(status.phase)}: {status.reason}")
    return f"{cli.phase_name(status.phase)} ({status.vm_count} VMs)"


def down(layout: Layout, quiet: bool = False) -> list[str]:
    """Stop the services (every transfer worker too), then the simulator, then Kafka."""
    stopped = []
    layout.env_file.unlink(missing_ok=True)
    infra = ("vsphere-sim", "kafka")
    services = sorted((p.stem for p in layout.pids.glob("*.pid") if p.stem not in infra), reverse=True)
    for name in (*services, *infra):
        if stop_named(name, layout.pids, timeout=30.0):
            stopped.append(name)
            if not quiet:
                _say(f"stopped {name}")
    left = running(layout)
    if left:
        raise StackError(f"still running after stop: {', '.join(left)}; see {layout.pids}")
    return stopped


def default_layout() -> Layout:
    return Layout(run_dir())

