"""Keep-alive HTTPS connections, one per reader thread, with the provider's way of trusting the server.

Plain `http.client` rather than urllib3: `HTTPResponse.readinto` then decrypts straight into the
chunk buffer, while urllib3's `readinto` reads into a temporary bytes object and copies it (two to
three extra copies of every disk byte, measured as the bottleneck next to SHA-256).
"""

from __future__ import annotations

import hashlib
import http.client
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass


class TlsMismatch(Exception):
    """The server's certificate is not the pinned one."""


@dataclass(frozen=True)
class TlsPolicy:
    """Exactly one way to trust a server: pinned SHA-256 thumbprint, CA file, CA PEM, system store, or none."""

    thumbprint: str = ""  # "AA:BB:..." (colons optional)
    ca_file: str = ""
    ca_pem: str = ""
    insecure: bool = False

    def context(self) -> ssl.SSLContext:
        if self.thumbprint or self.insecure:
            # Pinning replaces chain and host name checks (vCenter often has a self-signed certificate).
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if self.ca_file:
            return ssl.create_default_context(cafile=self.ca_file)
        return ssl.create_default_context(cadata=self.ca_pem or None)

    def check_peer(self, sock: ssl.SSLSocket) -> None:
        if not self.thumbprint:
            return
        der = sock.getpeercert(binary_form=True) or b""
        if hashlib.sha256(der).hexdigest() != self.thumbprint.replace(":", "").lower():
            raise TlsMismatch("certificate does not match the pinned thumbprint")


class ConnectionPerThread:
    """Each thread gets its own persistent connection to one host (http.client is not thread-safe)."""

    def __init__(self, host: str, port: int, tls: TlsPolicy, timeout: float = 60.0) -> None:
        self.host, self.port, self.tls, self.timeout = host, port, tls, timeout
        self._context = tls.context()
        self._local = threading.local()
        self._all: list[http.client.HTTPSConnection] = []
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._context)
        conn.connect()
        try:
            self.tls.check_peer(conn.sock)  # type: ignore[arg-type]
        except TlsMismatch:
            conn.close()
            raise
        with self._lock:
            self._all.append(conn)
        self._local.conn = conn
        return conn

    def request(self, method: str, path: str, headers: Mapping[str, str]) -> http.client.HTTPResponse:
        """Send a request and return the response (body unread). Raises OSError/HTTPException/TlsMismatch."""
        conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.request(method, path, headers=dict(headers))
                return conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest,
                    http.client.ResponseNotReady):
                # The server closed an idle keep-alive connection: the usual race, not an outage.
                self.discard()
        conn = self._connect()
        conn.request(method, path, headers=dict(headers))
        return conn.getresponse()

    def discard(self) -> None:
        """Drop this thread's connection (after an error or an unread body)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def close_all(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
