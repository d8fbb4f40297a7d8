"""Where disk bytes come from: the `Source` contract and the local-file source.

The vSphere datastore source lives in `vsphere.py`. Sources are read by several threads at once
(one ranged read each), so `read_into` must be thread-safe.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Protocol

from mtv.transfer.errors import SourceChanged, SourceError, SourceNotFound

# Reads are done in pieces this large so a stop, cancel or bandwidth limit acts within one piece.
PIECE = 1 << 20

OnBytes = Callable[[int], None]


class Source(Protocol):
    """A readable disk. Lifecycle: `open()` once, `read_into` from any thread, `close()` once."""

    def open(self) -> int:
        """Connect (log in) and return the size in bytes; raise a SourceError saying what to fix."""
        ...

    def data_ranges(self, offset: int, length: int) -> list[tuple[int, int]] | None:
        """Absolute (start, end) ranges holding data in [offset, offset+length), or None if unknown."""
        ...

    def read_into(self, offset: int, buf: memoryview, on_bytes: OnBytes) -> None:
        """Fill `buf` with the bytes at `offset`. Calls `on_bytes(n)` after each piece; whatever it
        raises (stop, cancel) aborts the read."""
        ...

    def close(self) -> None: ...


def check_size(actual: int, expected: int, what: str) -> None:
    if actual != expected:
        raise SourceChanged(f"{what} is {actual} bytes but the request says {expected}: the disk changed "
                            "or the request is stale; re-read the inventory and request the disk again")


class LocalFileSource:
    """A local (possibly sparse) file. Holes are found with SEEK_DATA/SEEK_HOLE and never read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def open(self) -> int:
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise SourceNotFound(f"source file {self.path} does not exist: check the path") from None
        except OSError as exc:
            raise SourceError(f"cannot open source file {self.path}: {exc.strerror}") from None
        return os.fstat(self._fd).st_size

    def data_ranges(self, offset: int, length: int) -> list[tuple[int, int]] | None:
        end = offset + length
        ranges: list[tuple[int, int]] = []
        pos = offset
        try:
            while pos < end:
                start = os.lseek(self._fd, pos, os.SEEK_DATA)
                if start >= end:
                    break
                stop = min(os.lseek(self._fd, start, os.SEEK_HOLE), end)
                ranges.append((start, stop))
                pos = stop
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos
                return ranges
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                return None  # the filesystem cannot tell: read everything
            raise
        return ranges

    def read_into(self, offset: int, buf: memoryview, on_bytes: OnBytes) -> None:
        done = 0
        while done < len(buf):
            piece = buf[done:done + PIECE]
            try:
                n = os.preadv(self._fd, [piece], offset + done)
            except OSError as exc:
                raise SourceError(f"reading {self.path} at byte {offset + done} failed: {exc.strerror}") from None
            if n == 0:
                raise SourceChanged(f"{self.path} ended at byte {offset + done}: the file shrank during the copy")
            done += n
            on_bytes(n)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
