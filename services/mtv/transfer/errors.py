"""Why a disk copy stopped, layered by cause so callers catch exactly the level they need.

    TransferError                 a disk could not be copied: `reason` for the user, `retryable`, `code`
    ├── InvalidRequest            the request itself is unusable (no source, unknown provider, bad size)
    ├── SourceError
    │   ├── SourceNotFound        404: the datastore file or local file does not exist
    │   ├── SourceAuthFailed      401/login refused: wrong password or expired credentials
    │   ├── SourceTlsFailed       the server certificate does not match the provider's pin/CA
    │   ├── SourceChanged         the source's size differs from the request
    │   └── SourceUnavailable     network errors, 5xx, timeouts (retryable)
    ├── SinkError
    │   ├── SinkNoSpace           ENOSPC / EDQUOT
    │   ├── SinkNotWritable       EACCES / EPERM / EROFS / not a directory
    │   ├── SinkRejected          the upload proxy refused (4xx: token, PVC state)
    │   └── SinkUnavailable       the upload proxy cannot be reached (retryable)
    └── Canceled                  a DiskTransferCancelRequested arrived

    Interrupted                   not a failure: the worker is stopping or lost the partition; it
                                  checkpoints (or not, when the partition is lost) and publishes no result

Messages never contain passwords, tokens or session cookies: build them from names, paths and hosts only.
"""

from __future__ import annotations

import errno


class TransferError(Exception):
    """A disk copy that failed; published as DiskTransferFailed(reason, retryable)."""

    code = "transfer_failed"
    retryable = False

    def __init__(self, reason: str, *, retryable: bool | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if retryable is not None:
            self.retryable = retryable


class InvalidRequest(TransferError):
    code = "invalid_request"


class SourceError(TransferError):
    code = "source_error"


class SourceNotFound(SourceError):
    code = "source_not_found"


class SourceAuthFailed(SourceError):
    code = "source_auth_failed"


class SourceTlsFailed(SourceError):
    code = "source_tls_failed"


class SourceChanged(SourceError):
    code = "source_changed"


class SourceUnavailable(SourceError):
    code = "source_unavailable"
    retryable = True


class SinkError(TransferError):
    code = "sink_error"


class SinkNoSpace(SinkError):
    code = "sink_no_space"


class SinkNotWritable(SinkError):
    code = "sink_not_writable"


class SinkRejected(SinkError):
    code = "sink_rejected"


class SinkUnavailable(SinkError):
    code = "sink_unavailable"
    retryable = True


class Canceled(TransferError):
    code = "canceled"


class Interrupted(Exception):
    """The copy stopped at a chunk boundary because the worker stops or gave up the partition."""


def sink_os_error(exc: OSError, path: str, action: str) -> SinkError:
    """Map an OSError on a local sink to a reason a user can act on."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return SinkNoSpace(f"no space left on the device holding {path} while {action}: "
                           "free space or choose a larger volume, then retry the disk")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR):
        return SinkNotWritable(f"cannot write {path} ({exc.strerror}) while {action}: "
                               "give the transfer worker write access or choose another path")
    return SinkError(f"writing {path} failed while {action}: {exc.strerror or exc}", retryable=True)
