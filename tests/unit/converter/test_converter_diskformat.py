"""qemu-img format detection and conversion on real images (needs qemu-utils, no server)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mtv.converter import diskformat
from mtv.converter.errors import DiskConversionError

MIB = 1 << 20


def _known_raw(path: Path) -> bytes:
    # Random data, a zero hole in the middle (sparse handling) and a pattern at the end.
    data = os.urandom(2 * MIB) + bytes(3 * MIB) + b"MTV-END!" * (MIB // 8)
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("subformat", ["monolithicSparse", "streamOptimized"])
def test_vmdk_converts_to_byte_identical_raw(tmp_path: Path, subformat: str) -> None:
    raw = tmp_path / "source.raw"
    data = _known_raw(raw)
    disk = tmp_path / "disk.img"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", f"subformat={subformat}",
                    str(raw), str(disk)], check=True)
    assert diskformat.info(disk).format == "vmdk"

    seen: list[float] = []
    assert diskformat.ensure_format(disk, "raw", seen.append) is True
    assert diskformat.info(disk).format == "raw"
    assert disk.read_bytes() == data
    assert seen and seen[-1] == 100.0 and seen == sorted(seen)
    assert not list(tmp_path.glob(".*converting"))
    # A repeated request finds it done.
    assert diskformat.ensure_format(disk, "raw") is False


def test_raw_to_qcow2_on_request(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    data = _known_raw(disk)
    assert diskformat.ensure_format(disk, "qcow2") is True
    info = diskformat.info(disk)
    assert info.format == "qcow2" and info.virtual_size == len(data)
    back = tmp_path / "back.raw"
    diskformat.convert(disk, back, "raw")
    assert back.read_bytes() == data


def test_vmdk_created_empty_by_qemu_img_then_written_with_qemu_io(tmp_path: Path) -> None:
    disk = tmp_path / "written.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(disk), "4M"], check=True)
    subprocess.run(["qemu-io", "-f", "vmdk", "-c", "write -P 0xab 1M 64k", str(disk)], check=True,
                   capture_output=True)
    assert diskformat.ensure_format(disk, "raw") is True
    content = disk.read_bytes()
    assert len(content) == 4 * MIB
    assert content[MIB:MIB + 65536] == b"\xab" * 65536
    assert content[:MIB].count(0) == MIB and content[MIB + 65536:].count(0) == 3 * MIB - 65536


def test_unreadable_image_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DiskConversionError) as info:
        diskformat.info(tmp_path / "missing.img")
    assert "disk copy" in str(info.value)


def test_guest_conversion_is_skipped_honestly_when_not_installed(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without virt-v2v-in-place
    assert not diskformat.guest_conversion_available()
    assert diskformat.convert_guest([tmp_path / "disk.img"]) is False
