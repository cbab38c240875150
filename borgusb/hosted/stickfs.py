"""Reading and writing the stick's data partition (the watcher, root) without leaving anything on the host.

A stick is hostile input until its marker says otherwise, and a filesystem driver is kernel code: so the
kernel is kept away from it where possible.

* ``mtools`` (whenever mtools is installed): the FAT filesystem is read and written from user space,
  straight on the block device, with no mount at all;
* ``kernel`` (only without mtools): mount(2) of the partition with the vfat driver (never the type udev
  reports: the watcher refuses anything udev does not call vfat before it gets here), read-only,
  nosuid, nodev, noexec, on a directory in the watcher's private tmpfs inside its private mount
  namespace, unmounted at once; read-write (still nosuid, nodev, noexec) for the one keystore write;
* ``dir`` (``StickDir``): the launcher on the stick, which uses the directory the desktop mounted.

Writes are atomic as far as the filesystem allows: the kernel and dir paths use keystore.atomic_write
(temp file, fsync, rename, fsync of the directory); the mtools path writes ``.keystore.new``, reads it
back and compares, then renames it over ``keystore.json`` and flushes the device. A reader that finds no
``keystore.json`` but a complete ``.keystore.new`` (a pull between the two directory updates) uses it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from ..stick import MAX_FILE
from . import mounts

PENDING = ".keystore.new"


class StickIOError(OSError):
    pass


def have_mtools() -> bool:
    return all(shutil.which(tool) for tool in ("mtype", "mcopy", "mren"))


def read_path(path: Path) -> bytes | None:
    """A small regular file's bytes, None if there is none; never through a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR):
            return None
        raise
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > MAX_FILE:
            raise StickIOError(errno.EFBIG, f"{path.name} is too large")
        return fh.read(MAX_FILE + 1)


class StickDir:
    """The stick where the desktop mounted it (the launcher on the stick)."""

    backend = "dir"

    def __init__(self, path: Path) -> None:
        self.path = path

    def read_files(self, names: list[str]) -> dict[str, bytes | None]:
        return {name: read_path(self.path / name) for name in names}

    def write_atomic(self, name: str, data: bytes) -> None:
        from ..keystore import atomic_write

        atomic_write(self.path / name, data)


class StickFS:
    """The stick's block device. `workdir` is a directory in RAM only root may enter: mount points and
    mtools' scratch files go there."""

    def __init__(self, device: str, workdir: Path, backend: str | None = None) -> None:
        self.device, self.workdir = device, Path(workdir)
        self.backend = backend or ("mtools" if have_mtools() else "kernel")
        self.mountpoint = self.workdir / ("mnt-" + Path(device).name)

    # ------------------------------------------------------------ read

    def read_files(self, names: list[str]) -> dict[str, bytes | None]:
        if self.backend == "mtools":
            return {name: self._mtype(name) for name in names}
        self.mountpoint.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            mounts.mount_fat(self.device, self.mountpoint, read_only=True)
        except OSError as exc:
            raise StickIOError(exc.errno, f"cannot mount {self.device} read-only as FAT ({exc.strerror})") from None
        try:
            return {name: read_path(self.mountpoint / name) for name in names}
        finally:
            mounts.umount(self.mountpoint)

    def _mt(self, *args: str) -> subprocess.CompletedProcess:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "MTOOLS_SKIP_CHECK": "1",
            "HOME": str(self.workdir),  # no ~/.mtoolsrc of anyone's
            "LANG": "C.UTF-8",
        }
        return subprocess.run([args[0], "-i", self.device, *args[1:]], capture_output=True, env=env)

    def _mtype(self, name: str) -> bytes | None:
        proc = self._mt("mtype", f"::/{name}")
        if proc.returncode != 0:
            if not os.path.exists(self.device):
                raise StickIOError(errno.ENODEV, "the stick is gone")
            return None
        if len(proc.stdout) > MAX_FILE:
            raise StickIOError(errno.EFBIG, f"{name} is too large")
        return proc.stdout

    # ------------------------------------------------------------ write

    def write_atomic(self, name: str, data: bytes) -> None:
        if self.backend == "mtools":
            self._write_mtools(name, data)
            return
        from ..keystore import atomic_write

        self.mountpoint.mkdir(mode=0o700, parents=True, exist_ok=True)
        mounts.mount_fat(self.device, self.mountpoint, read_only=False)
        try:
            atomic_write(self.mountpoint / name, data)
        finally:
            try:
                mounts.umount(self.mountpoint)
            except OSError:
                pass

    def _write_mtools(self, name: str, data: bytes) -> None:
        fd, src = tempfile.mkstemp(dir=self.workdir)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            proc = self._mt("mcopy", "-o", "-D", "o", src, f"::/{PENDING}")
            if proc.returncode != 0:
                raise StickIOError(errno.EIO, proc.stderr.decode(errors="replace").strip() or "mcopy failed")
            self._flush()
            if self._mtype(PENDING) != data:
                raise StickIOError(errno.EIO, "the new keystore did not read back identical")
            proc = self._mt("mren", "-D", "o", f"::/{PENDING}", f"::/{name}")
            if proc.returncode != 0:
                raise StickIOError(errno.EIO, proc.stderr.decode(errors="replace").strip() or "mren failed")
            self._flush()
        finally:
            with open(src, "r+b") as fh:
                fh.write(b"\0" * len(data))
            os.unlink(src)

    def _flush(self) -> None:
        fd = os.open(self.device, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
