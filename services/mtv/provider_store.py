"""Registered providers and their passwords, kept on disk where every service of one installation
can read them (in a cluster: a mounted Secret volume).

Layout under the root directory (`MTV_PROVIDER_DIR`, default `.run/providers`):
    <name>.json        the provider without secrets (url, user, TLS pinning)
    <name>.password    the password alone, mode 0600

Passwords are never part of `ProviderRecord`, its repr, events or logs: only `password()` reads one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class ProviderError(ValueError):
    """A provider request that cannot be accepted; the message names the field."""


class ProviderExists(ProviderError):
    pass


class ProviderNotFound(ProviderError, LookupError):
    pass


@dataclass(frozen=True)
class ProviderRecord:
    id: str
    name: str
    type: str  # "vsphere"
    url: str  # https://host/sdk
    username: str
    thumbprint: str = ""  # SHA-256, "AA:BB:..." — pins the server certificate
    ca_file: str = ""  # PEM bundle to verify the server with
    insecure_skip_verify: bool = False

    @property
    def secret_ref(self) -> str:
        return f"{self.name}.password"

    @property
    def host(self) -> str:
        return urlparse(self.url).netloc


def validate(record: ProviderRecord) -> None:
    if not NAME_RE.match(record.name):
        raise ProviderError(f"name {record.name!r}: use lowercase letters, digits and '-' (a DNS-1123 label)")
    url = urlparse(record.url)
    if url.scheme != "https" or not url.hostname:
        raise ProviderError(f"url {record.url!r}: expected https://HOST[:PORT]/sdk")
    if not record.username:
        raise ProviderError("username: required")
    pins = [bool(record.thumbprint), bool(record.ca_file), record.insecure_skip_verify]
    if sum(pins) > 1:
        raise ProviderError("thumbprint, ca_file and insecure_skip_verify: choose one way to trust the server")
    if record.thumbprint and not re.fullmatch(r"([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}", record.thumbprint):
        raise ProviderError("thumbprint: expected a SHA-256 fingerprint, 32 hex pairs separated by ':'")


def write_private(path: Path, data: str) -> None:
    """Write atomically with mode 0600 from the start (never briefly world-readable)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ProviderStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # A read-only mounted Secret refuses chmod: its mode is the cluster's business, we only read it.
        with contextlib.suppress(PermissionError):
            os.chmod(root, 0o700)

    def add(self, record: ProviderRecord, password: str) -> ProviderRecord:
        if not record.id:
            record = replace(record, id=str(uuid.uuid4()))
        validate(record)
        if not password:
            raise ProviderError("password: empty; pass --password-file with the vCenter password")
        if (self.root / f"{record.name}.json").exists():
            raise ProviderExists(f"provider {record.name!r} already exists; remove it first or pick another name")
        write_private(self.root / record.secret_ref, password)
        write_private(self.root / f"{record.name}.json", json.dumps(asdict(record), indent=2))
        return record

    def set_password(self, name: str, password: str) -> None:
        record = self.get(name)
        write_private(self.root / record.secret_ref, password)

    def get(self, name_or_id: str) -> ProviderRecord:
        path = self.root / f"{name_or_id}.json"
        if path.exists():
            return ProviderRecord(**json.loads(path.read_text()))
        for record in self.list():
            if record.id == name_or_id:
                return record
        raise ProviderNotFound(f"provider {name_or_id!r} not found; `mtvctl provider ls` lists them")

    def list(self) -> list[ProviderRecord]:
        return [ProviderRecord(**json.loads(p.read_text())) for p in sorted(self.root.glob("*.json"))]

    def password(self, record: ProviderRecord) -> str:
        """Read the password (fresh each time, so a rotated secret is picked up without restart)."""
        return (self.root / record.secret_ref).read_text().rstrip("\n")

    def remove(self, name: str) -> None:
        record = self.get(name)
        (self.root / f"{record.name}.json").unlink(missing_ok=True)
        (self.root / record.secret_ref).unlink(missing_ok=True)
