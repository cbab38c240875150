"""Where sticks come from: the kernel's block-device events, through udev (pyudev).

A candidate is a partition (or a whole disk) with the filesystem label ``BORGUSB``; whether it is a BorgUSB
stick is for its filesystem type (FAT only) and then its marker to say (borgusb.hosted.stickread). A device
name means nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyudev

from ..stick import LABEL


def is_candidate(dev: Any) -> bool:
    return dev.get("ID_FS_LABEL") == LABEL and dev.get("DEVTYPE") in ("partition", "disk") and bool(dev.device_node)


def fstype(dev: Any) -> str:
    """The filesystem type udev (blkid) found: a hint read from the stick, only ever used to refuse it."""
    return dev.get("ID_FS_TYPE") or ""


def is_removal(dev: Any) -> bool:
    """An event that may take a stick away: its removal, or a change after which it is no candidate."""
    return dev.action == "remove" or (dev.action == "change" and not is_candidate(dev))


def takes_away(dev: Any, device: str, sys_path: str) -> bool:
    """Whether the removal event `dev` (see is_removal) means the stick at `device` / `sys_path` is gone."""
    if device == dev.device_node or sys_path == dev.sys_path:
        return True  # the partition itself went away, or lost its label/filesystem
    if sys_path.startswith(dev.sys_path + "/"):
        # Its disk: removed, or emptied (a loop device detached, a card reader's medium pulled).
        # A mere `change` of the disk (a partition rescan, udev's watch after a close) is not
        # a removal: real USB sticks get one right after insertion.
        return dev.action == "remove" or not os.path.exists(sys_path) or _disk_empty(dev)
    return False


def _disk_empty(dev: Any) -> bool:
    try:
        return int(Path(dev.sys_path, "size").read_text().strip() or 0) == 0
    except (OSError, ValueError):
        return True


class BlockEvents:
    """The kernel's block-device events, listened to before the devices present are listed: nothing
    inserted in between is missed."""

    def __init__(self) -> None:
        self.context = pyudev.Context()
        self.monitor = pyudev.Monitor.from_netlink(self.context)
        self.monitor.filter_by("block")
        self.monitor.start()

    def present(self) -> Iterator[Any]:
        """The candidates present now."""
        for dev in self.context.list_devices(subsystem="block").match_property("ID_FS_LABEL", LABEL):
            if is_candidate(dev):
                yield dev

    def unprobed(self) -> list[str]:
        """Sys paths of partitions udev's database has no filesystem for: a probe that udevd ran too
        early (a re-attached disk) or lost; the rescan asks udevd to probe them again."""
        return [
            dev.sys_path
            for dev in self.context.list_devices(subsystem="block", DEVTYPE="partition")
            if "ID_FS_TYPE" not in dev.properties
        ]

    def poll(self, timeout: float) -> Any | None:
        return self.monitor.poll(timeout=timeout)

    def device_of(self, path: Path) -> tuple[str, str, str]:
        """(device node, sys path, filesystem type) of the device a directory is on (the launcher on the
        stick: the desktop mounted it); without udev, the directory stands for the device and its removal
        is found by polling it."""
        try:
            dev = pyudev.Devices.from_device_number(self.context, "block", os.stat(path).st_dev)
            return dev.device_node, dev.sys_path, fstype(dev)
        except Exception:  # noqa: BLE001 - no udev: removal is found by polling the directory
            return str(path), "/nonexistent", "vfat"
