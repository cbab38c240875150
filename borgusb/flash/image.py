"""The image to write, and the files the flasher puts on its data partition on the way.

The image is never changed. When a keystore or a marker is to go onto the stick, the data partition's
bytes are copied (sparsely) into a private temporary file, the files are written into that copy with
mtools (the FAT filesystem in user space, as image/build_image.py and hosted mode do; no mount, no
partition parser of the kernel), and the writer reads the data partition's range from the copy and the
rest from the image (:class:`Source`). The read-back then checks the stick against exactly those bytes.

The partition table is read by sfdisk (user space) and the data partition is the one whose filesystem
blkid finds to be FAT labelled BORGUSB: GPT on the USB image, MBR on the Pi's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..stick import FILESYSTEM, KEYSTORE, LABEL, MARKER

SECTOR = 512
CHUNK = 1 << 20
USB_IMAGE = "borgusb-usb.img"  # image/build_image.py's outputs, in ~/.cache/borgusb/image
PI_IMAGE = "borgusb-pi.img"
DESKTOP_IMAGE = "borgusb-desktop.img"  # ./build.sh image --profile desktop


class ImageError(Exception):
    """The image (or a device read as one) cannot be used; the message says why."""


def default_image(pi: bool, desktop: bool = False) -> Path:
    """Where ./build.sh (or ./build.sh pi) leaves the image, for the user who runs the flasher (sudo: the
    invoking user's cache)."""
    if os.environ.get("BORGUSB_CACHE"):
        cache = Path(os.environ["BORGUSB_CACHE"])
    else:
        home = Path.home()
        if os.environ.get("SUDO_USER"):
            home = Path(os.path.expanduser(f"~{os.environ['SUDO_USER']}"))
        cache = home / ".cache" / "borgusb"
        if not (cache / "image").is_dir() and Path("/root/.cache/borgusb/image").is_dir():
            cache = Path("/root/.cache/borgusb")  # ./build.sh runs the build as root
    return cache / "image" / (PI_IMAGE if pi else DESKTOP_IMAGE if desktop else USB_IMAGE)


def _tool(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, **kw)
    except FileNotFoundError:
        raise ImageError(f"{cmd[0]} is missing ({what}): install it (./build.sh setup does)") from None


@dataclass(frozen=True)
class Partition:
    start: int  # bytes
    size: int


def partitions(path: str | Path) -> list[Partition]:
    """The partitions of a disk image or device, read by sfdisk in user space; [] without a table."""
    proc = _tool(["sfdisk", "--json", str(path)], "fdisk's sfdisk reads partition tables", text=True)
    if proc.returncode != 0:
        return []
    try:
        table = json.loads(proc.stdout)["partitiontable"]
        sector = int(table.get("sectorsize", SECTOR))
        return [Partition(int(p["start"]) * sector, int(p["size"]) * sector) for p in table.get("partitions", [])]
    except (ValueError, KeyError, TypeError):
        return []


def filesystem(path: str | Path, part: Partition) -> tuple[str, str]:
    """(type, label) of the filesystem blkid finds in a partition, read at its offset."""
    proc = _tool(
        ["blkid", "--probe", "--offset", str(part.start), "--size", str(part.size), "-o", "export", str(path)],
        "util-linux's blkid identifies filesystems",
        text=True,
    )
    found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    return found.get("TYPE", ""), found.get("LABEL", "")


def data_partition(path: str | Path) -> Partition | None:
    """The BORGUSB data partition: FAT labelled BORGUSB."""
    for part in partitions(path):
        if filesystem(path, part) == (FILESYSTEM, LABEL):
            return part
    return None


def mtools_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MTOOLS_SKIP_CHECK": "1", "HOME": str(home)}


def read_file(target: str, name: str, home: Path) -> bytes | None:
    """A file of the FAT filesystem at `target` (``PATH`` or ``PATH@@OFFSET``), None if it has none."""
    proc = _tool(["mtype", "-i", target, f"::/{name}"], "mtools reads FAT", env=mtools_env(home))
    return proc.stdout if proc.returncode == 0 else None


@dataclass
class Source:
    """The bytes to write: the image, with the data partition's range taken from a changed copy if any."""

    image: Path
    size: int
    data: Partition | None = None
    copy: Path | None = None  # the data partition with the keystore and marker in it
    workdir: Path | None = None
    added: list[str] = field(default_factory=list)

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes at `offset` (never past a boundary between image and copy: see `pieces`)."""
        if self.copy is not None and self.data is not None and offset >= self.data.start:
            if offset + length <= self.data.start + self.data.size:
                with open(self.copy, "rb") as fh:
                    fh.seek(offset - self.data.start)
                    return fh.read(length)
        with open(self.image, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    def pieces(self, start: int, end: int, chunk: int = CHUNK) -> list[tuple[int, int]]:
        """(offset, length) chunks covering [start, end), split at the data partition's edges."""
        cuts = {start, end}
        if self.copy is not None and self.data is not None:
            cuts |= {b for b in (self.data.start, self.data.start + self.data.size) if start < b < end}
        edges = sorted(cuts)
        out = []
        for lo, hi in zip(edges, edges[1:]):
            out += [(o, min(chunk, hi - o)) for o in range(lo, hi, chunk)]
        return out

    def close(self) -> None:
        """The copy may hold a keystore: zeroed before it is removed (it is encrypted, but leaves nothing)."""
        if self.copy is not None and self.copy.exists():
            with open(self.copy, "r+b") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(0)
                for _ in range(0, size, CHUNK):
                    fh.write(bytes(min(CHUNK, size - fh.tell())))
                fh.flush()
                os.fsync(fh.fileno())
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def open_image(image: Path, files: dict[str, bytes]) -> Source:
    """The image as a Source; with `files` (name -> bytes: the keystore, the marker) put on its data partition."""
    try:
        size = image.stat().st_size
    except OSError as exc:
        raise ImageError(
            f"no image at {image} ({exc.strerror}): build it first (./build.sh, or ./build.sh pi)"
        ) from None
    if size == 0 or size % SECTOR:
        raise ImageError(f"{image} is not a disk image ({size} bytes, not whole sectors)")
    data = data_partition(image)
    if data is None:
        raise ImageError(f"{image} has no {LABEL} data partition: not a BorgUSB image")
    if data.start + data.size > size:
        raise ImageError(f"{image} is cut short: its {LABEL} partition ends past the end of the file")
    source = Source(image, size, data)
    if not files:
        return source
    source.workdir = Path(tempfile.mkdtemp(prefix="borgusb-flash-"))  # 0700
    source.copy = source.workdir / "data.img"
    try:
        _sparse_copy(image, data, source.copy)
        for name, content in files.items():
            src = source.workdir / "file"
            src.write_bytes(content)
            proc = _tool(
                ["mcopy", "-o", "-i", str(source.copy), str(src), f"::/{name}"],
                "mtools writes FAT",
                env=mtools_env(source.workdir),
            )
            src.write_bytes(bytes(len(content)))
            src.unlink()
            if proc.returncode != 0:
                raise ImageError(f"cannot put {name} on the data partition: {proc.stderr.decode(errors='replace')}")
            if read_file(str(source.copy), name, source.workdir) != content:
                raise ImageError(f"{name} did not read back identical from the data partition's copy")
            source.added.append(name)
    except BaseException:
        source.close()
        raise
    return source


def _sparse_copy(image: Path, part: Partition, dest: Path) -> None:
    """The partition's bytes into `dest`, leaving holes where the image has zeros (a FAT is mostly empty)."""
    zero = bytes(CHUNK)
    with open(image, "rb") as src, open(dest, "wb") as out:
        src.seek(part.start)
        left = part.size
        while left:
            block = src.read(min(CHUNK, left))
            if not block:
                raise ImageError(f"{image} ended inside its data partition")
            if block == zero[: len(block)]:
                out.seek(len(block), os.SEEK_CUR)
            else:
                out.write(block)
            left -= len(block)
        out.truncate(part.size)


def stick_files(keystore: bytes | None, marker: bytes | None) -> dict[str, bytes]:
    files = {}
    if marker is not None:
        files[MARKER] = marker
    if keystore is not None:
        files[KEYSTORE] = keystore
    return files
