"""A disk file on a vSphere datastore, read over HTTPS `/folder` with Range requests.

vCenter serves `/folder/<path>?dcPath=..&dsName=..` only to a logged-in session, so the source
logs in with pyvmomi (credentials from the provider store) and sends the session cookie. TLS is
verified the way the provider says: a pinned SHA-256 thumbprint, a CA bundle, the system trust
store, or — only when the provider is explicitly marked insecure — not at all.

The password and the cookie stay in this object: never logged, never in exception messages.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
import time
from collections.abc import Callable
from urllib.parse import urlparse

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim
from pyVmomi.Security import ThumbprintMismatchException

from mtv.provider_store import ProviderRecord
from mtv.transfer.errors import (
    SourceAuthFailed,
    SourceChanged,
    SourceError,
    SourceNotFound,
    SourceTlsFailed,
    SourceUnavailable,
)
from mtv.transfer.https import ConnectionPerThread, TlsMismatch, TlsPolicy
from mtv.transfer.sources import PIECE, OnBytes
from mtv.transfer.spec import VsphereFile

log = logging.getLogger(__name__)

ATTEMPTS = 3  # per ranged read, for network blips; a stop or cancel is never retried


class VsphereSource:
    def __init__(self, file: VsphereFile, provider: ProviderRecord, password: Callable[[], str],
                 concurrency: int = 4, timeout: float = 60.0) -> None:
        self.file = file
        self.provider = provider
        self._password = password
        url = urlparse(provider.url)
        self._host, self._port = url.hostname or "", url.port or 443
        tls = TlsPolicy(thumbprint=provider.thumbprint, ca_file=provider.ca_file,
                        insecure=provider.insecure_skip_verify)
        self._http = ConnectionPerThread(self._host, self._port, tls, timeout)
        self._si: vim.ServiceInstance | None = None
        self._cookie = ""
        self._lock = threading.Lock()
        self.size = 0

    # -- session -------------------------------------------------------------------------------

    def _login(self) -> None:
        p = self.provider
        tls: dict[str, object] = {}
        if p.thumbprint:
            tls["thumbprint"] = p.thumbprint.replace(":", "").lower()
        elif p.ca_file:
            tls["sslContext"] = ssl.create_default_context(cafile=p.ca_file)
        elif p.insecure_skip_verify:
            tls["disableSslCertValidation"] = True
        try:
            si = SmartConnect(host=self._host, port=self._port, user=p.username, pwd=self._password(),
                              httpConnectionTimeout=30, **tls)
        except vim.fault.InvalidLogin:
            raise SourceAuthFailed(
                f"vSphere provider {p.name!r} ({p.host}) refused the login of user {p.username!r}: "
                "update the password stored for this provider, then retry the disk") from None
        except (ThumbprintMismatchException, ssl.SSLCertVerificationError):
            raise SourceTlsFailed(self._tls_reason()) from None
        except (OSError, ssl.SSLError) as exc:
            raise SourceUnavailable(f"cannot reach vSphere provider {p.name!r} at {p.host}: "
                                    f"{type(exc).__name__}") from None
        except vim.fault.VimFault as exc:
            raise SourceError(f"vSphere provider {p.name!r} refused the login: {exc.msg}") from None
        self._si = si
        # Only the name=value part: attributes (Path, Secure) are not part of a Cookie header.
        self._cookie = si._stub.cookie.split(";")[0].strip()  # noqa: SLF001 — pyvmomi's only handle on it

    def _tls_reason(self) -> str:
        p = self.provider
        how = ("its pinned thumbprint" if p.thumbprint else f"the CA bundle {p.ca_file}" if p.ca_file
               else "the system trust store")
        return (f"the TLS certificate of {p.host} does not match {how} for provider {p.name!r}: if the "
                "certificate changed on purpose, update the provider's thumbprint or CA")

    def _relogin(self, stale: str) -> None:
        with self._lock:
            if self._cookie != stale:
                return  # another reader already renewed the session
            log.info("vSphere session of provider %s expired; logging in again", self.provider.name)
            self._logout()
            self._login()

    def _logout(self) -> None:
        if self._si is not None:
            try:
                Disconnect(self._si)
            except Exception as exc:  # noqa: BLE001 — logging out of a dead session is best effort
                log.debug("logout failed: %s", type(exc).__name__)
            self._si = None

    # -- Source ---------------------------------------------------------------------------------

    def open(self) -> int:
        self._login()
        response = self._get(0, 0)
        total = (response.getheader("Content-Range") or "").rpartition("/")[2]
        if response.status == 200 or not total.isdigit():
            total = response.getheader("Content-Length") or ""
        response.read()  # one byte (or an error page): keeps the connection usable
        if not total.isdigit():
            raise SourceError(f"{self.file.describe()}: the server reports no size")
        self.size = int(total)
        return self.size

    def data_ranges(self, offset: int, length: int) -> list[tuple[int, int]] | None:
        return None  # /folder has no allocation map; holes arrive as zeros and are found by content

    def read_into(self, offset: int, buf: memoryview, on_bytes: OnBytes) -> None:
        done, failures = 0, 0
        while done < len(buf):
            got, error = self._read_range(offset + done, buf[done:], on_bytes)
            done += got
            if error is None:
                continue
            # Only attempts without progress count: a long read broken twice is still progressing.
            failures = failures + 1 if got == 0 else 1
            if failures >= ATTEMPTS:
                raise error
            log.warning("read of %s at byte %d failed (%d/%d); retrying", self.file.path, offset + done,
                        failures, ATTEMPTS)
            time.sleep(0.5 * failures)

    def _read_range(self, offset: int, buf: memoryview, on_bytes: OnBytes) -> tuple[int, SourceError | None]:
        """Read what it can of `buf`: (bytes read, None) or (bytes read, a retryable error)."""
        try:
            response = self._get(offset, offset + len(buf) - 1)
        except SourceUnavailable as exc:
            return 0, exc
        got = 0
        try:
            if response.status == 200 and offset != 0:
                raise SourceError(f"{self.provider.host} ignored the Range header; cannot read in parallel")
            while got < len(buf):
                try:
                    n = response.readinto(buf[got:got + PIECE])
                except (OSError, http.client.HTTPException) as exc:
                    return got, SourceUnavailable(f"reading {self.file.describe()} from {self.provider.host} "
                                                  f"failed: {type(exc).__name__}")
                if not n:
                    return got, SourceUnavailable(f"{self.provider.host} closed the stream of "
                                                  f"{self.file.describe()} early")
                got += n
                on_bytes(n)
        finally:
            if got < len(buf) or not response.isclosed():
                self._http.discard()  # unread body: the connection cannot carry another request
        return got, None

    def _get(self, start: int, end: int) -> http.client.HTTPResponse:
        for renewed in (False, True):
            cookie = self._cookie
            try:
                response = self._http.request("GET", self.file.folder_url_path(),
                                              {"Cookie": cookie, "Range": f"bytes={start}-{end}"})
            except (TlsMismatch, ssl.SSLCertVerificationError):
                raise SourceTlsFailed(self._tls_reason()) from None
            except (OSError, http.client.HTTPException) as exc:
                self._http.discard()
                raise SourceUnavailable(f"cannot reach {self.provider.host}: {type(exc).__name__}") from None
            if response.status in (200, 206):
                return response
            response.read()
            if response.status in (401, 403) and not renewed:
                self._relogin(cookie)
                continue
            raise self._status_error(response.status)
        raise AssertionError("unreachable")

    def _status_error(self, status: int) -> SourceError:
        what, p = self.file.describe(), self.provider
        if status == 404:
            return SourceNotFound(f"{what} was not found on provider {p.name!r} ({p.host}): the VM or disk was "
                                  "moved or deleted; refresh the inventory and request the disk again")
        if status in (401, 403):
            return SourceAuthFailed(f"provider {p.name!r} ({p.host}) refused access to {what} (HTTP {status}) "
                                    f"even after a new login as {p.username!r}: check the user's datastore "
                                    "browse permission")
        if status == 416:
            return SourceChanged(f"{what} is shorter than the requested range: the disk changed; request it again")
        return SourceUnavailable(f"{p.host} answered HTTP {status} for {what}", retryable=status >= 500)

    def close(self) -> None:
        self._logout()
        self._http.close_all()

