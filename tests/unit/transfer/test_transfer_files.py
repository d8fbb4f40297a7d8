"""Local file source and sink: holes found by SEEK_DATA, sparse writes, errors mapped to actions."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mtv.transfer.errors import SinkError, SinkNoSpace, SinkNotWritable, SourceNotFound, sink_os_error
from mtv.transfer.sinks import LocalFileSink
from mtv.transfer.sources import LocalFileSource

MiB = 1 << 20


def test_source_reports_data_ranges_of_a_sparse_file(tmp_path: Path) -> None:
    path = tmp_path / "sparse.img"
    with open(path, "wb") as f:
        f.truncate(16 * MiB)
        f.seek(4 * MiB)
        f.write(b"x" * MiB)
    source = LocalFileSource(str(path))
    assert source.open() == 16 * MiB
    assert source.data_ranges(0, 16 * MiB) == [(4 * MiB, 5 * MiB)]
    assert source.data_ranges(8 * MiB, 8 * MiB) == []
    assert source.data_ranges(4 * MiB + 10, 100) == [(4 * MiB + 10, 4 * MiB + 110)]
    buf = bytearray(MiB)
    source.read_into(4 * MiB, memoryview(buf), lambda n: None)
    assert bytes(buf) == b"x" * MiB
    source.close()


def test_missing_source_says_so(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match="does not exist"):
        LocalFileSource(str(tmp_path / "nope.img")).open()


def test_sink_writes_only_runs_and_truncates_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "out.img"  # parents are created
    sink = LocalFileSink(str(path))
    sink.open(8 * MiB, 0)
    data = memoryview(bytes(MiB) + b"y" * MiB)
    sink.write(2 * MiB, data, [(MiB, 2 * MiB)])
    sink.finish()
    content = path.read_bytes()
    assert len(content) == 8 * MiB and content[3 * MiB:4 * MiB] == b"y" * MiB and content.count(0) == 7 * MiB
    assert os.stat(path).st_blocks * 512 <= MiB + 64 * 1024

    again = LocalFileSink(str(path))
    again.open(8 * MiB, 3 * MiB + 10)  # resume: everything after the resume point is a hole again
    again.finish()
    content = path.read_bytes()
    assert content[3 * MiB:3 * MiB + 10] == b"y" * 10 and content[3 * MiB + 10:] == bytes(5 * MiB - 10)
    assert b"".join(bytes(p) for p in LocalFileSink(str(path)).read(3 * MiB + 10)) == content[:3 * MiB + 10]


def test_os_errors_become_actionable_sink_errors() -> None:
    assert isinstance(sink_os_error(OSError(errno.ENOSPC, "No space left"), "/d/x.img", "writing"), SinkNoSpace)
    assert isinstance(sink_os_error(OSError(errno.EDQUOT, "Quota"), "/d/x.img", "writing"), SinkNoSpace)
    for code in (errno.EACCES, errno.EROFS, errno.EPERM):
        err = sink_os_error(OSError(code, os.strerror(code)), "/d/x.img", "creating the disk image")
        assert isinstance(err, SinkNotWritable) and "/d/x.img" in err.reason and not err.retryable
    other = sink_os_error(OSError(errno.EIO, "I/O error"), "/d/x.img", "writing")
    assert type(other) is SinkError and other.retryable
