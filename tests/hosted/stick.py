"""Test sticks: small GPT disk images with a BORGUSB data partition, attached as loop devices."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from borgusb.stick import KEYSTORE, LABEL, MARKER, Marker

SECTOR = 512
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
DATA_TYPE = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
DATA_START = 2048 + 8 * 2048
DATA_SECTORS = 48 * 2048


def make_stick(
    path: Path,
    *,
    marker: bool | bytes = True,
    keystore: bytes | None = None,
    label: str = LABEL,
    files: dict[str, bytes] | None = None,
    fs: str = "vfat",
) -> Path:
    """A 64 MiB GPT image: a small ESP and a data partition labelled `label`: FAT32, or with fs="ext4" an
    ext4 filesystem (which hosted mode must refuse unread; no files are put on it)."""
    with open(path, "wb") as fh:
        fh.truncate((DATA_START + DATA_SECTORS + 2048) * SECTOR)
    layout = (
        f"label: gpt\nunit: sectors\nfirst-lba: 2048\n"
        f'start=2048, size={8 * 2048}, type={ESP_TYPE}, name="ESP"\n'
        f'start={DATA_START}, size={DATA_SECTORS}, type={DATA_TYPE}, name="{label}"\n'
    )
    subprocess.run(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(path)], input=layout, text=True, check=True
    )
    if fs == "ext4":
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", label, "-E", f"offset={DATA_START * SECTOR}", str(path)]
            + [f"{DATA_SECTORS // 2}k"],
            check=True,
            capture_output=True,
        )
        return path
    subprocess.run(
        ["mkfs.vfat", "-F", "32", "-s", "1", "-n", label, f"--offset={DATA_START}", str(path), str(DATA_SECTORS // 2)],
        check=True,
        capture_output=True,
    )
    content: dict[str, bytes] = dict(files or {})
    if marker is True:
        content[MARKER] = Marker().to_bytes()
    elif isinstance(marker, bytes):
        content[MARKER] = marker
    if keystore is not None:
        content[KEYSTORE] = keystore
    for name, data in content.items():
        put(path, name, data)
    return path


def _mt(path: Path) -> str:
    return f"{path}@@{DATA_START * SECTOR}"


def put(path: Path, name: str, data: bytes) -> None:
    src = path.parent / f".put-{os.getpid()}-{name.strip('.')}"
    src.write_bytes(data)
    try:
        subprocess.run(
            ["mcopy", "-o", "-i", _mt(path), str(src), f"::/{name}"],
            check=True,
            env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
            capture_output=True,
        )
    finally:
        src.unlink()


def get(path: Path, name: str) -> bytes | None:
    out = subprocess.run(
        ["mtype", "-i", _mt(path), f"::/{name}"], capture_output=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    )
    return out.stdout if out.returncode == 0 else None


def listing(path: Path) -> list[str]:
    out = subprocess.run(
        ["mdir", "-b", "-a", "-i", _mt(path), "::/"],
        capture_output=True,
        text=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )
    return sorted(line.strip().removeprefix("::/") for line in out.stdout.splitlines() if line.strip())


def _partitions(image: Path) -> int:
    """How many partitions the image's table lists (sfdisk reads the file; 0 without a table)."""
    out = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True)
    return len(json.loads(out.stdout)["partitiontable"]["partitions"]) if out.returncode == 0 else 0


class Loop:
    """The image as a loop device with its partitions (the host kernel has no partition parsers: partx)."""

    def __init__(self, image: Path) -> None:
        self.image = image
        self.dev = subprocess.run(
            ["losetup", "-f", "--show", "-P", str(image)], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.attached_at = time.monotonic()
        self.data = f"{self.dev}p2"
        deadline = time.monotonic() + 30
        while _partitions(image) >= 2:  # partx can lose a race with udevd's open of the loop device: ask again
            added = subprocess.run(["partx", "-a", self.dev], capture_output=True, text=True)  # "exists" is fine
            if os.path.exists(self.data):
                break
            if time.monotonic() > deadline:
                self.detach()
                raise RuntimeError(f"partx -a {image.name}: no {self.data} after 30 s: {added.stderr.strip()}")
            time.sleep(0.5)

    def detach(self) -> float:
        """Pull the stick: the kernel removes the partitions. Returns the monotonic time of the event."""
        if not self.dev:
            return time.monotonic()
        t = time.monotonic()
        subprocess.run(["losetup", "-d", self.dev], check=False, capture_output=True)
        self.dev = ""
        return t

    def close(self) -> None:
        if self.dev:
            subprocess.run(["umount", "-l", self.data], capture_output=True)
            self.detach()
