"""`make up` / `make down` as a user runs them: endpoints written to .run/env, the simulator registered
as provider `vsphere-sim`, mtvctl working from a plain shell, nothing left behind."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mtv.devstack.process import alive, free_port
from mtv.devstack.stack import PORT_VARS

pytestmark = [pytest.mark.kafka, pytest.mark.vsphere]

REQUIRED = ("MTV_KAFKA_BOOTSTRAP", "MTV_VSPHERE_URL", "MTV_VSPHERE_USER", "MTV_VSPHERE_PASSWORD_FILE")


def _stack(cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mtv.devstack", cmd], env=env, capture_output=True, text=True,
                          timeout=600)


def _shell(run: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f". {shlex.quote(str(run / 'env'))} && {script}"],
                          capture_output=True, text=True, timeout=120, env={"PATH": os.environ["PATH"]})


def test_up_writes_env_and_down_leaves_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    # Never the default ports: a developer's own stack may be up.
    env = {**os.environ, "MTV_RUN_DIR": str(run), **{var: str(free_port()) for var in PORT_VARS}}
    env.pop("MTV_KAFKA_BOOTSTRAP", None)

    up = _stack("up", env)
    pids = {p.stem: int(p.read_text()) for p in (run / "pids").glob("*.pid")}
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        assert set(pids) == {"kafka", "vsphere-sim", "inventory", "planner", "transfer", "transfer-2", "converter"}
        assert "registering the simulator as provider vsphere-sim: Ready" in up.stderr

        shell = _shell(run, f"env && {sys.executable} -m mtv.cli topics create")
        assert shell.returncode == 0, shell.stderr
        exported = dict(line.split("=", 1) for line in shell.stdout.splitlines() if line.startswith("MTV_"))
        for var in REQUIRED:
            assert exported.get(var), f"{var} missing from .run/env"
            assert f"{var}=" in up.stdout, f"make up did not print {var}"
        assert exported["MTV_KAFKA_BOOTSTRAP"] == f"127.0.0.1:{env['MTV_KAFKA_PORT']}"
        assert exported["MTV_VSPHERE_URL"] == f"https://127.0.0.1:{env['MTV_VSPHERE_PORT']}/sdk"
        assert exported["MTV_INVENTORY_GRPC"] == f"127.0.0.1:{env['MTV_INVENTORY_GRPC_PORT']}"
        assert exported["MTV_PLANNER_GRPC"] == f"127.0.0.1:{env['MTV_PLANNER_GRPC_PORT']}"
        assert Path(exported["MTV_VSPHERE_PASSWORD_FILE"]).stat().st_mode & 0o077 == 0
        assert Path(exported["MTV_APPROVER_KEY_FILE"]).stat().st_mode & 0o077 == 0
        assert "created 0 topic(s); 17 already existed" in shell.stdout  # make up created them all

        # The simulator is the inventory's provider: mtvctl lists its VMs with their disks and NICs.
        listed = _shell(run, f"{sys.executable} -m mtv.cli inventory vms --provider vsphere-sim -o json")
        assert listed.returncode == 0, listed.stderr
        manifest = json.loads(Path(exported["MTV_VSPHERE_MANIFEST"]).read_text())
        vms = json.loads(listed.stdout)
        assert {vm["id"]: vm["name"] for vm in vms} == {vm["moref"]: vm["name"] for vm in manifest["vms"]}
        assert all(len(vm["disks"]) == 2 and len(vm["nics"]) == 2 for vm in vms)

        status = _shell(run, f"{sys.executable} -m mtv.cli status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "ok   provider vsphere-sim" in status.stdout and "BAD" not in status.stdout
        # The stack's two transfer workers, idle, from their statuses on the workers topic.
        workers = [line for line in status.stdout.splitlines() if line.startswith("ok   worker ")]
        assert len(workers) == 2 and all("idle, " in line for line in workers), status.stdout

        again = _stack("up", env)
        assert again.returncode != 0 and "already running" in again.stderr
    finally:
        down = _stack("down", env)
    assert down.returncode == 0, down.stderr
    assert [name for name, pid in pids.items() if alive(pid)] == []
    assert not (run / "env").exists()


def test_up_names_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "MTV_RUN_DIR": str(tmp_path), **{var: str(free_port()) for var in PORT_VARS},
               "MTV_VSPHERE_PORT": str(port)}
        result = _stack("up", env)
    assert result.returncode == 1
    assert f"port {port} is already in use" in result.stderr
    assert "MTV_VSPHERE_PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("pids/*.pid")), "nothing may be left running"
