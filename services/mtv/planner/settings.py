"""The planner's settings (environment, prefix MTV_) and the approver keys file.

Keys file (`MTV_APPROVER_KEYS_FILE`), JSON or YAML, mode 0600 (refused when group or others may read
it), approver id -> base64 HMAC key of at least 16 bytes:

    change-mgmt: 3q2+7w0Kx0b8c2l1ZlN6b0dQb2tCS3d4eVZtQmJ0Zz0=
    ci-pipeline: Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5

The file is re-read when it changes (rotating a key needs no restart). Keys never appear in logs,
reprs or errors: only approver ids do.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import stat
from pathlib import Path

import yaml
from pydantic import Field

from mtv.approvals import MIN_KEY_BYTES
from mtv.planner.effects import CdiUpload
from mtv.planner.state import Config
from mtv.planner.vm_events import Timeouts
from mtv.runtime.settings import ServiceSettings

log = logging.getLogger(__name__)


class PlannerSettings(ServiceSettings):
    planner_app_id: str = Field("mtv-planner", description="consumer group and prefix of the table changelog topics")
    planner_grpc_host: str = Field("127.0.0.1", description="address of the PlannerService gRPC endpoint")
    planner_grpc_port: int = Field(0, description="port of the PlannerService (0 = any free port, logged)")
    approver_keys_file: Path | None = Field(None, description="approver id -> base64 HMAC key (JSON/YAML, 0600)")
    planner_shutdown_timeout: float = Field(60.0, description="seconds for a guest shutdown before powering off")
    planner_power_off_timeout: float = Field(300.0, description="seconds to wait for a power-off answer")
    planner_resend_grace: float = Field(10.0, description="after a restart, seconds before unanswered requests "
                                                          "are sent again")
    planner_status_interval: float = Field(1.0, description="seconds between progress-only status updates")
    approval_max_age: float = Field(24 * 3600.0, description="seconds a signed approval stays valid")
    cdi_upload_url: str = Field("", description="CDI upload proxy URL for Kubernetes targets")
    cdi_upload_token_ref: str = Field("", description="secret holding the CDI upload token (a name, never the token)")
    cdi_upload_ca_file: Path | None = Field(None, description="PEM CA bundle of the upload proxy")
    cdi_upload_insecure: bool = False

    def config(self) -> Config:
        ca = self.cdi_upload_ca_file.read_text() if self.cdi_upload_ca_file else ""
        return Config(
            timeouts=Timeouts(self.planner_shutdown_timeout, self.planner_power_off_timeout),
            cdi=CdiUpload(self.cdi_upload_url, self.cdi_upload_token_ref, ca, self.cdi_upload_insecure),
            status_interval=self.planner_status_interval,
            resend_grace=self.planner_resend_grace,
            approval_max_age=self.approval_max_age,
        )


def read_keys(path: Path) -> dict[str, bytes]:
    """Parse a keys file; ValueError names the file and the approver id, never a key."""
    try:
        st = path.stat()
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"approver keys file {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"approver keys file {path} is readable by group or others (mode "
                         f"{stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}")
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        raise ValueError(f"approver keys file {path}: not JSON or YAML") from None
    if not isinstance(doc, dict):
        raise ValueError(f"approver keys file {path}: expected a mapping of approver id to base64 key")
    keys = {}
    for approver, encoded in doc.items():
        try:
            key = base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"approver keys file {path}: the key of {approver!r} is not base64") from None
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"approver keys file {path}: the key of {approver!r} is {len(key)} bytes; "
                             f"use at least {MIN_KEY_BYTES} random bytes")
        keys[str(approver)] = key
    return keys


class ApproverKeys:
    """Key lookup for `approvals.verify`: call it with an approver id, get the key or None."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._keys: dict[str, bytes] = {}
        self._version: tuple[int, int, int] | None = None
        if path is not None:
            self._keys = read_keys(path)  # at start a bad file stops the service
            self._version = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path) if self.path else None
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size) if st else None

    def __call__(self, approver_id: str) -> bytes | None:
        version = self._stat()
        if self.path is not None and version != self._version:
            try:
                self._keys = read_keys(self.path)
                log.info("approver keys reloaded from %s: %s", self.path, ", ".join(sorted(self._keys)))
            except ValueError as exc:
                log.error("keeping the previous approver keys: %s", exc)
            self._version = version
        return self._keys.get(approver_id)

    @property
    def approvers(self) -> list[str]:
        return sorted(self._keys)

    def __repr__(self) -> str:
        return f"ApproverKeys(path={self.path}, approvers={self.approvers})"
