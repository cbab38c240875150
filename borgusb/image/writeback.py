"""The keystore write-back (borgusb-keystore-writeback.service, started by its .path unit whenever the
conduit saves a wallet into the RAM copy on a booted stick): the stick is read-only but for this one write.

The BORGUSB partition is mounted read-write only for the write, which is atomic (`keystore.atomic_write`:
temp file, fsync, rename, fsync of the directory), then unmounted (the unmount flushes FAT's tables), mounted
read-only again and read back: only bytes read back from the stick count as saved. A stick pulled during the
write holds the old keystore or the complete new one (the rename is the switch), and the stick powers the
machine off (borgusb-stick-removed.service); at the next boot the unlock page shows the address of whichever
it holds. The state, for the conduit's pages, is in `STATUS`: saving, saved or failed with the reason.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from ..stick import FILESYSTEM, KEYSTORE, MAX_FILE
from .runtime import RUN, STICK, say, wait_for_device

STATUS = RUN / "stick-saved.json"  # read by the conduit (borgusb.conduit.stickstatus)
LOCK = RUN / "writeback.lock"  # the power-off step waits on it: a write under way is finished first
RW_MOUNT = RUN / "mnt-rw"
# FAT keeps no owners or modes: every file root's, private; chmod of the temp file is not an error
RW_OPTIONS = "rw,nodev,nosuid,noexec,uid=0,gid=0,fmask=0177,dmask=0077,quiet,flush"


def write_status(state: str, digest: str | None, detail: str = "") -> None:
    doc: dict[str, Any] = {"state": state, "sha256": digest, "detail": detail, "at": int(time.time())}
    tmp = STATUS.with_name(STATUS.name + ".tmp")
    tmp.write_text(json.dumps(doc, sort_keys=True) + "\n")
    tmp.chmod(0o644)
    os.replace(tmp, STATUS)


def _mount(device: Path, options: str) -> None:
    RW_MOUNT.mkdir(parents=True, exist_ok=True, mode=0o700)
    subprocess.run(
        ["mount", "-t", FILESYSTEM, "-o", options, str(device), str(RW_MOUNT)], check=True, capture_output=True
    )


def _umount() -> bool:
    return subprocess.run(["umount", str(RW_MOUNT)], check=False, capture_output=True).returncode == 0


def _mounted_at(device: Path) -> Path | None:
    """Where `device` is mounted already: the AI stack keeps the partition mounted read-only (aimount.py)."""
    found = subprocess.run(["findmnt", "-n", "-o", "TARGET", "--source", str(device)], capture_output=True, text=True)
    targets = found.stdout.split()
    return Path(targets[0]) if found.returncode == 0 and targets else None


def _remount(target: Path, mode: str) -> bool:
    return (
        subprocess.run(["mount", "-o", f"remount,{mode}", str(target)], check=False, capture_output=True).returncode
        == 0
    )


def _read_uncached(path: Path) -> bytes | None:
    """The file as the stick holds it: its cached pages dropped first, so the bytes come from the device."""
    if not path.is_file() or path.stat().st_size > MAX_FILE:
        return None
    with open(path, "rb") as fh:
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        return fh.read()


def _read_back(device: Path) -> bytes | None:
    """The keystore the stick holds, read from the device (a fresh read-only mount, or the AI stack's)."""
    shared = _mounted_at(device)
    if shared is not None:
        return _read_uncached(shared / KEYSTORE)
    _mount(device, "ro,nodev,nosuid,noexec")
    try:
        return _read_uncached(RW_MOUNT / KEYSTORE)
    finally:
        _umount()


def save_to_stick(data: bytes, device: Path) -> str:
    """Write `data` as the stick's keystore; returns what the stick holds afterwards ('saved' or 'unchanged')."""
    from ..keystore import atomic_write

    # A partition mounted already (the AI stack's read-only mount) has one superblock for every mount of it: a
    # second mount would be read-only too, so that one is remounted read-write for the write instead.
    shared = _mounted_at(device)
    if shared is not None and not _remount(shared, "rw"):
        raise OSError("the stick's partition could not be made writable")
    if shared is None:
        _mount(device, RW_OPTIONS)
    try:
        current = (shared or RW_MOUNT) / KEYSTORE
        if current.is_file() and current.read_bytes() == data:
            return "unchanged"
        atomic_write(current, data)
    finally:
        if not (_remount(shared, "ro") if shared is not None else _umount()):
            raise OSError("the stick could not be made read-only again after the write")
    if _read_back(device) != data:
        raise OSError("the keystore read back from the stick differs from the one written")
    return "saved"


def _what_it_holds(device: Path, data: bytes) -> str:
    """After a failed write: which keystore the stick holds, as the page says it."""
    try:
        held = _read_back(device)
    except (OSError, subprocess.CalledProcessError):
        return "the keystore it held before, or this one: it could not be read back"
    if held == data:
        return "this wallet"
    return "no keystore" if held is None else "the keystore it held before"


def cmd_writeback(wait: float) -> int:
    """Save the RAM keystore to the stick, if it is a keystore and differs from what the stick holds."""
    from ..keystore import KeystoreError, parse

    RUN.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = (STICK / KEYSTORE).read_bytes()
        except OSError:
            return 0  # wiped (the stick was pulled, or powering off): nothing to save
        try:
            parse(data)
        except KeystoreError:
            return 0  # a copy being wiped, never written to the stick
        digest = hashlib.sha256(data).hexdigest()
        write_status("saving", digest)
        device = wait_for_device(wait)
        if device is None:
            write_status("failed", digest, "the stick is not there: the wallet is only in this machine's memory")
            say("the wallet could not be saved: no stick")
            return 1
        try:
            outcome = save_to_stick(data, device)
        except (OSError, subprocess.CalledProcessError) as exc:
            reason = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
            held = _what_it_holds(device, data)
            if held != "this wallet":
                write_status("failed", digest, f"not saved on the stick ({reason}); the stick holds {held}")
                say(f"the wallet could not be saved on the stick: {reason}")
                return 1
            outcome = "saved"
        write_status("saved", digest)
        if outcome == "saved":
            say("the wallet is saved on the stick")
        return 0
