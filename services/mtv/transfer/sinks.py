"""Where disk bytes go: a local sparse raw file, or a CDI upload proxy (as `virtctl image-upload`).

The copier calls `write` with a chunk and its data runs (all-zero blocks are left out): in logical
order from one thread for an `ordered` sink, else from reader threads in any order. A file sink
writes only the runs, so holes stay holes; an upload stream must carry every byte, so the CDI sink
sends zeros for holes (CDI re-sparsifies on import).
"""

from __future__ import annotations

import http.client
import os
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from mtv.transfer.errors import SinkError, SinkRejected, SinkUnavailable, sink_os_error
from mtv.transfer.spec import CdiUploadSpec

Runs = list[tuple[int, int]]
READ_PIECE = 8 << 20


class Sink(Protocol):
    """Lifecycle: `open(size, resume_from)`, `write` in order, then `finish()` (durable) or `abort()`."""

    resumable: bool
    ordered: bool  # writes must come in logical order, from one thread

    def open(self, size: int, resume_from: int) -> None: ...

    def write(self, offset: int, data: memoryview, runs: Runs) -> None:
        """Store `data` at `offset`; `runs` are the (start, end) data ranges within it, the rest is zeros."""
        ...

    def read(self, length: int) -> Iterator[memoryview]:
        """The first `length` bytes, in order (resumable sinks only: verifies a resume point)."""
        ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


class LocalFileSink:
    """A sparse raw image. Resumable: the file can be read back and truncated at the resume point.
    Writes are positional (pwrite), so reader threads write their chunks in any order."""

    resumable = True
    ordered = False

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def read(self, length: int) -> Iterator[memoryview]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return  # nothing to verify against: the caller starts from zero
        try:
            buf = bytearray(READ_PIECE)
            pos = 0
            while pos < length:
                n = os.preadv(fd, [memoryview(buf)[:min(READ_PIECE, length - pos)]], pos)
                if n == 0:
                    return
                yield memoryview(buf)[:n]
                pos += n
        finally:
            os.close(fd)

    def open(self, size: int, resume_from: int) -> None:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
            # Cut everything after the resume point (an interrupted worker may have written past its
            # checkpoint) and extend with a hole: only bytes written from now on are data.
            os.ftruncate(self._fd, resume_from)
            os.ftruncate(self._fd, size)
        except OSError as exc:
            raise sink_os_error(exc, self.path, "creating the disk image") from None

    def write(self, offset: int, data: memoryview, runs: Runs) -> None:
        for start, end in runs:
            pos = start
            while pos < end:
                try:
                    pos += os.pwrite(self._fd, data[pos:end], offset + pos)
                except OSError as exc:
                    raise sink_os_error(exc, self.path, f"writing at byte {offset + pos}") from None
        if runs:
            # Start write-back now rather than all at the final fsync, and keep a disk-sized copy
            # from filling the page cache (DONTNEED drops pages only once they are clean).
            os.posix_fadvise(self._fd, offset + runs[0][0], runs[-1][1] - runs[0][0], os.POSIX_FADV_DONTNEED)

    def finish(self) -> None:
        try:
            os.fsync(self._fd)  # Completed promises durable bytes; delayed allocation may say ENOSPC only now
        except OSError as exc:
            raise sink_os_error(exc, self.path, "flushing the disk image") from None
        finally:
            self.abort()

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class CdiUploadSink:
    """Streams the raw image in one `POST /v1beta1/upload` with `Authorization: Bearer <token>`.

    One request carries the whole disk, so it cannot resume: a retry uploads from byte 0. The token is
    obtained in `open` (CDI's tokens live minutes: take it right before the upload, not when the request
    arrives); `token_source` says where it came from, for messages (never the token).
    """

    resumable = False
    ordered = True

    def __init__(self, spec: CdiUploadSpec, token: Callable[[], str], token_source: str,
                 timeout: float = 60.0) -> None:
        self.spec = spec
        self._get_token = token
        self._token_source = token_source
        self._timeout = timeout
        self._conn: http.client.HTTPSConnection | None = None
        self._pos = 0
        url = urlparse(spec.url)
        self._target = f"{url.hostname}:{url.port or 443}"
        self._path = url.path or "/v1beta1/upload"

    def _context(self) -> ssl.SSLContext:
        if self.spec.insecure_skip_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        return ssl.create_default_context(cadata=self.spec.ca_pem or None)

    def read(self, length: int) -> Iterator[memoryview]:
        raise SinkError("an upload stream cannot be read back")

    def open(self, size: int, resume_from: int) -> None:
        if resume_from:
            raise SinkError("an upload stream cannot resume; start from byte 0")
        token = self._get_token()
        url = urlparse(self.spec.url)
        self._conn = http.client.HTTPSConnection(url.hostname or "", url.port or 443, timeout=self._timeout,
                                                 context=self._context())
        try:
            self._conn.putrequest("POST", self._path)
            self._conn.putheader("Authorization", f"Bearer {token}")
            self._conn.putheader("Content-Type", "application/octet-stream")
            self._conn.putheader("Content-Length", str(size))
            self._conn.endheaders()
        except ssl.SSLError:
            self.abort()
            raise SinkRejected(f"the TLS certificate of the upload proxy {self._target} is not trusted: set "
                               "sink.cdi_upload.ca_pem to the cluster's CA") from None
        except OSError as exc:
            self.abort()
            raise SinkUnavailable(f"cannot reach the upload proxy {self._target}: {type(exc).__name__}") from None

    def write(self, offset: int, data: memoryview, runs: Runs) -> None:
        assert self._conn is not None and offset == self._pos, "upload writes must be sequential"
        try:
            self._conn.send(data)
        except OSError:
            # The proxy may have answered (401, 409) and closed: its status explains better than EPIPE.
            self._raise_response()
            raise SinkUnavailable(f"the upload proxy {self._target} closed the stream at byte {offset}") from None
        self._pos += len(data)

    def finish(self) -> None:
        try:
            self._raise_response()
        finally:
            self.abort()

    def _raise_response(self) -> None:
        assert self._conn is not None
        try:
            response = self._conn.getresponse()
            body = response.read(500).decode(errors="replace").strip()
        except (OSError, http.client.HTTPException) as exc:
            raise SinkUnavailable(f"no answer from the upload proxy {self._target}: {type(exc).__name__}") from None
        status = response.status
        if 200 <= status < 300:
            return
        pvc = f"{self.spec.namespace}/{self.spec.pvc_name}"
        if status in (401, 403):
            raise SinkRejected(f"the upload proxy refused the token from {self._token_source} for PVC {pvc} "
                               f"(HTTP {status}): the token expired or is for another PVC; retry the disk for a new "
                               "one (a static token_ref secret must be replaced first)")
        if status >= 500:
            raise SinkUnavailable(f"the upload proxy failed (HTTP {status}): {body[:200]}")
        raise SinkRejected(f"the upload proxy rejected the upload to PVC {pvc} (HTTP {status}): {body[:200]}")

    def abort(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
