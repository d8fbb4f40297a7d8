"""`make up` / `make down` as a user runs them: endpoints written to .run/env, nothing left behind."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mtv.devstack.process import alive, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.vsphere]

REQUIRED = ("MTV_KAFKA_BOOTSTRAP", "MTV_VSPHERE_URL", "MTV_VSPHERE_USER", "MTV_VSPHERE_PASSWORD_FILE")


def _stack(cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mtv.devstack", cmd], env=env, capture_output=True, text=True,
                          timeout=600)


def test_up_writes_env_and_down_leaves_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "MTV_RUN_DIR": str(run)}
    for var in ("MTV_KAFKA_PORT", "MTV_KAFKA_CONTROLLER_PORT", "MTV_VSPHERE_PORT", "MTV_INVENTORY_HTTP_PORT",
                "MTV_PLANNER_HTTP_PORT", "MTV_TRANSFER_HTTP_PORT", "MTV_CONVERTER_HTTP_PORT",
                "MTV_INVENTORY_GRPC_PORT"):
        env[var] = str(free_port())  # never the defaults: a developer's own stack may be up
    env.pop("MTV_KAFKA_BOOTSTRAP", None)

    up = _stack("up", env)
    pids = {p.stem: int(p.read_text()) for p in (run / "pids").glob("*.pid")}
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        assert set(pids) == {"kafka", "vsphere-sim", "inventory", "planner", "transfer", "converter"}
        # `. .run/env` in a plain shell gives every endpoint, and mtvctl works from there.
        shell = subprocess.run(
            ["bash", "-c", f". {shlex.quote(str(run / 'env'))} && env && {sys.executable} -m mtv.cli topics create"],
            capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]},
        )
        assert shell.returncode == 0, shell.stderr
        exported = dict(line.split("=", 1) for line in shell.stdout.splitlines() if line.startswith("MTV_"))
        for var in REQUIRED:
            assert exported.get(var), f"{var} missing from .run/env"
            assert f"{var}=" in up.stdout, f"make up did not print {var}"
        assert exported["MTV_KAFKA_BOOTSTRAP"] == f"127.0.0.1:{env['MTV_KAFKA_PORT']}"
        assert exported["MTV_VSPHERE_URL"] == f"https://127.0.0.1:{env['MTV_VSPHERE_PORT']}/sdk"
        assert Path(exported["MTV_VSPHERE_PASSWORD_FILE"]).stat().st_mode & 0o077 == 0
        assert "created 0 topic(s); 16 already existed" in shell.stdout  # make up created them all

        again = _stack("up", env)
        assert again.returncode != 0 and "already running" in again.stderr
    finally:
        down = _stack("down", env)
    assert down.returncode == 0, down.stderr
    assert [name for name, pid in pids.items() if alive(pid)] == []
    assert not (run / "env").exists()


def test_up_names_a_taken_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "MTV_RUN_DIR": str(tmp_path), "MTV_VSPHERE_PORT": str(port),
               "MTV_KAFKA_PORT": str(free_port()), "MTV_KAFKA_CONTROLLER_PORT": str(free_port())}
        result = _stack("up", env)
    assert result.returncode == 1
    assert f"port {port} is already in use" in result.stderr
    assert "MTV_VSPHERE_PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("pids/*.pid")), "nothing may be left running"
