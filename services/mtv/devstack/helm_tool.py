"""The `helm` CLI for `make lint`, built from the Go module proxy (deploy/local/helm), never downloaded.

`deploy/local/helm/go.mod` is our module whose only job is a `tool helm.sh/helm/v3/cmd/helm` directive;
its go.sum pins every dependency. `ensure_helm()` builds that package into
`<cache>/bin/helm-<version>-<hash of go.mod, go.sum and the link flags>` once per machine and returns the
path; a warm call only hashes two files. `python -m mtv.devstack.helm_tool build` prints the path
(progress goes to stderr), so `make lint` can run `$(... build) lint deploy/helm/mtv`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mtv.devstack.gobuild import go_env
from mtv.devstack.paths import cache_dir, repo_root
from mtv.devstack.process import StackError, log_tail

MODULE = Path("deploy/local/helm")
PACKAGE = "helm.sh/helm/v3/cmd/helm"
# helm-v3.22.0-0123456789abcdef: the name ensure_helm builds (logs and temporary files never match).
BINARY_RE = re.compile(r"^helm-v[0-9][^/]*-[0-9a-f]{16}$")
PROGRESS_SECONDS = 30


def module_dir() -> Path:
    return repo_root() / MODULE


def _required(go_mod: str, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod, re.MULTILINE)
    if match is None:
        raise StackError(f"{module_dir() / 'go.mod'} does not require {module}")
    return match.group(1)


def version() -> str:
    """The helm version pinned in deploy/local/helm/go.mod, e.g. v3.22.0."""
    return _required(_read(module_dir() / "go.mod"), "helm.sh/helm/v3")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise StackError(f"cannot read {path}: {exc.strerror}; is this a complete checkout?") from None


def ldflags() -> str:
    """What upstream's Makefile links in: the release version, and the Kubernetes version that
    `helm template` assumes (Capabilities.KubeVersion) and `helm lint` checks deprecations against,
    derived like upstream from client-go: v0.<minor>.x -> 1.<minor>."""
    go_mod = _read(module_dir() / "go.mod")
    helm_version = _required(go_mod, "helm.sh/helm/v3")
    client_go = _required(go_mod, "k8s.io/client-go")
    match = re.fullmatch(r"v0\.(\d+)\.\d+.*", client_go)
    if match is None:
        raise StackError(f"unexpected k8s.io/client-go version {client_go} in {module_dir() / 'go.mod'}")
    minor = match.group(1)
    flags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={helm_version}",
             "-X helm.sh/helm/v3/internal/version.gitTreeState=clean"]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={minor}"]
    return " ".join(flags)


def binary_path() -> Path:
    """Where ensure_helm() puts (or finds) the binary for the current go.mod/go.sum."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update(name.encode() + b"\0" + _read(module_dir() / name).encode() + b"\0")
    digest.update(ldflags().encode())
    return cache_dir() / "bin" / f"helm-{version()}-{digest.hexdigest()[:16]}"




def ensure_helm() -> Path:
    """Build helm into the cache unless this exact build is there already; return its path. Idempotent,
    and safe to run concurrently (each build writes a private file and renames it into place)."""
    target = binary_path()
    if target.is_file() and os.access(target, os.X_OK):
        return target
    go = shutil.which("go")
    if go is None:
        raise StackError("building helm needs a Go toolchain (1.26 or newer) on PATH (https://go.dev/dl/)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    log = target.with_name(f"{target.name}.build.log")
    argv = [go, "build", "-v", "-trimpath", "-buildvcs=false", "-ldflags", ldflags(), "-o", str(tmp), PACKAGE]
    nice = shutil.which("nice")
    if nice:  # a background chore: leave the cores to whatever else the machine is doing
        argv = [nice, "-n", "10", *argv]
    print(f"building helm {version()} from the Go module proxy into {target} (first time only; "
          f"measured cold on 2 busy cores: about 3 min including module downloads) - log: {log}",
          file=sys.stderr, flush=True)
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=module_dir(), env={**os.environ, **go_env()},
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            next_note = started + PROGRESS_SECONDS
            while proc.poll() is None:
                time.sleep(0.5)
                if time.monotonic() >= next_note:
                    next_note += PROGRESS_SECONDS
                    # `go build -v` prints one line per compiled package (downloads start with "go: ").
                    packages = sum(1 for line in log.read_bytes().splitlines() if not line.startswith(b"go: "))
                    print(f"  helm: {packages} packages compiled, {time.monotonic() - started:.0f} s",
                          file=sys.stderr, flush=True)
        except BaseException:  # Ctrl-C: do not leave a compiler running in the background
            proc.kill()
            proc.wait()
            tmp.unlink(missing_ok=True)
            raise
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise StackError(f"building helm {version()} failed (go build {PACKAGE} in {module_dir()}; "
                         f"full log {log}):\n{log_tail(log)}")
    os.replace(tmp, target)
    print(f"built helm {version()} in {time.monotonic() - started:.0f} s: {target}", file=sys.stderr, flush=True)
    # Every go.mod change makes a new ~60 MB binary: keep only the current one.
    for old in target.parent.glob("helm-*"):
        if old != target and BINARY_RE.match(old.name):
            old.unlink(missing_ok=True)
            old.with_name(f"{old.name}.build.log").unlink(missing_ok=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtv.devstack.helm_tool", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build helm if needed and print its path")
    sub.add_parser("path", help="print where the binary for the current go.mod is (built or not)")
    sub.add_parser("version", help="print the pinned helm version")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(ensure_helm())
        elif args.command == "path":
            print(binary_path())
        else:
            print(version())
    except StackError as exc:
        print(f"helm_tool: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
