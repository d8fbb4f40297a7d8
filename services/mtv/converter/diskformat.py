"""Disk image formats: detect with `qemu-img info`, convert with `qemu-img convert -p`, and the
optional guest conversion with `virt-v2v-in-place` (run only when installed, never pretended).

qemu-img comes from Debian's `qemu-utils` (`.ci/run` installs it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mtv.converter.errors import DiskConversionError

log = logging.getLogger(__name__)

Progress = Callable[[float], None]  # percent done, 0..100
FORMATS = ("raw", "qcow2")
_PERCENT = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")
GUEST_TOOL = "virt-v2v-in-place"


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "raw", "vmdk", "qcow2", ...
    virtual_size: int
    actual_size: int


def _qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise DiskConversionError(
            "qemu-img is not installed", field="disk", fix="install qemu-utils (apt-get install qemu-utils)"
        )
    return path


def info(path: Path) -> ImageInfo:
    """Format and sizes of the image at `path`."""
    proc = subprocess.run([_qemu_img(), "info", "--output=json", str(path)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise DiskConversionError(f"qemu-img cannot read {path}: {proc.stderr.strip()}", field="disk",
                                  fix="check that the disk copy completed")
    data = json.loads(proc.stdout)
    return ImageInfo(data["format"], int(data["virtual-size"]), int(data.get("actual-size", 0)))


def convert(src: Path, dst: Path, out_format: str = "raw", progress: Progress | None = None) -> None:
    """`qemu-img convert -p` from whatever `src` is to `out_format` at `dst`, reporting percent.

    qemu-img prints progress as "    (12.34/100%)" lines ended by carriage returns; we read the
    stream in chunks and report every value, so a caller can publish it.
    """
    if out_format not in FORMATS:
        raise DiskConversionError(f"output format {out_format!r} is not supported", field="disk_format",
                                  fix=f"use one of {', '.join(FORMATS)}")
    argv = [_qemu_img(), "convert", "-p", "-O", out_format, str(src), str(dst)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    pending = b""
    while chunk := proc.stdout.read1(4096):  # type: ignore[attr-defined]
        pending += chunk
        *done, pending = re.split(rb"[\r\n]", pending)
        for piece in done:
            match = _PERCENT.search(piece)
            if match and progress is not None:
                progress(float(match.group(1)))
    stderr = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        dst.unlink(missing_ok=True)
        raise DiskConversionError(f"qemu-img convert {src} failed: {stderr.strip()}", field="disk",
                                  fix="check the source disk image; it may be truncated or not a disk image")


def ensure_format(path: Path, out_format: str = "raw", progress: Progress | None = None) -> bool:
    """Convert the image at `path` in place to `out_format` if it is anything else.

    Returns True when it converted. The result is written next to it and renamed over it, so a
    crash leaves either the old or the new image, and a repeated request finds it done.
    """
    current = info(path)
    if current.format == out_format:
        return False
    tmp = path.with_name(f".{path.name}.converting")
    tmp.unlink(missing_ok=True)
    log.info("converting %s from %s to %s", path, current.format, out_format)
    convert(path, tmp, out_format, progress)
    os.replace(tmp, path)
    return True


def guest_conversion_available() -> bool:
    return shutil.which(GUEST_TOOL) is not None


def convert_guest(disks: Sequence[Path]) -> bool:
    """Install virtio drivers and fix the boot config inside the guest, if virt-v2v-in-place exists.

    Returns False (and logs why) when the tool is not installed: the VM is then created in
    compatibility mode (SATA, E1000E) and VmCreated says guest_converted=false.
    """
    tool = shutil.which(GUEST_TOOL)
    if tool is None or not disks:
        log.warning("guest conversion skipped: %s", f"{GUEST_TOOL} is not installed" if tool is None else "no disks")
        return False
    # `-i disk` takes the boot disk; virt-v2v inspects the guest OS from it and rewrites in place.
    proc = subprocess.run([tool, "-i", "disk", str(disks[0])], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DiskConversionError(f"{GUEST_TOOL} failed: {proc.stderr.strip()[-2000:]}", field="guest_conversion",
                                  fix="check the guest OS is supported by virt-v2v, or migrate without conversion")
    return True
