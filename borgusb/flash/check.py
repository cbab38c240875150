"""Whether a device holds a complete BorgUSB stick, read the way hosted mode and the booted image read one.

A stick is a partition table with a FAT partition labelled BORGUSB whose marker parses (borgusb.stick)
and whose keystore, if any, is intact. The flasher writes the partition table last, so a write that
was cut short is told here as ``no_table``: never half-trusted. Everything is read in user space
(sfdisk, blkid at the partition's offset, mtools), so it works on a host whose kernel has no partition
parsers and never mounts the device.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import keystore
from ..stick import KEYSTORE, LABEL, MARKER, Marker, MarkerError
from .image import data_partition, partitions, read_file


@dataclass(frozen=True)
class StickCheck:
    ok: bool
    reason: str  # "ok", or one word: unreadable, no_table, no_data_partition, no_marker, marker, keystore
    message: str
    marker: Marker | None = None
    has_keystore: bool = False


def check_stick(device: str) -> StickCheck:
    def bad(reason: str, why: str) -> StickCheck:
        return StickCheck(False, reason, f"{device} is not a valid BorgUSB stick: {why}")

    try:
        os.close(os.open(device, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        return StickCheck(False, "unreadable", f"cannot read {device} ({exc.strerror}); as root?")
    if not partitions(device):
        return bad("no_table", "it has no partition table (an unfinished or failed write leaves none)")
    part = data_partition(device)
    if part is None:
        return bad("no_data_partition", f"no FAT partition labelled {LABEL}")
    with tempfile.TemporaryDirectory(prefix="borgusb-check-") as home:
        target = f"{device}@@{part.start}"
        raw = read_file(target, MARKER, Path(home))
        ks = read_file(target, KEYSTORE, Path(home))
    if raw is None:
        return bad("no_marker", f"its {LABEL} partition has no marker file {MARKER}")
    try:
        marker = Marker.parse(raw)
    except MarkerError as exc:
        return bad("marker", str(exc))
    if ks is not None:
        try:
            keystore.parse(ks)
        except keystore.KeystoreError as exc:
            return bad("keystore", f"its {KEYSTORE} cannot be used ({exc})")
    what = "a wallet keystore" if ks is not None else "no wallet yet"
    return StickCheck(True, "ok", f"{device} is a valid BorgUSB stick ({what})", marker, ks is not None)
