"""Why a provider cannot be used, as a status phase with a reason a person can act on.

    InventoryError
    ├── ProviderFault        the provider is not usable; carries phase + reason (→ ProviderStatusChanged)
    │     AuthFailed, Unreachable, CertificateMismatch, InsufficientPrivileges
    └── SessionLost          the vSphere session ended (logged out, expired, server restarted): log in again

`classify` turns what pyvmomi, ssl and socket raise into a `ProviderFault`. Reasons are built from
the provider record and the fault type only, never from request data, so they cannot contain the
password; `redact` is a second guard applied before anything is logged or published.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
from collections.abc import Iterable

from pyVmomi import Security, vim, vmodl

from mtv.provider_store import ProviderRecord
from mtv.v1 import inventory_pb2 as pb

PHASE_NAMES = {pb.PROVIDER_PHASE_CONNECTING: "Connecting", pb.PROVIDER_PHASE_READY: "Ready",
               pb.PROVIDER_PHASE_AUTH_FAILED: "AuthFailed", pb.PROVIDER_PHASE_UNREACHABLE: "Unreachable",
               pb.PROVIDER_PHASE_CERTIFICATE_MISMATCH: "CertificateMismatch",
               pb.PROVIDER_PHASE_INSUFFICIENT_PRIVILEGES: "InsufficientPrivileges"}


class InventoryError(Exception):
    """Base of the inventory service's errors."""


class SessionLost(InventoryError):
    """The server no longer knows our session; reconnect and resync."""


class ProviderFault(InventoryError):
    phase: int = pb.PROVIDER_PHASE_UNREACHABLE

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def phase_name(self) -> str:
        return PHASE_NAMES[self.phase]


class AuthFailed(ProviderFault):
    phase = pb.PROVIDER_PHASE_AUTH_FAILED


class Unreachable(ProviderFault):
    phase = pb.PROVIDER_PHASE_UNREACHABLE


class CertificateMismatch(ProviderFault):
    phase = pb.PROVIDER_PHASE_CERTIFICATE_MISMATCH


class InsufficientPrivileges(ProviderFault):
    phase = pb.PROVIDER_PHASE_INSUFFICIENT_PRIVILEGES


def classify(exc: BaseException, record: ProviderRecord) -> ProviderFault:
    """The provider status that `exc`, raised while talking to `record`'s server, means."""
    where = record.host
    if isinstance(exc, ProviderFault):
        return exc
    if isinstance(exc, vim.fault.InvalidLogin):
        return AuthFailed(f"vCenter {where} rejected user {record.username!r} or its password; fix the password "
                          f"in secret {record.secret_ref!r} (it is re-read on the next attempt)")
    if isinstance(exc, vim.fault.NotAuthenticated):
        return AuthFailed(f"vCenter {where} did not accept the session of user {record.username!r}")
    if isinstance(exc, vim.fault.NoPermission):
        privilege = getattr(exc, "privilegeId", "") or "unknown"
        return InsufficientPrivileges(f"user {record.username!r} lacks privilege {privilege} on {where}; grant it "
                                      "(see the MTV vSphere role)")
    if isinstance(exc, Security.ThumbprintMismatchException):
        return CertificateMismatch(f"{where} presented a certificate with thumbprint {exc.actual}, not the pinned "
                                   f"{record.thumbprint}; re-register the provider if the certificate was replaced")
    if isinstance(exc, ssl.SSLCertVerificationError):
        trust = f"CA file {record.ca_file}" if record.ca_file else "the system CA bundle"
        return CertificateMismatch(f"certificate of {where} is not trusted by {trust}: "
                                   f"{getattr(exc, 'verify_message', None) or exc}; "
                                   "pass --ca-file or --thumbprint")
    return _network_fault(exc, where)


def _network_fault(exc: BaseException, where: str) -> ProviderFault:
    if isinstance(exc, ConnectionRefusedError):
        return Unreachable(f"connection to {where} refused: nothing listens there (is vCenter up, is the port right?)")
    if isinstance(exc, socket.gaierror):
        return Unreachable(f"cannot resolve host of {where}: {exc.strerror}")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return Unreachable(f"connection to {where} timed out")
    if isinstance(exc, ssl.SSLError):
        return Unreachable(f"TLS handshake with {where} failed: {getattr(exc, 'reason', None) or type(exc).__name__}")
    if isinstance(exc, (ConnectionError, http.client.HTTPException)):
        return Unreachable(f"connection to {where} dropped ({type(exc).__name__})")
    if isinstance(exc, OSError):
        return Unreachable(f"cannot connect to {where}: {exc.strerror or type(exc).__name__}")
    if isinstance(exc, vmodl.MethodFault):
        return Unreachable(f"vSphere API at {where} failed: {type(exc).__name__}: {getattr(exc, 'msg', '')}")
    # pyVim raises a bare Exception("... is down or is not a VIM server") when version discovery fails.
    return Unreachable(f"{where} is not reachable as a vSphere API endpoint ({type(exc).__name__})")


def missing_privileges(result: Iterable[object], required: Iterable[str]) -> list[str]:
    """Privileges in `required` that `AuthorizationManager.HasPrivilegeOnEntities` did not grant."""
    granted = {a.privId for entity in result for a in (getattr(entity, "privAvailability", None) or [])
               if a.isGranted}
    return [p for p in required if p not in granted]


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every non-empty secret replaced by "***"."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class Secrets:
    """Passwords this process has handled, so log output can be scrubbed of them (defence in depth:
    nothing is supposed to log one in the first place)."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        if len(secret) >= 4:  # replacing 1-3 characters everywhere would mangle logs and reveal little
            with self._lock:
                self._values.add(secret)

    def redact(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        return redact(text, values)


SECRETS = Secrets()  # one per process: the inventory service's log handlers use it


class RedactFilter(logging.Filter):
    """Rewrites each record's message and traceback with `secrets` replaced by "***"."""

    def __init__(self, secrets: Secrets = SECRETS) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.secrets.redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            clean = self.secrets.redact(text)
            if clean != text:
                # Formatters re-render exc_info themselves: drop it and carry the scrubbed text in the message.
                record.msg, record.args = f"{record.getMessage()}\n{clean}", ()
                record.exc_info, record.exc_text = None, None
        return True
