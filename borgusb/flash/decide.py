"""The flasher's decisions, without I/O: which disks may be written, why each other one is refused, how the
person confirms a risky one, and in which order the image reaches the device.

A disk is a candidate when udev says it is on USB, an SD card or removable; a loop device only when the
person asked for loop devices (tests). Every refusal has one reason word (counted by the command) and one
sentence for the person. A disk with a mounted partition is not refused but must be confirmed by typing
its size exactly as shown: a name typed from habit (``sdb``) is how the wrong disk gets wiped.

The write order (:func:`plan`) keeps an unfinished write from ever looking like a stick: the head of the
device (the partition table: MBR, or GPT's protective MBR, header and entries) is zeroed first, the body
follows and is read back, and the head is written last. Until then no partition table exists, so no
kernel, udev, hosted mode or firmware finds a BORGUSB partition on it.
"""

from __future__ import annotations

from dataclasses import dataclass

HEAD = 1 << 20  # the partition tables live in the first MiB (GPT: 34 sectors; the partitions start at 1 MiB)
LARGE = 256 * 10**9  # a disk this large is a backup disk more often than a stick: its size is typed too


@dataclass(frozen=True)
class Disk:
    """What the machine says about one whole disk (disks.py fills it from udev and sysfs)."""

    node: str  # /dev/sdb
    size: int  # bytes; 0: no medium
    vendor: str = ""
    model: str = ""
    usb: bool = False  # ID_BUS=usb
    sd: bool = False  # an SD card: in a USB reader (ID_DRIVE_FLASH_SD) or an SD host (mmc, type SD)
    removable: bool = False  # the kernel's removable attribute
    loop: bool = False
    read_only: bool = False
    system: tuple[str, ...] = ()  # mount points of the running system on it (/, /boot, swap, ...)
    mounted: tuple[str, ...] = ()  # every mount point on it (including the system's)

    @property
    def kind(self) -> str:
        return (
            "loop"
            if self.loop
            else "SD card"
            if self.sd
            else "USB"
            if self.usb
            else "removable"
            if self.removable
            else "internal"
        )

    def describe(self) -> str:
        """One line for the list: device, size as typed to confirm, kind, vendor and model."""
        name = " ".join(part for part in (self.vendor, self.model) if part) or "(no name)"
        return f"{self.node:<14} {size_text(self.size):>9}  {self.kind:<9} {name}"


@dataclass(frozen=True)
class Refusal:
    reason: str  # one word, counted
    why: str  # one sentence for the person


@dataclass(frozen=True)
class Verdict:
    disk: Disk
    refusals: tuple[Refusal, ...]
    confirm: str | None  # None, or why the person must type the size before the write

    @property
    def ok(self) -> bool:
        return not self.refusals


def size_text(size: int) -> str:
    """A size as the list shows it and as the person types it back: decimal units, one decimal place."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if size >= scale:
            tenths = (size * 10 + scale // 2) // scale  # integers: 15.99 GB rounds the same everywhere
            return f"{tenths // 10}.{tenths % 10} {unit}"
    return f"{size} B"


def size_confirmed(typed: str, disk: Disk) -> bool:
    """Whether the person typed the disk's size as shown (spaces and case do not matter)."""
    return "".join(typed.split()).lower() == "".join(size_text(disk.size).split()).lower()


def judge(disk: Disk, *, allow_loop: bool, image_size: int) -> Verdict:
    """May the image be written to `disk`? Every reason against it, and whether the size must be typed."""
    refusals = []
    if disk.loop and not allow_loop:
        refusals.append(Refusal("loop", "a loop device (a file standing in for a disk): only with --allow-loop"))
    if not (disk.loop or disk.usb or disk.sd or disk.removable):
        refusals.append(Refusal("internal", "an internal disk: not on USB, not an SD card, not removable"))
    if disk.system:
        refusals.append(Refusal("system", f"the running system lives on it ({', '.join(disk.system)})"))
    if disk.read_only:
        refusals.append(Refusal("read_only", "it is read-only (the lock switch of an SD card?)"))
    if disk.size == 0:
        refusals.append(Refusal("empty", "no medium in it"))
    elif disk.size < image_size:
        refusals.append(
            Refusal("too_small", f"it holds {size_text(disk.size)}, the image needs {size_text(image_size)}")
        )
    confirm = None
    if disk.mounted:
        confirm = f"it is in use: mounted on {', '.join(disk.mounted)} (it will be unmounted)"
    elif disk.size >= LARGE:
        confirm = f"it is larger than any stick ({size_text(disk.size)}): a backup disk?"
    return Verdict(disk, tuple(refusals), confirm)


@dataclass(frozen=True)
class Plan:
    """Byte ranges of the device, in the order they are written: see the module docstring."""

    head: tuple[int, int]  # zeroed first, written last
    body: tuple[int, int]  # written, synced and read back while the head is zero
    stale_tail: tuple[int, int] | None  # the device's last MiB beyond the image (a backup GPT of before): zeroed


def plan(image_size: int, device_size: int) -> Plan:
    if image_size > device_size:
        raise ValueError(f"the image ({image_size} bytes) is larger than the device ({device_size} bytes)")
    head = min(HEAD, image_size)
    tail_start = max(device_size - HEAD, image_size)
    stale = (tail_start, device_size) if tail_start < device_size else None
    return Plan((0, head), (head, image_size), stale)
