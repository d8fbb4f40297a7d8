"""The environment for every Go build of the local stack (simulator, kube-apiserver, etcd, helm)."""

from __future__ import annotations

from mtv.devstack.paths import cache_dir


def go_env() -> dict[str, str]:
    """Module and build caches under ~/.cache/mtv/go, so rebuilds after `git clone` take seconds."""
    go = cache_dir() / "go"
    return {
        "GOMODCACHE": str(go / "mod"),
        "GOCACHE": str(go / "build"),
        "CGO_ENABLED": "0",
        # go.sum is complete: never rewrite the committed go.mod/go.sum, whatever GOFLAGS says.
        "GOFLAGS": "-mod=readonly",
        # The toolchain on PATH builds it; never download another one behind the user's back.
        "GOTOOLCHAIN": "local",
    }
