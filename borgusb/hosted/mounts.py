"""Mounts without a trace: a private mount namespace and mount(2)/umount2(2) through libc.

The mount(8) helper may record options in /run/mount/utab; calling the system
calls directly leaves nothing behind. Everything mounted after ``private_namespace()``
is invisible to the rest of the machine (desktop, file managers, fstab,
/proc/mounts of other processes) and disappears with the last process in it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

from ..stick import FILESYSTEM

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
# The stick's FAT partition, when the kernel has to read it (no mtools): owned by root, private, no
# set-uid programs, device nodes or executables, whatever the stick says.
FAT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC
FAT_OPTIONS = "uid=0,gid=0,fmask=0177,dmask=0077,utf8"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class MountError(OSError):
    pass


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"{what}: {os.strerror(err)}")


def private_namespace() -> None:
    """Move this (single-threaded) process into its own mount namespace, private from /."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making / private")


def mount(source: str | Path, target: str | Path, fstype: str, flags: int = 0, data: str = "") -> None:
    _check(
        _libc.mount(
            str(source).encode(), str(target).encode(), fstype.encode(), flags, data.encode() if data else None
        ),
        f"mounting {source} on {target}",
    )


def mount_fat(device: str, target: str | Path, *, read_only: bool) -> None:
    """The stick's data partition, by the kernel's vfat driver: never the type udev or the stick claims."""
    flags = FAT_FLAGS | (MS_RDONLY if read_only else 0)
    mount(device, target, FILESYSTEM, flags, FAT_OPTIONS if read_only else FAT_OPTIONS + ",flush")


def mount_tmpfs(target: str | Path, size: str = "256m", mode: str = "0700") -> None:
    """A fresh RAM filesystem, no set-uid programs or device nodes."""
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode={mode}")


def umount(target: str | Path) -> None:
    """Unmount; a busy mount is detached lazily (it goes when its last user does)."""
    rc = _libc.umount2(str(target).encode(), 0)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return  # not mounted
        _check(_libc.umount2(str(target).encode(), MNT_DETACH), f"unmounting {target}")
