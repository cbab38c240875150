"""Reading and writing the stick's data partition without leaving anything on the host.

Two ways, same behaviour:

* ``kernel``: mount(2) the partition (read-only to read, read-write for one
  keystore write) on a directory in the watcher's private tmpfs, inside its
  private mount namespace, and unmount at once;
* ``mtools``: when the running kernel cannot mount the filesystem (no vfat
  driver, as on some minimal/virtual kernels), read and write the FAT
  filesystem from user space with mtools, straight on the block device: no
  mount at all.

Writes are atomic as far as the filesystem allows: the kernel path uses
keystore.atomic_write (temp file, fsync, rename, fsync of the directory); the
mtools path writes ``.keystore.new``, reads it back and compares, then renames
it over ``keystore.json`` and flushes the device. A reader that finds no
``keystore.json`` but a complete ``.keystore.new`` (a pull between the two
directory updates) uses it.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..stick import MAX_FILE
from . import mounts

PENDING = ".keystore.new"


class StickIOError(OSError):
    pass


class StickFS:
    def __init__(self, device: str, fstype: str, mountpoint: Path, scratch: Path | None = None) -> None:
        self.device, self.fstype, self.mountpoint = device, fstype, Path(mountpoint)
        self.scratch = scratch or self.mountpoint.parent  # RAM, for mtools' source files
        self.backend = "kernel"

    # ------------------------------------------------------------ read

    def read_files(self, names: list[str]) -> dict[str, bytes | None]:
        if self.backend == "kernel":
            self.mountpoint.mkdir(mode=0o700, parents=True, exist_ok=True)
            flags = mounts.MS_RDONLY | mounts.MS_NODEV | mounts.MS_NOSUID | mounts.MS_NOEXEC
            try:
                mounts.mount(self.device, self.mountpoint, self.fstype, flags, mounts.stick_options(self.fstype))
            except OSError as exc:
                if exc.errno == errno.ENODEV and self._mtools_ok():
                    self.backend = "mtools"
                    return self.read_files(names)
                raise StickIOError(exc.errno, f"cannot mount {self.device} read-only ({exc.strerror})") from None
            try:
                out: dict[str, bytes | None] = {}
                for name in names:
                    out[name] = self._read_path(self.mountpoint / name)
                return out
            finally:
                mounts.umount(self.mountpoint)
        return {name: self._mtype(name) for name in names}

    @staticmethod
    def _read_path(path: Path) -> bytes | None:
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_FILE:
            raise StickIOError(errno.EFBIG, f"{path.name} is too large")
        return path.read_bytes()

    def _mtools_ok(self) -> bool:
        return self.fstype in ("vfat", "msdos") and shutil.which("mtype") is not None

    def _mt(self, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "MTOOLS_SKIP_CHECK": "1",
            "HOME": str(self.scratch),
            "LANG": "C.UTF-8",
        }
        return subprocess.run([args[0], "-i", self.device, *args[1:]], capture_output=True, env=env, input=data)

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
        from ..keystore import atomic_write

        if self.backend == "kernel":
            self.mountpoint.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                mounts.mount(
                    self.device,
                    self.mountpoint,
                    self.fstype,
                    mounts.MS_NODEV | mounts.MS_NOSUID | mounts.MS_NOEXEC,
                    ",".join(
                        o for o in (mounts.stick_options(self.fstype), "flush" if self.fstype == "vfat" else "") if o
                    ),
                )
            except OSError as exc:
                if exc.errno == errno.ENODEV and self._mtools_ok():
                    self.backend = "mtools"
                    return self.write_atomic(name, data)
                raise
            try:
                atomic_write(self.mountpoint / name, data)
            finally:
                try:
                    mounts.umount(self.mountpoint)
                except OSError:
                    pass
            return
        fd, src = tempfile.mkstemp(dir=self.scratch)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            for cmd in (("mcopy", "-o", "-D", "o", src, f"::/{PENDING}"),):
                proc = self._mt(*cmd)
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
