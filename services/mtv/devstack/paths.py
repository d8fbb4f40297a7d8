"""Where the local stack keeps its cache (downloads, builds) and its run state (data, logs, pids)."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout this package runs from (services/mtv/devstack -> repo root)."""
    return Path(__file__).resolve().parents[3]


def cache_dir() -> Path:
    """Downloads and builds that survive `make down` and fresh clones: `$MTV_CACHE` or ~/.cache/mtv."""
    path = Path(os.environ.get("MTV_CACHE", Path.home() / ".cache" / "mtv"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir() -> Path:
    """Per-checkout run state: `$MTV_RUN_DIR` or `<repo>/.run` (git-ignored)."""
    path = Path(os.environ.get("MTV_RUN_DIR", repo_root() / ".run"))
    path.mkdir(parents=True, exist_ok=True)
    return path
