"""Trusting a vCenter: a CA bundle, a pinned SHA-256 thumbprint, or (explicitly) nothing.

The thumbprint is computed from the certificate the server presents in the TLS handshake (DER bytes →
SHA-256), the same value vCenter's UI shows, formatted "AA:BB:...". A thumbprint-pinned provider is
checked twice: before logging in (so a mismatch is reported with both values), and by pyvmomi on
every connection of the session (its stub pins the certificate when CA verification fails).
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlparse

from mtv.inventory.errors import CertificateMismatch
from mtv.provider_store import ProviderRecord

_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


def format_thumbprint(digest_hex: str) -> str:
    """ "ab01..." (64 hex digits, any case, colons allowed) → "AB:01:..."; ValueError otherwise."""
    compact = digest_hex.replace(":", "").strip()
    if not _HEX.match(compact):
        raise ValueError(f"thumbprint {digest_hex!r}: expected a SHA-256 fingerprint (64 hex digits)")
    return ":".join(compact[i:i + 2] for i in range(0, 64, 2)).upper()


def thumbprint_of(der: bytes) -> str:
    return format_thumbprint(hashlib.sha256(der).hexdigest())


def host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "", parsed.port or 443


def peer_certificate(url: str, timeout: float = 10.0) -> bytes:
    """The DER certificate the server at `url` presents (not verified: only read)."""
    host, port = host_port(url)
    context = ssl._create_unverified_context()  # we only read the certificate; trust is decided by the caller
    with socket.create_connection((host, port), timeout=timeout) as sock, \
            context.wrap_socket(sock, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError(f"{host}:{port} presented no certificate")
    return der


def fetch_thumbprint(url: str, timeout: float = 10.0) -> str:
    """SHA-256 thumbprint ("AA:BB:...") of the certificate the server at `url` presents."""
    return thumbprint_of(peer_certificate(url, timeout))


@dataclass(frozen=True)
class Trust:
    """How to connect: `discovery` reads the public API version list, `session` carries the login.
    `pin` is the thumbprint pyvmomi checks on each connection (64 lowercase hex digits) or None."""

    discovery: ssl.SSLContext
    session: ssl.SSLContext
    pin: str | None = None
    insecure: bool = False


def trust_for(record: ProviderRecord) -> Trust:
    if record.insecure_skip_verify:
        unverified = ssl._create_unverified_context()  # explicit user choice, reported as a warning
        return Trust(unverified, unverified, insecure=True)
    if record.thumbprint:
        # pyvmomi checks the pin only after normal verification failed, so the session context must verify;
        # version discovery sends no credentials and may use an unverified context.
        return Trust(ssl._create_unverified_context(), ssl.create_default_context(),
                     pin=record.thumbprint.replace(":", "").lower())
    context = ssl.create_default_context(cafile=record.ca_file or None)
    return Trust(context, context)


def verify_pin(record: ProviderRecord, der: bytes) -> None:
    """Raise CertificateMismatch naming both thumbprints if `der` is not the pinned certificate."""
    if not record.thumbprint:
        return
    actual = thumbprint_of(der)
    if actual != format_thumbprint(record.thumbprint):
        raise CertificateMismatch(
            f"{record.host} presented a certificate with SHA-256 thumbprint {actual}, not the pinned "
            f"{format_thumbprint(record.thumbprint)}; if the certificate was replaced on purpose, re-register "
            "the provider with the new --thumbprint")
