"""The vSphere simulator (deploy/local/vsphere-sim): build it once into the cache, start it, stop it.

The simulator is a small Go program on govmomi's `simulator` package. It prints one line,
`MTV_VSPHERE_URL=https://127.0.0.1:PORT/sdk`, once its inventory exists and every disk is seeded, and
writes a JSON manifest of the inventory (counts, VMs, disks with sha256) next to its log.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtv.devstack.gobuild import go_env
from mtv.devstack.paths import cache_dir, repo_root
from mtv.devstack.process import StackError, alive, log_tail, spawn, stop, stop_named

SOURCE_DIR = repo_root() / "deploy" / "local" / "vsphere-sim"
READY_PREFIX = "MTV_VSPHERE_URL="
READY_TIMEOUT = 120.0
# Removing a big inventory's datastores (2,000 disks) takes seconds after SIGTERM.
STOP_TIMEOUT = 60.0


@dataclass(frozen=True)
class SimHandle:
    url: str  # https://127.0.0.1:PORT/sdk (self-signed certificate)
    username: str
    password_file: Path  # 0600, the password without a newline
    pid: int
    manifest: Path
    log: Path
    counts: dict[str, Any]  # the manifest's "counts": vms, hosts, datastores, networks by kind, ...

    @property
    def password(self) -> str:
        return self.password_file.read_text()

    def load_manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest.read_text())


def _sources() -> list[Path]:
    # The module is one flat package; a subpackage would have to be added here.
    files = sorted(p for p in SOURCE_DIR.iterdir() if p.suffix == ".go" or p.name in ("go.mod", "go.sum"))
    if not any(p.name == "go.mod" for p in files):
        raise StackError(f"no Go module in {SOURCE_DIR}")
    return files




def ensure_binary() -> Path:
    """Build the simulator into `<cache>/bin/vsphere-sim-<hash of its sources>` unless it is already there."""
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    target = cache_dir() / "bin" / f"vsphere-sim-{digest.hexdigest()[:16]}"
    if target.is_file() and os.access(target, os.X_OK):
        return target

    go = shutil.which("go")
    if go is None:
        raise StackError("the vSphere simulator needs a Go toolchain (1.25 or newer) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build to a private name and rename: concurrent builds (pytest-xdist, `make up`) never see half a file.
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    print(f"building the vSphere simulator into {target} (the first build takes a minute or two)",
          file=sys.stderr, flush=True)
    started = time.monotonic()
    result = subprocess.run(
        [go, "build", "-trimpath", "-buildvcs=false", "-o", str(tmp), "."],
        cwd=SOURCE_DIR, env={**os.environ, **go_env()},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
    )
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        tail = "\n".join(result.stdout.splitlines()[-30:])
        raise StackError(f"building the vSphere simulator failed (go build in {SOURCE_DIR}):\n{tail}")
    os.replace(tmp, target)
    print(f"built the vSphere simulator in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    # Each source edit makes a new 35 MB binary; keep only this one (another checkout rebuilds in ~2s).
    for old in target.parent.glob("vsphere-sim-*"):
        if old != target and "." not in old.name:
            old.unlink(missing_ok=True)
    return target


def _flag(name: str, value: object) -> str:
    if isinstance(value, bool):
        return f"-{name}={'true' if value else 'false'}"
    return f"-{name}={value}"


def start_sim(
    run_dir: Path,
    pid_dir: Path,
    *,
    name: str = "vsphere-sim",
    port: int = 0,
    username: str = "administrator@vsphere.local",
    password: str | None = None,
    dc: int = 1,
    cluster: int = 1,
    host: int = 3,
    standalone_host: int = 1,
    vm: int = 2,
    ds: int = 1,
    pg: int = 1,
    std_pg: int = 1,
    disks: int = 1,
    nics: int = 1,
    disk_size: int | str = "64MiB",
    fill: float = 0.1,
    seed: bool = True,
    autostart: bool = True,
    folder_auth: bool = True,
    folder_rate_limit: int | str = 0,
    api_version: str | None = None,
    timeout: float = READY_TIMEOUT,
) -> SimHandle:
    """Start the simulator; keyword arguments are its flags (`standalone_host` is `-standalone-host`).

    VMs per datacenter = vm * (cluster + standalone_host); hosts = cluster * host + standalone_host.
    Files go to `run_dir`: `<name>.log`, `<name>.manifest.json`, `<name>.password`, `<name>-data/`.
    """
    pid_file = pid_dir / f"{name}.pid"
    if pid_file.exists():
        try:
            old = int(pid_file.read_text().strip())
        except ValueError:
            old = 0
        if old and alive(old):
            raise StackError(f"{name} is already running (pid {old}); stop it first")
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / f"{name}.log"
    manifest = run_dir / f"{name}.manifest.json"
    data_dir = run_dir / f"{name}-data"
    # A stale log would hold an old readiness line; a SIGKILLed run leaves its datastores behind.
    log.unlink(missing_ok=True)
    manifest.unlink(missing_ok=True)
    shutil.rmtree(data_dir, ignore_errors=True)

    password_file = run_dir / f"{name}.password"
    password_file.unlink(missing_ok=True)
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password if password is not None else secrets.token_urlsafe(18))

    flags: dict[str, object] = {
        "l": f"127.0.0.1:{port}", "username": username, "password-file": password_file,
        "data-dir": data_dir, "manifest": manifest,
        "dc": dc, "cluster": cluster, "host": host, "standalone-host": standalone_host, "vm": vm,
        "ds": ds, "pg": pg, "std-pg": std_pg, "disks": disks, "nics": nics,
        "disk-size": disk_size, "fill": fill, "seed": seed, "autostart": autostart,
        "folder-auth": folder_auth, "folder-rate-limit": folder_rate_limit,
    }
    if api_version:
        flags["api-version"] = api_version
    argv = [str(ensure_binary()), *(_flag(k, v) for k, v in flags.items())]
    daemon = spawn(name, argv, log, pid_dir)

    url = _wait_ready(daemon.pid, log, timeout)
    try:
        counts = json.loads(manifest.read_text())["counts"]
    except (OSError, ValueError, KeyError) as exc:
        stop(daemon.pid)
        raise StackError(f"{name} is up but its manifest {manifest} is unreadable: {exc}") from exc
    return SimHandle(url=url, username=username, password_file=password_file, pid=daemon.pid,
                     manifest=manifest, log=log, counts=counts)


def _wait_ready(pid: int, log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = log.read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            if line.startswith(READY_PREFIX):
                return line[len(READY_PREFIX):].strip()
        if not alive(pid):
            raise StackError(f"the vSphere simulator exited before it was ready; {log}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            stop(pid)
            raise StackError(
                f"the vSphere simulator was not ready within {timeout:.0f}s; {log}:\n{log_tail(log)}"
            )
        time.sleep(0.1)


def stop_sim(pid_dir: Path, name: str = "vsphere-sim") -> bool:
    """Stop the simulator (it removes its datastores on SIGTERM); True if it was running."""
    return stop_named(name, pid_dir, timeout=STOP_TIMEOUT)
