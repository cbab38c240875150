"""Reading one inserted stick: its marker and keystore (stickfs: mtools on the block device, or a read-only
vfat mount unmounted at once; or the directory the desktop mounted, for the launcher on the stick). A stick
that cannot be used is refused with StickRejected, whose reason is counted and whose message says why, and
nothing is started or written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import keystore
from ..stick import FILESYSTEM, KEYSTORE, LABEL, MARKER, Marker, MarkerError
from .stickfs import PENDING, StickDir, StickFS


class StickRejected(Exception):
    """The device carries the label but cannot be used; `reason` is one word (counted), the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class StickContents:
    marker: Marker
    keystore: bytes | None  # None: no wallet yet
    identity: str | None  # the wallet's Doge address
    backend: str  # "mtools" (no mount), "kernel" (private vfat mount) or "dir" (read in place)


def open_stick(device: str, fstype: str, workdir: Path, stick_dir: Path | None) -> StickFS | StickDir:
    """Where the stick is read from. A device that udev does not call FAT is refused here, before any
    byte of it is read: no other filesystem driver of the kernel, nor mtools, ever sees it."""
    if stick_dir is not None:
        return StickDir(stick_dir)
    if fstype != FILESYSTEM:
        raise StickRejected(
            "filesystem",
            f"it is labelled {LABEL} but its filesystem is {fstype or 'unknown'}, not FAT ({FILESYSTEM}): "
            "not a BorgUSB stick, left alone (nothing was mounted or read)",
        )
    return StickFS(device, workdir)


def read_stick(source: StickFS | StickDir, device: str, log: Callable[[str], None]) -> StickContents:
    """The stick's marker and wallet keystore, checked; StickRejected if it cannot be used."""
    try:
        files = source.read_files([MARKER, KEYSTORE, PENDING])
    except OSError as exc:
        raise StickRejected("unreadable", f"cannot read it ({exc.strerror or exc})") from None
    raw = files[MARKER]
    if raw is None:
        raise StickRejected(
            "no-marker",
            f"it is labelled {LABEL} but has no BorgUSB marker file ({MARKER}): not a BorgUSB stick, left alone",
        )
    try:
        marker = Marker.parse(raw)
    except MarkerError as exc:
        raise StickRejected("marker", f"{exc}: left alone") from None
    ks, pending = files[KEYSTORE], files[PENDING]
    if ks is None and pending is not None:
        try:
            keystore.parse(pending)
            ks = pending
            log(
                f"{device}: the last wallet write was interrupted after the new keystore was complete: "
                "using it (it becomes keystore.json at the next write)"
            )
        except keystore.KeystoreError:
            pass
    identity = None
    if ks is not None:
        try:
            doc = keystore.parse(ks)
        except keystore.KeystoreError as exc:
            raise StickRejected(
                "keystore",
                f"the keystore on the stick cannot be used: {exc}. Nothing was changed on the stick "
                "or on this computer; restore the wallet from your 24 words onto a new stick "
                "('borgusb wallet restore')",
            ) from None
        if doc.get("kind") != "wallet":
            raise StickRejected("keystore", f"the keystore on the stick holds a {doc.get('kind')} key, not a wallet")
        identity = doc.get("public", {}).get("doge_address")
    return StickContents(marker, ks, identity, source.backend)
