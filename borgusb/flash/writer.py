"""Writing the image onto the device in the order decide.plan gives, and reading it back.

1. zero the head (the partition tables) and a stale backup GPT at the device's end, sync, and ask the
   kernel to forget the old partitions: from here on the device holds no stick at all;
2. write the body, syncing every 64 MiB (the progress bar shows what reached the device, not a cache);
3. read the body back past the page cache (O_DIRECT; where a device refuses it, the cache is dropped
   first) and compare its SHA-256 with the bytes written;
4. write the head, sync, read it back the same way and compare;
5. ask the kernel to read the new partition table.

A kill at any point before step 4 leaves a device without a partition table: not a stick. A mismatch in
step 3 stops there (the head stays zero); one in step 4 zeroes the head again. Either way the device is
reported as not a valid stick.

TEST ONLY: ``BORGUSB_FLASH_TEST_ONLY_PAUSE=PHASE:PATH`` (PHASE ``half``: half the body written and synced;
``verify``: the body written and synced, before it is read back) makes the writer create PATH at that
point and wait until it is removed (at most 120 s). Tests kill the flasher there (an interrupted write),
or change the loop device's backing file there (a device that changed the bytes it was given) and see
the read-back catch it. Nothing else reads the variable.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from .decide import plan
from .image import CHUNK, Source

SYNC_EVERY = 64 << 20
BLKRRPART = 0x125F  # ioctl: re-read the partition table
PAUSE_ENV = "BORGUSB_FLASH_TEST_ONLY_PAUSE"
PAUSE_MAX_S = 120.0

Progress = Callable[[int], None]  # bytes just written or read


class WriteError(Exception):
    """The write did not produce a valid stick; the message says what happened and that it is not valid."""


class DeviceBusy(OSError):
    """The device could not be opened for writing: nothing was written."""


@dataclass(frozen=True)
class Written:
    body_sha256: str
    head_sha256: str
    bytes: int
    seconds: float


def _pause(phase: str) -> None:
    spec = os.environ.get(PAUSE_ENV, "")
    want, _, path = spec.partition(":")
    if want != phase or not path:
        return
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"paused at {phase} (TEST ONLY)\n")
    deadline = time.monotonic() + PAUSE_MAX_S
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)


def reread_partitions(fd: int) -> None:
    """Ask the kernel to read the partition table again (busy or unsupported: left to the next plug-in)."""
    try:
        fcntl.ioctl(fd, BLKRRPART)
    except OSError:
        pass


def _zero(fd: int, start: int, end: int) -> None:
    zero = bytes(CHUNK)
    for offset in range(start, end, CHUNK):
        os.pwrite(fd, zero[: min(CHUNK, end - offset)], offset)


def _write_range(fd: int, source: Source, start: int, end: int, progress: Progress, halfway: int | None = None) -> str:
    digest = hashlib.sha256()
    since_sync = 0
    paused = halfway is None
    for offset, length in source.pieces(start, end):
        data = source.read(offset, length)
        if len(data) != length:
            raise WriteError(f"the image ended early at byte {offset + len(data)}; the device is not a valid stick")
        os.pwrite(fd, data, offset)
        digest.update(data)
        progress(length)
        since_sync += length
        if since_sync >= SYNC_EVERY:
            os.fsync(fd)
            since_sync = 0
        if not paused and halfway is not None and offset + length >= halfway:
            os.fsync(fd)
            _pause("half")
            paused = True
    os.fsync(fd)
    return digest.hexdigest()


def read_back(device: str, start: int, end: int, progress: Progress) -> str:
    """SHA-256 of the device's bytes in [start, end), read from the device itself, not the page cache."""
    digest = hashlib.sha256()
    try:
        fd = os.open(device, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
        direct = True
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        fd, direct = os.open(device, os.O_RDONLY | os.O_CLOEXEC), False
    buf = mmap.mmap(-1, CHUNK)  # page-aligned, as O_DIRECT needs
    try:
        if not direct:
            os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
        offset = start
        while offset < end:
            want = min(CHUNK, end - offset)
            view = memoryview(buf)[:want]
            got = os.preadv(fd, [view], offset)
            if got <= 0:
                raise WriteError(f"the device ended at byte {offset} while it was read back; it is not a valid stick")
            digest.update(view[:got])
            view.release()
            progress(got)
            offset += got
    finally:
        buf.close()
        os.close(fd)
    return digest.hexdigest()


def write_image(device: str, device_size: int, source: Source, progress: Progress, verifying: Progress) -> Written:
    """Write `source` onto `device` in the safe order; WriteError (device not a valid stick) on a mismatch."""
    steps = plan(source.size, device_size)
    t0 = time.monotonic()
    try:
        fd = os.open(device, os.O_WRONLY | os.O_EXCL | os.O_CLOEXEC)  # EBUSY while anything holds it (mounted)
    except OSError as exc:
        raise DeviceBusy(exc.errno, f"cannot open {device} for writing ({exc.strerror}); nothing was written") from None
    try:
        _zero(fd, *steps.head)
        if steps.stale_tail is not None:
            _zero(fd, *steps.stale_tail)
        os.fsync(fd)
        reread_partitions(fd)
        body_start, body_end = steps.body
        body = _write_range(fd, source, body_start, body_end, progress, halfway=(body_start + body_end) // 2)
        _pause("verify")
        if read_back(device, body_start, body_end, verifying) != body:
            raise WriteError(
                "the stick read back different from what was written: it is NOT a valid stick "
                "(its partition table was left empty). Write it again, or use another stick"
            )
        head = _write_range(fd, source, *steps.head, progress)
        if read_back(device, *steps.head, verifying) != head:
            _zero(fd, *steps.head)
            os.fsync(fd)
            raise WriteError(
                "the stick's first MiB read back different from what was written: it is NOT a valid stick "
                "(its partition table was emptied again). Write it again, or use another stick"
            )
        reread_partitions(fd)
    finally:
        os.close(fd)
    return Written(body, head, source.size, time.monotonic() - t0)
