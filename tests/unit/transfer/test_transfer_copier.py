"""The data path on local files: identical copies, holes, in-order hashing, stop/resume at chunk
boundaries with the prefix-hash scheme, cancel, and the bandwidth limit."""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

import pytest

from mtv.transfer.copier import Copier, CopyOptions, CopyState, StopSignal, data_runs
from mtv.transfer.errors import Canceled, Interrupted
from mtv.transfer.sinks import LocalFileSink
from mtv.transfer.sources import LocalFileSource
from mtv.transfer.throttle import TokenBucket

KiB, MiB = 1 << 10, 1 << 20
OPTIONS = CopyOptions(chunk_bytes=256 * KiB, concurrency=3, hole_block=4 * KiB, checkpoint_chunks=4)


def _sparse_disk(path: Path, size: int = 8 * MiB, seed: int = 1) -> bytes:
    """A sparse file with data islands of odd sizes and offsets; returns its logical content."""
    rng = random.Random(seed)
    content = bytearray(size)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, length in [(0, 512), (100 * KiB, 300 * KiB), (size // 2 + 7, 5000), (size - 64 * KiB, 4 * KiB)]:
            data = rng.randbytes(length)
            f.seek(offset)
            f.write(data)
            content[offset:offset + length] = data
    return bytes(content)


def _copy(src: Path, dst: Path, signal: StopSignal | None = None, state: CopyState | None = None,
          hasher: object = None, **kw: object) -> tuple[Copier, object]:
    source = LocalFileSource(str(src))
    size = source.open()
    sink = LocalFileSink(str(dst))
    state = state or CopyState()
    sink.open(size, state.offset)
    copier = Copier(source, sink, size, kw.pop("options", OPTIONS), signal or StopSignal(), **kw)  # type: ignore[arg-type]
    try:
        return copier, copier.run(state, hasher or hashlib.sha256())
    finally:
        sink.finish()
        source.close()


def test_data_runs_merges_blocks_and_skips_zeros() -> None:
    block = 4
    buf = bytearray(32)
    assert data_runs(buf, block) == []
    buf[5] = 1  # block 1
    buf[8] = 1  # block 2, adjacent: merged
    buf[20] = 1  # block 5
    buf[31] = 1  # last block
    assert data_runs(buf, block) == [(4, 12), (20, 24), (28, 32)]
    assert data_runs(b"\x01" * 10, 4) == [(0, 10)]  # a short tail block counts
    assert data_runs(bytes(9) + b"\x01", 4) == [(8, 10)]


def test_copy_is_identical_sparse_and_hashed_in_order(tmp_path: Path) -> None:
    content = _sparse_disk(tmp_path / "src.img")
    _, result = _copy(tmp_path / "src.img", tmp_path / "dst.img")
    assert (tmp_path / "dst.img").read_bytes() == content
    assert result.sha256 == hashlib.sha256(content).hexdigest()
    state = result.state
    assert state.offset == len(content) and state.bytes_written + state.bytes_holes == len(content)
    # Only data blocks were written: data rounded out to 4 KiB blocks (the 5000 bytes at +7 span 2 blocks).
    assert state.bytes_written == 4 * KiB + 300 * KiB + 2 * 4 * KiB + 4 * KiB
    assert os.stat(tmp_path / "dst.img").st_blocks * 512 <= state.bytes_written + 64 * KiB
    # SEEK_DATA: the holes of the source were never read.
    assert result.bytes_read < len(content) // 4


def test_stop_at_a_chunk_boundary_then_resume_gives_the_same_disk(tmp_path: Path) -> None:
    dense = tmp_path / "dense.img"
    dense.write_bytes(random.Random(3).randbytes(4 * MiB))  # every chunk has data
    checkpoints: list[tuple[CopyState, str]] = []
    signal = StopSignal()

    def on_checkpoint(state: CopyState, digest: str) -> None:
        checkpoints.append((CopyState(state.offset, state.bytes_written, state.bytes_holes), digest))
        if len(checkpoints) == 2:
            signal.stop()

    with pytest.raises(Interrupted):
        _copy(dense, tmp_path / "dst.img", signal=signal, on_checkpoint=on_checkpoint)
    state, digest = checkpoints[-1]
    resume_at = state.offset
    assert resume_at == 2 * OPTIONS.checkpoint_chunks * OPTIONS.chunk_bytes  # a chunk boundary

    # Resume as a new worker would: re-hash the sink's prefix, compare with the checkpoint, continue.
    prefix = hashlib.sha256()
    for piece in LocalFileSink(str(tmp_path / "dst.img")).read(state.offset):
        prefix.update(piece)
    assert prefix.hexdigest() == digest
    _, result = _copy(dense, tmp_path / "dst.img", state=state, hasher=prefix)
    original = dense.read_bytes()
    assert (tmp_path / "dst.img").read_bytes() == original
    assert result.sha256 == hashlib.sha256(original).hexdigest()
    assert result.resumed_from == resume_at
    assert result.bytes_read == len(original) - resume_at  # nothing before the checkpoint re-read


def test_resume_cuts_what_was_written_after_the_checkpoint(tmp_path: Path) -> None:
    content = _sparse_disk(tmp_path / "src.img", size=2 * MiB)
    dst = tmp_path / "dst.img"
    dst.write_bytes(b"\xff" * len(content))  # garbage past the resume point (a torn earlier attempt)
    half = len(content) // 2
    with open(dst, "r+b") as f:
        f.write(content[:half])
    prefix = hashlib.sha256(content[:half])
    _, result = _copy(tmp_path / "src.img", dst, state=CopyState(offset=half), hasher=prefix)
    assert dst.read_bytes() == content
    assert result.sha256 == hashlib.sha256(content).hexdigest()


def test_cancel_raises_canceled_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "src.img").write_bytes(os.urandom(2 * MiB))
    signal = StopSignal()
    signal.cancel("user asked")
    with pytest.raises(Canceled, match="user asked"):
        _copy(tmp_path / "src.img", tmp_path / "dst.img", signal=signal)


def test_bandwidth_limit_paces_reads(tmp_path: Path) -> None:
    (tmp_path / "src.img").write_bytes(os.urandom(3 * MiB))
    started = time.monotonic()
    # 8 MiB/s with a 2 MiB burst: 3 MiB need at least ~0.12 s; unlimited takes a few ms.
    _, result = _copy(tmp_path / "src.img", tmp_path / "dst.img", bucket=TokenBucket(8 * MiB))
    elapsed = time.monotonic() - started
    assert result.bytes_read == 3 * MiB
    assert elapsed >= 0.1


def test_progress_ticks_are_monotonic_and_reach_the_end(tmp_path: Path) -> None:
    content = _sparse_disk(tmp_path / "src.img")
    ticks: list[int] = []
    _copy(tmp_path / "src.img", tmp_path / "dst.img", on_tick=ticks.append)
    assert ticks == sorted(ticks) and ticks[-1] == len(content)


class StreamSink:
    """An ordered sink that keeps what it was sent, like an upload stream."""

    resumable, ordered = False, True

    def __init__(self) -> None:
        self.data = bytearray()
        self.runs = 0

    def open(self, size: int, resume_from: int) -> None:
        pass

    def write(self, offset: int, data: memoryview, runs: list[tuple[int, int]]) -> None:
        assert offset == len(self.data), "in order"
        self.data += data
        self.runs += len(runs)

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass


def test_an_ordered_sink_gets_every_byte_in_order_with_holes_as_zeros(tmp_path: Path) -> None:
    content = _sparse_disk(tmp_path / "src.img")
    source = LocalFileSource(str(tmp_path / "src.img"))
    size = source.open()
    sink = StreamSink()
    copier = Copier(source, sink, size, OPTIONS, StopSignal())  # type: ignore[arg-type]
    # Dirty the reused chunk buffers, as an earlier chunk would: holes must still arrive as zeros.
    buffers = [copier._buffers.get() for _ in range(OPTIONS.concurrency + 2)]  # noqa: SLF001
    for buf in buffers:
        buf[:] = b"\xee" * len(buf)
        copier._buffers.put(buf)  # noqa: SLF001
    result = copier.run(CopyState(), hashlib.sha256())
    source.close()
    assert bytes(sink.data) == content
    assert result.sha256 == hashlib.sha256(content).hexdigest()


def test_data_runs_within_a_range() -> None:
    buf = bytearray(64)
    buf[10] = 1
    buf[40] = 1
    assert data_runs(buf, 8, start=8, end=32) == [(8, 16)]
    assert data_runs(buf, 8, start=36, end=64) == [(36, 44)]  # blocks are counted from `start`
