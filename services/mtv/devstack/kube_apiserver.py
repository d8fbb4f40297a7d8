"""A real kube-apiserver + etcd for tests, envtest-style: no kubelet, no controllers, no Docker.

Both are built from the Go module proxy (recipes in deploy/local/k8s and deploy/local/etcd; the
versions are read from their go.mod files) into `<cache>/bin/<name>-<version>`, once per machine.
`python -m mtv.devstack.kube_apiserver build` is what `make deps` runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from mtv.devstack.gobuild import go_env
from mtv.devstack.paths import cache_dir, repo_root
from mtv.devstack.process import StackError, alive, free_port, log_tail, spawn, stop_named

KUBE_MODULE = Path("deploy/local/k8s")
ETCD_MODULE = Path("deploy/local/etcd")
CRD_NAMES = (
    "virtualmachines.kubevirt.io",
    "datavolumes.cdi.kubevirt.io",
    "network-attachment-definitions.k8s.cni.cncf.io",
)


def _required_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.MULTILINE)
    if match is None:
        raise StackError(f"{go_mod} does not require {module}")
    return match.group(1)


def versions() -> dict[str, str]:
    root = repo_root()
    return {
        "kube-apiserver": _required_version(root / KUBE_MODULE / "go.mod", "k8s.io/kubernetes"),
        "etcd": _required_version(root / ETCD_MODULE / "go.mod", "go.etcd.io/etcd/server/v3"),
    }




def _go_build(name: str, version: str, module: Path, package: str, ldflags: str) -> Path:
    """Build `package` of `module` into <cache>/bin/<name>-<version> unless it is there already."""
    out = cache_dir() / "bin" / f"{name}-{version}"
    if out.exists():
        return out
    if shutil.which("go") is None:
        raise StackError(f"Go 1.25+ is needed to build {name} (https://go.dev/dl/)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    log = out.with_name(f"{name}-{version}.build.log")
    argv = ["go", "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), package]
    print(f"building {name} {version} (first time only; measured cold on 2 cores: kube-apiserver ~5 min, "
          f"etcd ~1 min, plus module downloads) - log: {log}",
          file=sys.stderr, flush=True)
    started = time.monotonic()
    with open(log, "wb") as logf:
        proc = subprocess.Popen(argv, cwd=repo_root() / module, env={**os.environ, **go_env()},
                                stdout=logf, stderr=subprocess.STDOUT)
        next_note = started + 30
        while proc.poll() is None:
            time.sleep(1)
            if time.monotonic() >= next_note:
                next_note += 30
                packages = log.read_bytes().count(b"\n")
                print(f"  {name}: {packages} packages compiled, {time.monotonic() - started:.0f} s",
                      file=sys.stderr, flush=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise StackError(f"building {name} {version} failed (see {log}):\n{log_tail(log)}")
    os.replace(tmp, out)
    print(f"built {name} {version} in {time.monotonic() - started:.0f} s: {out}", file=sys.stderr, flush=True)
    return out


def ensure_binaries() -> dict[str, Path]:
    """Build kube-apiserver and etcd if missing; return their paths. Idempotent."""
    v = versions()
    minor = v["kube-apiserver"].split(".")[1]
    # Without these, /version reports v0.0.0-master and clients warn about version skew.
    kube_ldflags = " ".join([
        "-s -w",
        f"-X k8s.io/component-base/version.gitVersion={v['kube-apiserver']}",
        "-X k8s.io/component-base/version.gitMajor=1",
        f"-X k8s.io/component-base/version.gitMinor={minor}",
        "-X k8s.io/component-base/version.gitTreeState=clean",
    ])
    return {
        "kube-apiserver": _go_build("kube-apiserver", v["kube-apiserver"], KUBE_MODULE,
                                    "k8s.io/kubernetes/cmd/kube-apiserver", kube_ldflags),
        "etcd": _go_build("etcd", v["etcd"], ETCD_MODULE, ".", "-s -w"),
    }


@dataclass(frozen=True)
class ControlPlane:
    run_dir: Path
    url: str
    kubeconfig: Path
    token: str
    etcd_pid: int
    apiserver_pid: int
    started_seconds: float  # spawn of etcd to a ready API server with CRDs established


def shared_dir() -> Path:
    return Path(os.environ.get("MTV_SHARED_DIR", repo_root().parent / "shared"))


def start_control_plane(run_dir: Path, crd_dir: Path | None = None) -> ControlPlane:
    """Start etcd and kube-apiserver on free loopback ports, write `<run_dir>/kubeconfig`, install
    the KubeVirt/CDI/Multus CRDs and wait until they are Established."""
    bins = ensure_binaries()
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd = spawn("etcd", [
        str(bins["etcd"]), "--name=mtv-test", f"--data-dir={run_dir / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{etcd_port}", f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
        f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-cluster=mtv-test=http://127.0.0.1:{peer_port}",
        "--unsafe-no-fsync=true", "--log-level=warn",
    ], run_dir / "etcd.log", run_dir)
    try:
        _wait(lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"), 30, "etcd", run_dir / "etcd.log", etcd.pid)
        token = uuid.uuid4().hex
        apiserver = spawn("kube-apiserver", _apiserver_argv(bins["kube-apiserver"], run_dir, etcd_port, api_port,
                                                            token), run_dir / "kube-apiserver.log", run_dir)
        url = f"https://127.0.0.1:{api_port}"
        _wait(lambda: _http_ok(f"{url}/readyz"), 120, "kube-apiserver", run_dir / "kube-apiserver.log",
              apiserver.pid)
        kubeconfig = _write_kubeconfig(run_dir, url, token)
        install_crds(kubeconfig, crd_dir or shared_dir() / "crds")
    except BaseException:
        stop_control_plane(run_dir)
        raise
    return ControlPlane(run_dir, url, kubeconfig, token, etcd.pid, apiserver.pid, time.monotonic() - started)


def _apiserver_argv(binary: Path, run_dir: Path, etcd_port: int, api_port: int, token: str) -> list[str]:
    certs = run_dir / "certs"
    certs.mkdir(exist_ok=True)
    sa_key = certs / "service-account.key"
    if not sa_key.exists():
        if shutil.which("openssl") is None:
            raise StackError("openssl is needed to make the service-account key (apt-get install openssl)")
        subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True)
    tokens = certs / "tokens.csv"
    tokens.write_text(f'{token},mtv-admin,mtv-admin-uid,"system:masters"\n')
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
        # No --tls-cert-file: the server writes a self-signed apiserver.crt here, our kubeconfig's CA.
        f"--cert-dir={certs}",
        "--service-cluster-ip-range=10.0.0.0/24",
        f"--service-account-issuer=https://127.0.0.1:{api_port}/",
        f"--service-account-key-file={sa_key}", f"--service-account-signing-key-file={sa_key}",
        f"--token-auth-file={tokens}",
        "--authorization-mode=RBAC", "--allow-privileged=true",
        # No token controller runs, and the PVC-protection finalizer would never be removed.
        "--disable-admission-plugins=ServiceAccount,StorageObjectInUseProtection",
    ]


def _http_ok(url: str) -> bool:
    context = ssl.create_default_context()
    # Only a readiness probe, before the self-signed certificate can be trusted: the kubeconfig
    # written afterwards verifies against that certificate.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait(ready: object, timeout: float, name: str, log: Path, pid: int) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise StackError(f"{name} exited during start-up:\n{log_tail(log)}")
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise StackError(f"{name} not ready after {timeout:.0f} s:\n{log_tail(log)}")


def _write_kubeconfig(run_dir: Path, url: str, token: str) -> Path:
    ca = run_dir / "certs" / "apiserver.crt"
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "mtv-test",
        "clusters": [{"name": "mtv-test", "cluster": {"server": url, "certificate-authority": str(ca)}}],
        "users": [{"name": "mtv-admin", "user": {"token": token}}],
        "contexts": [{"name": "mtv-test", "context": {"cluster": "mtv-test", "user": "mtv-admin"}}],
    }
    path = run_dir / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def install_crds(kubeconfig: Path, crd_dir: Path, timeout: float = 60.0) -> None:
    """Create every CRD in `crd_dir/*.yaml` (existing ones are kept) and wait until all are
    Established and NamesAccepted."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    files = sorted(crd_dir.glob("*.yaml"))
    if not files:
        raise StackError(f"no CRDs in {crd_dir}; set MTV_SHARED_DIR to the directory holding crds/")
    api = client.ApiextensionsV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    names = []
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            names.append(doc["metadata"]["name"])
            try:
                api.create_custom_resource_definition(doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise StackError(f"CRD {path.name} was refused: {exc.status} {exc.body}") from exc
    deadline = time.monotonic() + timeout
    for name in names:
        while not _established(api, name):
            if time.monotonic() > deadline:
                raise StackError(f"CRD {name} not Established after {timeout:.0f} s")
            time.sleep(0.2)


def _established(api: object, name: str) -> bool:
    crd = api.read_custom_resource_definition(name)  # type: ignore[attr-defined]
    conditions = {c.type: c.status for c in (crd.status.conditions or [])} if crd.status else {}
    return conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True"


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (for the report of what a test control plane costs)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def stop_control_plane(run_dir: Path) -> None:
    """Stop the API server, then etcd (both recorded as pid files in run_dir)."""
    stop_named("kube-apiserver", run_dir)
    stop_named("etcd", run_dir)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["build"]:
        print("usage: python -m mtv.devstack.kube_apiserver build", file=sys.stderr)
        return 2
    try:
        print(json.dumps({k: str(v) for k, v in ensure_binaries().items()}))
    except StackError as exc:
        print(f"kube-apiserver build: {exc}", file=sys.stderr)
        return 1
    return 0


__all__ = ["ControlPlane", "ensure_binaries", "install_crds", "start_control_plane", "stop_control_plane"]

if __name__ == "__main__":
    sys.exit(main())
