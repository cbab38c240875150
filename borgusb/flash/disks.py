"""The machine's whole disks as the flasher sees them: udev's properties (pyudev), sysfs and the mount table.

Nothing here is guessed from a device's name: the bus, the SD-card flags and the removable attribute come
from udev and sysfs, and the disks the running system lives on are found by following the devices of its
mounts (/, /boot, /usr, the EFI partition, swap) down through device-mapper and RAID to the whole disks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyudev

from .decide import Disk

SYSTEM_MOUNTS = ("/", "/boot", "/boot/efi", "/efi", "/usr", "/var")
BOOTED_STICK = Path("/run/borgusb/identity.json")  # a booted BorgUSB image: the stick it came from (stickcopy)
LOOP_MAJOR = "7"


def _decode(text: str) -> str:
    r"""udev's *_ENC values escape bytes as \xNN; the rest is shown as text only."""
    try:
        return text.encode("latin-1").decode("unicode_escape").strip()
    except (UnicodeError, ValueError):
        return text.strip()


def _attr(dev: Any, name: str) -> str:
    value = dev.attributes.get(name)
    return value.decode(errors="replace").strip() if value is not None else ""


def whole_disks(devnum: int, seen: frozenset[str] = frozenset()) -> set[str]:
    """The /sys/block names of the whole disks under the block device `devnum` (a partition's disk;
    device-mapper and RAID followed through their slaves)."""
    path = Path(f"/sys/dev/block/{os.major(devnum)}:{os.minor(devnum)}")
    try:
        real = path.resolve(strict=True)
    except OSError:
        return set()
    if (real / "partition").exists():
        real = real.parent
    if real.name in seen:
        return set()
    slaves = sorted((real / "slaves").glob("*")) if (real / "slaves").is_dir() else []
    found: set[str] = set()
    for slave in slaves:
        try:
            found |= whole_disks(os.stat(f"/dev/{slave.name}").st_rdev, seen | {real.name})
        except OSError:
            continue
    return found or {real.name}


def _mount_devices() -> Iterator[tuple[int, str]]:
    """(device number, mount point) of every mount of this process's namespace, and of every swap."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            fields = line.split()
            if " - " not in line or len(fields) < 5:
                continue
            major, _, minor = fields[2].partition(":")
            point = fields[4].replace("\\040", " ")
            source = line.split(" - ", 1)[1].split()[1:2]
            devnum = os.makedev(int(major), int(minor))
            if int(major) == 0 and source and source[0].startswith("/dev/"):
                try:  # btrfs and others report an anonymous device number: the source names the device
                    devnum = os.stat(source[0]).st_rdev
                except OSError:
                    continue
            yield devnum, point
    try:
        with open("/proc/swaps", encoding="utf-8") as fh:
            for line in fh.readlines()[1:]:
                name = line.split()[0] if line.split() else ""
                if name.startswith("/dev/"):
                    try:
                        yield os.stat(name).st_rdev, "swap"
                    except OSError:
                        continue
    except OSError:
        return


def mounts_by_disk() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(every mount point, the running system's mount points) per whole-disk name."""
    mounted: dict[str, list[str]] = {}
    system: dict[str, list[str]] = {}
    for devnum, point in _mount_devices():
        if os.major(devnum) == 0:
            continue
        for disk in whole_disks(devnum):
            mounted.setdefault(disk, []).append(point)
            if point in SYSTEM_MOUNTS or point == "swap":
                system.setdefault(disk, []).append(point)
    for disk in _booted_stick():
        system.setdefault(disk, []).append("the stick this system booted from")
    return mounted, system


def _booted_stick() -> set[str]:
    """On a booted BorgUSB image the root is RAM, so no mount names the stick: the stick step recorded it."""
    try:
        device = json.loads(BOOTED_STICK.read_text()).get("device")
        return whole_disks(os.stat(device).st_rdev) if isinstance(device, str) else set()
    except (OSError, ValueError, AttributeError):
        return set()


def disk_of(dev: Any, mounted: dict[str, list[str]], system: dict[str, list[str]]) -> Disk:
    """One udev block device of DEVTYPE disk as a Disk."""
    mmc = dev.find_parent("mmc")
    loop = dev.properties.get("MAJOR") == LOOP_MAJOR
    vendor = _decode(dev.properties.get("ID_VENDOR_ENC") or dev.properties.get("ID_VENDOR") or "")
    model = _decode(dev.properties.get("ID_MODEL_ENC") or dev.properties.get("ID_MODEL") or "")
    if mmc is not None and not model:
        model = _attr(mmc, "name")
    if loop:
        vendor, model = "", _attr(dev, "loop/backing_file")
    try:
        size = int(_attr(dev, "size") or 0) * 512
    except ValueError:
        size = 0
    name = dev.sys_name
    return Disk(
        node=dev.device_node,
        size=size,
        vendor=vendor,
        model=model,
        usb=dev.properties.get("ID_BUS") == "usb",
        sd=dev.properties.get("ID_DRIVE_FLASH_SD") == "1"
        or dev.properties.get("ID_DRIVE_MEDIA_FLASH_SD") == "1"
        or (mmc is not None and _attr(mmc, "type") == "SD"),
        removable=_attr(dev, "removable") == "1",
        loop=loop,
        read_only=_attr(dev, "ro") == "1",
        system=tuple(dict.fromkeys(system.get(name, []))),
        mounted=tuple(dict.fromkeys(mounted.get(name, []))),
    )


def list_disks() -> list[Disk]:
    """Every whole disk udev knows with a device node, loop devices with nothing attached left out."""
    mounted, system = mounts_by_disk()
    context = pyudev.Context()
    disks = []
    for dev in context.list_devices(subsystem="block", DEVTYPE="disk"):
        if not dev.device_node:
            continue
        disk = disk_of(dev, mounted, system)
        if disk.loop and disk.size == 0:
            continue  # an unused loop device: not a disk at all
        disks.append(disk)
    return sorted(disks, key=lambda d: d.node)


def find_disk(node: str) -> Disk | None:
    """The disk `node` names (a symlink such as /dev/disk/by-id/... is followed); None if it is no whole disk."""
    try:
        devnum = os.stat(node).st_rdev
    except OSError:
        return None
    try:
        dev = pyudev.Devices.from_device_number(pyudev.Context(), "block", devnum)
    except (pyudev.DeviceNotFoundError, ValueError):
        return None
    if dev.properties.get("DEVTYPE") != "disk" or not dev.device_node:
        return None
    mounted, system = mounts_by_disk()
    return disk_of(dev, mounted, system)
