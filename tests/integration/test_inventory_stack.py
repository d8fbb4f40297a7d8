"""After `make up`, the simulator is the inventory's provider `vsphere-sim`, and in a plain shell
`. .run/env && mtvctl inventory vms --provider vsphere-sim -o json` lists its VMs."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mtv.devstack.process import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.vsphere]
PORT_VARS = ("MTV_KAFKA_PORT", "MTV_KAFKA_CONTROLLER_PORT", "MTV_VSPHERE_PORT", "MTV_INVENTORY_HTTP_PORT",
             "MTV_PLANNER_HTTP_PORT", "MTV_TRANSFER_HTTP_PORT", "MTV_CONVERTER_HTTP_PORT", "MTV_INVENTORY_GRPC_PORT")


def _stack(cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mtv.devstack", cmd], env=env, capture_output=True, text=True,
                          timeout=600)


def test_make_up_registers_the_simulator_for_mtvctl(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "MTV_RUN_DIR": str(run), **{var: str(free_port()) for var in PORT_VARS}}
    env.pop("MTV_KAFKA_BOOTSTRAP", None)
    up = _stack("up", env)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        assert "registering the simulator as provider vsphere-sim: Ready" in up.stderr
        script = (f". {shlex.quote(str(run / 'env'))} && echo \"grpc=$MTV_INVENTORY_GRPC\" >&2 && "
                  f"{sys.executable} -m mtv.cli inventory vms --provider vsphere-sim -o json")
        shell = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                               env={"PATH": os.environ["PATH"]})
        assert shell.returncode == 0, shell.stderr
        assert f"grpc=127.0.0.1:{env['MTV_INVENTORY_GRPC_PORT']}" in shell.stderr
        manifest = json.loads(Path(next(line.split("=", 1)[1] for line in (run / "env").read_text().splitlines()
                                        if line.startswith("export MTV_VSPHERE_MANIFEST="))).read_text())
        vms = json.loads(shell.stdout)
        assert {vm["id"]: vm["name"] for vm in vms} == {vm["moref"]: vm["name"] for vm in manifest["vms"]}
        assert all(len(vm["disks"]) == 2 and len(vm["nics"]) == 2 for vm in vms)
        assert (run / "providers" / "vsphere-sim.password").stat().st_mode & 0o077 == 0
    finally:
        down = _stack("down", env)
    assert down.returncode == 0, down.stderr
