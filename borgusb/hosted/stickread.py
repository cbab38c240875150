"""Reading one inserted stick: its marker and keystore, through a read-only private mount unmounted at once
(or mtools, no mount; or the directory the desktop mounted, for the launcher on the stick). A stick that
cannot be used is refused with StickRejected, whose message says why, and nothing is started or written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import keystore
from ..stick import KEYSTORE, LABEL, MARKER, Marker, MarkerError
from .stickfs import PENDING, StickFS


class StickRejected(Exception):
    """The device carries the label but cannot be used; the message says why."""


@dataclass(frozen=True)
class StickContents:
    marker: Marker
    keystore: bytes | None  # None: no wallet yet
    identity: str | None  # the wallet's Doge address
    backend: str  # "kernel" (private mount), "mtools" (no vfat in the kernel) or "dir" (read in place)


def read_stick(
    device: str, fstype: str, ram: Path, stick_dir: Path | None, log: Callable[[str], None]
) -> StickContents:
    """The stick's marker and wallet keystore, checked; StickRejected if it cannot be used."""
    names = [MARKER, KEYSTORE, PENDING]
    backend = "dir"
    try:
        if stick_dir is not None:
            files = {n: StickFS._read_path(stick_dir / n) for n in names}
        else:
            fs = StickFS(device, fstype, ram / "mnt", ram)
            files = fs.read_files(names)
            backend = fs.backend
    except OSError as exc:
        raise StickRejected(f"cannot read it ({exc.strerror or exc})") from None
    raw = files[MARKER]
    if raw is None:
        raise StickRejected(
            f"it is labelled {LABEL} but has no BorgUSB marker file ({MARKER}): not a BorgUSB stick, left alone"
        )
    try:
        marker = Marker.parse(raw)
    except MarkerError as exc:
        raise StickRejected(f"{exc}: left alone") from None
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
                f"the keystore on the stick cannot be used: {exc}. Nothing was changed on the stick "
                "or on this computer; restore the wallet from your 24 words onto a new stick "
                "('borgusb wallet restore')"
            ) from None
        if doc.get("kind") != "wallet":
            raise StickRejected(f"the keystore on the stick holds a {doc.get('kind')} key, not a wallet")
        identity = doc.get("public", {}).get("doge_address")
    return StickContents(marker, ks, identity, backend)
