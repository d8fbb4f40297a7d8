"""docker-compose.yml against the code it starts. No Docker engine runs here, so the file is checked
piece by piece: every command exists and parses, every MTV_ variable is a setting some service
reads, every simulator flag is defined, and the setup step's key files are accepted by the
planner and by mtvctl."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtv import approvals
from mtv.cli.__main__ import parser
from mtv.converter.service import ConverterSettings
from mtv.inventory.__main__ import InventorySettings
from mtv.planner.settings import PlannerSettings, read_keys
from mtv.transfer.settings import TransferSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SETTINGS = {"mtv-inventory": InventorySettings, "mtv-planner": PlannerSettings, "mtv-transfer": TransferSettings,
            "mtv-converter": ConverterSettings}


def _ours(service: dict[str, Any]) -> bool:
    return service.get("image") == "mtv:dev"


def _argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def test_each_mtv_service_runs_a_console_script_of_the_package() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    started = {_argv(s)[0] for s in SERVICES.values() if _ours(s) and _argv(s)[0].startswith("mtv-")}
    assert started == set(SETTINGS), started
    assert started <= set(scripts)
    assert SERVICES["transfer"]["deploy"]["replicas"] >= 2, "the compose stack shows a worker pool"


@pytest.mark.parametrize("name", [n for n, s in SERVICES.items() if _ours(s)])
def test_every_mtv_variable_is_a_setting_a_service_reads(name: str) -> None:
    fields = {f"MTV_{f.upper()}" for cls in SETTINGS.values() for f in cls.model_fields}
    unknown = {k for k in SERVICES[name].get("environment", {}) if k.startswith("MTV_")} - fields
    assert not unknown, f"{name}: no service reads {sorted(unknown)}"


def test_mtvctl_commands_parse() -> None:
    commands = [_argv(SERVICES["topics"])[1:]]
    shell = " ".join(_argv(SERVICES["register-sim"])[2:])
    commands += [shlex.split(part.strip())[1:] for part in shell.split("&&") if part.strip().startswith("mtvctl")]
    assert len(commands) == 2
    for argv in commands:
        args = parser().parse_args(argv)  # exits (SystemExit) on an unknown flag
        assert callable(args.func)
    provider = parser().parse_args(commands[1])
    assert provider.url == "https://vsphere-sim:18989/sdk" and provider.server == "inventory:9090"


def test_simulator_flags_exist_and_match_the_registered_provider() -> None:
    source = "".join(p.read_text() for p in (ROOT / "deploy/local/vsphere-sim").glob("*.go"))
    defined = set(re.findall(r'flag\.\w+\(\s*(?:&[\w.]+,\s*)?"([\w-]+)"', source))
    argv = _argv(SERVICES["vsphere-sim"])
    used = {a.lstrip("-") for a in argv if a.startswith("-")}
    assert used and not used - defined, f"undefined simulator flags: {sorted(used - defined)}"
    password = argv[argv.index("-password") + 1]
    assert f"printf %s {password} > /tmp/pw" in " ".join(_argv(SERVICES["register-sim"]))


def test_setup_writes_keys_the_planner_and_mtvctl_accept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _argv(SERVICES["setup"])[-1].replace('"/var/lib/mtv"', repr(str(tmp_path)))
    monkeypatch.setattr(os, "chown", lambda *a: None)  # runs as root in the container; not here
    exec(compile(script, "docker-compose.yml:setup", "exec"), {})  # noqa: S102 — our own file's script
    state = SERVICES["setup"]["volumes"][0].split(":")[1]
    env = SERVICES["planner"]["environment"]
    keys = read_keys(tmp_path / Path(env["MTV_APPROVER_KEYS_FILE"]).relative_to(state))
    signer = approvals.load_key(tmp_path / "approvers" / "local-admin.key")
    assert keys == {"local-admin": signer} and len(signer) >= approvals.MIN_KEY_BYTES
    assert {p.name for p in tmp_path.iterdir()} == {"providers", "approvers", "target"}
    # A second `docker compose up` keeps the key (approvals signed before stay valid).
    exec(compile(script, "docker-compose.yml:setup", "exec"), {})  # noqa: S102
    assert approvals.load_key(tmp_path / "approvers" / "local-admin.key") == signer


def test_simulator_image_builds_with_the_modules_go_version_and_may_listen_beyond_loopback() -> None:
    sim_dir = ROOT / "deploy/local/vsphere-sim"
    dockerfile = (sim_dir / "Dockerfile").read_text()
    image_go = re.search(r"FROM golang:(\d+)\.(\d+)", dockerfile)
    module_go = re.search(r"^go (\d+)\.(\d+)", (sim_dir / "go.mod").read_text(), re.M)
    assert image_go and module_go
    assert tuple(map(int, image_go.groups())) >= tuple(map(int, module_go.groups())), "go.mod needs a newer image"
    listen = _argv(SERVICES["vsphere-sim"])[_argv(SERVICES["vsphere-sim"]).index("-l") + 1]
    # The simulator refuses a non-loopback -l unless told it runs in a container.
    assert not listen.startswith("127.") and "ENV MTV_SIM_IN_CONTAINER=1" in dockerfile
